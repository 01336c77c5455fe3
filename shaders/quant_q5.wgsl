// What Q5_0 and Q5_1 share on the GPU: 6 words = [scale word], qh (bit j: element j's fifth
// bit), 16 bytes of nibbles (byte j: element j low, element j + 16 high). The including file
// defines q5_block, which turns the scale word and the 5-bit codes into a Blk.
const WPB: u32 = 6u;
struct Blk { q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32>, q4: vec4<f32>, q5: vec4<f32>, q6: vec4<f32>, q7: vec4<f32>, d: f32, m: f32 }
fn nib_lo(w: u32) -> vec4<u32> { return vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(15u); }
fn nib_hi(w: u32) -> vec4<u32> { return vec4<u32>(w >> 4u, w >> 12u, w >> 20u, w >> 28u) & vec4<u32>(15u); }
// Elements s..s+3's fifth bits, as 16s.
fn hi5(qh: u32, s: u32) -> vec4<u32> { return ((vec4<u32>(qh) >> vec4<u32>(s, s + 1u, s + 2u, s + 3u)) & vec4<u32>(1u)) << vec4<u32>(4u); }
fn q5(sw: u32, qh: u32, w0: u32, w1: u32, w2: u32, w3: u32) -> Blk {
    return q5_block(sw, array<vec4<f32>, 8>(
        vec4<f32>(nib_lo(w0) | hi5(qh, 0u)), vec4<f32>(nib_lo(w1) | hi5(qh, 4u)),
        vec4<f32>(nib_lo(w2) | hi5(qh, 8u)), vec4<f32>(nib_lo(w3) | hi5(qh, 12u)),
        vec4<f32>(nib_hi(w0) | hi5(qh, 16u)), vec4<f32>(nib_hi(w1) | hi5(qh, 20u)),
        vec4<f32>(nib_hi(w2) | hi5(qh, 24u)), vec4<f32>(nib_hi(w3) | hi5(qh, 28u))));
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
