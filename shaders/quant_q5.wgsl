// What Q5_0 and Q5_1 share on the GPU: 6 words = [scale word], qh (bit j: element j's fifth
// bit), 16 bytes of nibbles (byte j: element j low, element j + 16 high). The including file
// defines q5_block, which turns the scale word and the 5-bit codes into a Blk.
const WPB: u32 = 6u;
#include "quant_bits"
fn q5(sw: u32, qh: u32, w0: u32, w1: u32, w2: u32, w3: u32) -> Blk {
    return q5_block(sw, codes5(qh, w0, w1, w2, w3));
}
#if TEX
#include "quant_tex"
fn load_block(wb: u32) -> Blk {
    let v = words6(wb);
    return q5(v.w.x, v.w.y, v.w.z, v.w.w, v.e.x, v.e.y);
}
#else
fn load_block(wb: u32) -> Blk {
    return q5(W[wb], W[wb + 1u], W[wb + 2u], W[wb + 3u], W[wb + 4u], W[wb + 5u]);
}
#endif
