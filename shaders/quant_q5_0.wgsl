// Q5_0 block on the GPU (quant_q5.wgsl): the scale word is [d (f16) | 0]; value = d * (q - 16).
#include "quant_q5"
fn q5_block(dw: u32, q: array<vec4<f32>, 8>) -> Blk {
    let d = unpack2x16float(dw).x;
    return blk_of(q, d, -16.0 * d);
}
