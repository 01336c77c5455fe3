// f32 weights, one per word; 32 words per block.
const WPB: u32 = 32u;
struct Blk { q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32>, q4: vec4<f32>, q5: vec4<f32>, q6: vec4<f32>, q7: vec4<f32>, d: f32, m: f32 }
#if TEX
#include "quant_tex"
// Blocks of 32 words start on texel boundaries.
fn f4(t: u32) -> vec4<f32> { return bitcast<vec4<f32>>(texel(t)); }
fn load_block(wb: u32) -> Blk {
    let t = wb / 4u;
    return Blk(f4(t), f4(t + 1u), f4(t + 2u), f4(t + 3u), f4(t + 4u), f4(t + 5u), f4(t + 6u), f4(t + 7u), 1.0, 0.0);
}
#else
fn f4(wb: u32) -> vec4<f32> { return bitcast<vec4<f32>>(vec4<u32>(W[wb], W[wb + 1u], W[wb + 2u], W[wb + 3u])); }
fn load_block(wb: u32) -> Blk {
    return Blk(f4(wb), f4(wb + 4u), f4(wb + 8u), f4(wb + 12u), f4(wb + 16u), f4(wb + 20u), f4(wb + 24u), f4(wb + 28u), 1.0, 0.0);
}
#endif
