// f16 weights packed two per word (portable: no shader-f16 needed); 16 words per 32 elements.
const WPB: u32 = 16u;
struct Blk { q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32>, q4: vec4<f32>, q5: vec4<f32>, q6: vec4<f32>, q7: vec4<f32>, d: f32, m: f32 }
fn h4(a: u32, b: u32) -> vec4<f32> { return vec4<f32>(unpack2x16float(a), unpack2x16float(b)); }
#if TEX
#include "quant_tex"
// Blocks of 16 words start on texel boundaries.
fn load_block(wb: u32) -> Blk {
    let t = wb / 4u;
    let a = texel(t); let b = texel(t + 1u); let c = texel(t + 2u); let d = texel(t + 3u);
    return Blk(h4(a.x, a.y), h4(a.z, a.w), h4(b.x, b.y), h4(b.z, b.w), h4(c.x, c.y), h4(c.z, c.w), h4(d.x, d.y), h4(d.z, d.w), 1.0, 0.0);
}
#else
fn load_block(wb: u32) -> Blk {
    return Blk(h4(W[wb], W[wb + 1u]), h4(W[wb + 2u], W[wb + 3u]), h4(W[wb + 4u], W[wb + 5u]), h4(W[wb + 6u], W[wb + 7u]),
               h4(W[wb + 8u], W[wb + 9u]), h4(W[wb + 10u], W[wb + 11u]), h4(W[wb + 12u], W[wb + 13u]), h4(W[wb + 14u], W[wb + 15u]), 1.0, 0.0);
}
#endif
