// What the decoders of 5- and 6-bit codes share (Q5_*, Q4_K, Q5_K, Q6_K): the block struct and
// bit fields. Nibble words follow Q4_0's order: byte j holds element j (low) and j + 16 (high).
struct Blk { q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32>, q4: vec4<f32>, q5: vec4<f32>, q6: vec4<f32>, q7: vec4<f32>, d: f32, m: f32 }
fn nib_lo(w: u32) -> vec4<u32> { return vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(15u); }
fn nib_hi(w: u32) -> vec4<u32> { return vec4<u32>(w >> 4u, w >> 12u, w >> 20u, w >> 28u) & vec4<u32>(15u); }
// Elements s..s+3's fifth bits (bit j of qh: element j), as 16s.
fn hi5(qh: u32, s: u32) -> vec4<u32> { return ((vec4<u32>(qh) >> vec4<u32>(s, s + 1u, s + 2u, s + 3u)) & vec4<u32>(1u)) << vec4<u32>(4u); }
// 32 codes from 4 nibble words and 32 fifth bits.
fn codes5(qh: u32, w0: u32, w1: u32, w2: u32, w3: u32) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        vec4<f32>(nib_lo(w0) | hi5(qh, 0u)), vec4<f32>(nib_lo(w1) | hi5(qh, 4u)),
        vec4<f32>(nib_lo(w2) | hi5(qh, 8u)), vec4<f32>(nib_lo(w3) | hi5(qh, 12u)),
        vec4<f32>(nib_hi(w0) | hi5(qh, 16u)), vec4<f32>(nib_hi(w1) | hi5(qh, 20u)),
        vec4<f32>(nib_hi(w2) | hi5(qh, 24u)), vec4<f32>(nib_hi(w3) | hi5(qh, 28u)));
}
fn blk_of(q: array<vec4<f32>, 8>, d: f32, m: f32) -> Blk {
    return Blk(q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], d, m);
}
