// bf16 weights packed two per word: a bf16 is the top half of an f32.
const WPB: u32 = 16u;
struct Blk { q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32>, q4: vec4<f32>, q5: vec4<f32>, q6: vec4<f32>, q7: vec4<f32>, d: f32, m: f32 }
fn b4(a: u32, b: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(vec4<u32>(a << 16u, a & 0xffff0000u, b << 16u, b & 0xffff0000u));
}
#if TEX
#include "quant_tex"
// Blocks of 16 words start on texel boundaries.
fn load_block(wb: u32) -> Blk {
    let t = wb / 4u;
    let a = texel(t); let b = texel(t + 1u); let c = texel(t + 2u); let d = texel(t + 3u);
    return Blk(b4(a.x, a.y), b4(a.z, a.w), b4(b.x, b.y), b4(b.z, b.w), b4(c.x, c.y), b4(c.z, c.w), b4(d.x, d.y), b4(d.z, d.w), 1.0, 0.0);
}
#else
fn load_block(wb: u32) -> Blk {
    return Blk(b4(W[wb], W[wb + 1u]), b4(W[wb + 2u], W[wb + 3u]), b4(W[wb + 4u], W[wb + 5u]), b4(W[wb + 6u], W[wb + 7u]),
               b4(W[wb + 8u], W[wb + 9u]), b4(W[wb + 10u], W[wb + 11u]), b4(W[wb + 12u], W[wb + 13u]), b4(W[wb + 14u], W[wb + 15u]), 1.0, 0.0);
}
#endif
