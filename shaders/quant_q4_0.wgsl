// Q4_0 block on the GPU: 5 words = [d (f16) | 0], 16 bytes of nibbles; value = d * (q - 8).
const WPB: u32 = 5u;
struct Blk { q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32>, q4: vec4<f32>, q5: vec4<f32>, q6: vec4<f32>, q7: vec4<f32>, d: f32, m: f32 }
fn nib_lo(w: u32) -> vec4<f32> { return vec4<f32>(vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(15u)); }
fn nib_hi(w: u32) -> vec4<f32> { return vec4<f32>(vec4<u32>(w >> 4u, w >> 12u, w >> 20u, w >> 28u) & vec4<u32>(15u)); }
fn q4_0(dw: u32, w0: u32, w1: u32, w2: u32, w3: u32) -> Blk {
    let d = unpack2x16float(dw).x;
    return Blk(nib_lo(w0), nib_lo(w1), nib_lo(w2), nib_lo(w3), nib_hi(w0), nib_hi(w1), nib_hi(w2), nib_hi(w3), d, -8.0 * d);
}
#if TEX
#include "quant_tex"
fn block5(v: Words5) -> Blk {
    return q4_0(v.w.x, v.w.y, v.w.z, v.w.w, v.e);
}
fn load_block(wb: u32) -> Blk {
    return block5(words5(wb));
}
#else
fn load_block(wb: u32) -> Blk {
    return q4_0(W[wb], W[wb + 1u], W[wb + 2u], W[wb + 3u], W[wb + 4u]);
}
#endif
