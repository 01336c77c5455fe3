// Q5_K on the GPU (src/gpu/blocks.rs): a pair of 32-element blocks in 12 words = [d | dmin <<
// 16], [sc, m of the first block, sc, m of the second], the two blocks' fifth bits (bit j:
// element j), then 4 nibble words per block. Block b is at b * 6 words, the second of its pair
// when b is odd; pairs start at multiples of 12 words, so a pair's first 4 words are one texel.
// value = d * sc * q - dmin * m.
const WPB: u32 = 6u;
#include "quant_bits"
fn q5k(hdr: vec4<u32>, h: u32, n: vec4<u32>) -> Blk {
    let dm = unpack2x16float(hdr.x);
    let sm = hdr.y >> (16u * h);
    let qh = select(hdr.z, hdr.w, h == 1u);
    return blk_of(codes5(qh, n.x, n.y, n.z, n.w), dm.x * f32(sm & 255u), -dm.y * f32((sm >> 8u) & 255u));
}
#if TEX
#include "quant_tex"
fn load_block(wb: u32) -> Blk {
    let h = (wb / 6u) & 1u;
    let t = (wb - 6u * h) / 4u;
    return q5k(texel(t), h, texel(t + 1u + h));
}
#else
fn load_block(wb: u32) -> Blk {
    let h = (wb / 6u) & 1u;
    let p = wb - 6u * h;
    let n = p + 4u + 4u * h;
    return q5k(vec4<u32>(W[p], W[p + 1u], W[p + 2u], W[p + 3u]), h, vec4<u32>(W[n], W[n + 1u], W[n + 2u], W[n + 3u]));
}
#endif
