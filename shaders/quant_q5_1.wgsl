// Q5_1 block on the GPU (quant_q5.wgsl, the file's own layout): the scale word is
// [d | m << 16 (two f16)]; value = d * q + m.
#include "quant_q5"
fn q5_block(dmw: u32, q: array<vec4<f32>, 8>) -> Blk {
    let dm = unpack2x16float(dmw);
    return Blk(q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], dm.x, dm.y);
}
