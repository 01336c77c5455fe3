// Q6_K on the GPU (src/gpu/blocks.rs unpacks the 256-element super-blocks): 7 words a block =
// [d (f16) | sc of elements 0-15 << 16 | sc of 16-31 << 24 (i8 each)], 4 nibble words (the
// codes' low 4 bits), then the codes' top 2 bits (bits 2j, 2j + 1: element j of word 5,
// element 16 + j of word 6). value = d * sc * (q - 32); sc * (q - 32) is folded into the codes
// (an exact small integer), so the block has no min.
const WPB: u32 = 7u;
#include "quant_bits"
// Elements s..s+3 of a half's top bits (s = 0, 4, 8, 12), as 16s.
fn hi6(h: u32, s: u32) -> vec4<u32> {
    return ((vec4<u32>(h) >> vec4<u32>(2u * s, 2u * s + 2u, 2u * s + 4u, 2u * s + 6u)) & vec4<u32>(3u)) << vec4<u32>(4u);
}
fn q6k(w0: u32, n: vec4<u32>, h0: u32, h1: u32) -> Blk {
    let s0 = f32(bitcast<i32>(w0 << 8u) >> 24u);
    let s1 = f32(bitcast<i32>(w0) >> 24u);
    let z = vec4<f32>(32.0);
    return Blk((vec4<f32>(nib_lo(n.x) | hi6(h0, 0u)) - z) * s0, (vec4<f32>(nib_lo(n.y) | hi6(h0, 4u)) - z) * s0,
               (vec4<f32>(nib_lo(n.z) | hi6(h0, 8u)) - z) * s0, (vec4<f32>(nib_lo(n.w) | hi6(h0, 12u)) - z) * s0,
               (vec4<f32>(nib_hi(n.x) | hi6(h1, 0u)) - z) * s1, (vec4<f32>(nib_hi(n.y) | hi6(h1, 4u)) - z) * s1,
               (vec4<f32>(nib_hi(n.z) | hi6(h1, 8u)) - z) * s1, (vec4<f32>(nib_hi(n.w) | hi6(h1, 12u)) - z) * s1,
               unpack2x16float(w0).x, 0.0);
}
#if TEX
#include "quant_tex"
fn load_block(wb: u32) -> Blk {
    let o = wb % 4u;
    let t = wb / 4u;
    let b = texel(t + 1u);
    let w = pick4(texel(t), b, o);
    let e = pick4(b, texel(t + 2u), o);
    return q6k(w.x, vec4<u32>(w.yzw, e.x), e.y, e.z);
}
#else
fn load_block(wb: u32) -> Blk {
    return q6k(W[wb], vec4<u32>(W[wb + 1u], W[wb + 2u], W[wb + 3u], W[wb + 4u]), W[wb + 5u], W[wb + 6u]);
}
#endif
