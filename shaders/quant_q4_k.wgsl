// Q4_K on the GPU (src/gpu/blocks.rs unpacks the 256-element super-blocks): a pair of 32-element
// blocks in 10 words = [d | dmin << 16 (two f16)], [sc, m of the first block, sc, m of the
// second (a byte each)], 4 nibble words per block. Kernels address block b at b * 5 words, so
// block wb / 5 is the second of its pair when odd (rows hold whole super-blocks: pairs never
// straddle rows). value = d * sc * q - dmin * m.
const WPB: u32 = 5u;
#include "quant_bits"
fn q4k(hdr: vec2<u32>, h: u32, n: vec4<u32>) -> Blk {
    let dm = unpack2x16float(hdr.x);
    let sm = hdr.y >> (16u * h);
    return Blk(vec4<f32>(nib_lo(n.x)), vec4<f32>(nib_lo(n.y)), vec4<f32>(nib_lo(n.z)), vec4<f32>(nib_lo(n.w)),
               vec4<f32>(nib_hi(n.x)), vec4<f32>(nib_hi(n.y)), vec4<f32>(nib_hi(n.z)), vec4<f32>(nib_hi(n.w)),
               dm.x * f32(sm & 255u), -dm.y * f32((sm >> 8u) & 255u));
}
#if TEX
#include "quant_tex"
fn load_block(wb: u32) -> Blk {
    let h = (wb / 5u) & 1u;
    let p = wb - 5u * h;
    return q4k(pair_at(p), h, quad_at(p + 2u + 4u * h));
}
#else
fn load_block(wb: u32) -> Blk {
    let h = (wb / 5u) & 1u;
    let p = wb - 5u * h;
    let n = p + 2u + 4u * h;
    return q4k(vec2<u32>(W[p], W[p + 1u]), h, vec4<u32>(W[n], W[n + 1u], W[n + 2u], W[n + 3u]));
}
#endif
