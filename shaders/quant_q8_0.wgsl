// Q8_0 block on the GPU: 9 words = [d (f16) | 0], 32 signed bytes; value = d * q.
const WPB: u32 = 9u;
struct Blk { q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32>, q4: vec4<f32>, q5: vec4<f32>, q6: vec4<f32>, q7: vec4<f32>, d: f32, m: f32 }
fn i8x4(w: u32) -> vec4<f32> {
    let s = vec4<i32>(bitcast<i32>(w << 24u), bitcast<i32>(w << 16u), bitcast<i32>(w << 8u), bitcast<i32>(w));
    return vec4<f32>(s >> vec4<u32>(24u));
}
fn q8_0(dw: u32, w: vec4<u32>, v: vec4<u32>) -> Blk {
    return Blk(i8x4(w.x), i8x4(w.y), i8x4(w.z), i8x4(w.w), i8x4(v.x), i8x4(v.y), i8x4(v.z), i8x4(v.w),
               unpack2x16float(dw).x, 0.0);
}
#if TEX
#include "quant_tex"
fn load_block(wb: u32) -> Blk {
    let o = wb % 4u;
    let t = wb / 4u;
    let a = texel(t);
    let b = texel(t + 1u);
    let c = texel(t + 2u);
    let w = pick4(a, b, o);
    // Words o+5..o+8 of a ++ b ++ c: offset o + 1 into b ++ c, which is c itself when o = 3.
    return q8_0(w.x, vec4<u32>(w.yzw, pick1(b, o)), select(pick4(b, c, o + 1u), c, o == 3u));
}
#else
fn load_block(wb: u32) -> Blk {
    return q8_0(W[wb], vec4<u32>(W[wb + 1u], W[wb + 2u], W[wb + 3u], W[wb + 4u]),
                vec4<u32>(W[wb + 5u], W[wb + 6u], W[wb + 7u], W[wb + 8u]));
}
#endif
