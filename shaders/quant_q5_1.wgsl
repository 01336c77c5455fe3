// Q5_1 block on the GPU (quant_q5.wgsl, the file's own layout): the scale word is
// [d | m << 16 (two f16)]; value = d * q + m.
#include "quant_q5"
fn q5_block(dmw: u32, q: array<vec4<f32>, 8>) -> Blk {
    let dm = unpack2x16float(dmw);
    return blk_of(q, dm.x, dm.y);
}
