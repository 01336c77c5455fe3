// Q5_0 block on the GPU (quant_q5.wgsl): the scale word is [d (f16) | 0]; value = d * (q - 16).
#include "quant_q5"
fn q5_block(dw: u32, q: array<vec4<f32>, 8>) -> Blk {
    let d = unpack2x16float(dw).x;
    return Blk(q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], d, -16.0 * d);
}
