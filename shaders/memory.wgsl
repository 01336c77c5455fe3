// TIDE memory rows, computed once per token and read by every layer: one workgroup per
// (block k, token) decodes the token's stored row of block k (streamed in by the host for this
// step, in the table's own quantisation), RMS-normalises it and scales it by the block's gamma.
// MEM[t, k, :] = RMSNorm(E_k[x_t]) * gamma_k  (pre-normalised tables: just the decoded row).
#include "common"

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> W: array<u32>;              // [n_tok, K, row words]
@group(0) @binding(2) var<storage, read> GAMMA: array<vec4<f32>>;    // [K, COLS]
@group(0) @binding(3) var<storage, read_write> MEM: array<vec4<f32>>; // [n_tok, K, COLS]

#include "{{QUANT}}"

const COLS: u32 = {{COLS}}u;
const NB: u32 = COLS / 32u;
const K: u32 = {{K}}u;
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let k = wg.x;
    let t = wg.y;
    if (t >= step.n_tok) { return; }
    let row = t * K + k;
    var ss = 0.0;
    for (var b = li; b < NB; b += 64u) {
        let q = load_block((row * NB + b) * WPB);
        let o = (row * COLS + b * 32u) / 4u;
        let m = vec4<f32>(q.m);
        let v = array<vec4<f32>, 8>(q.d * q.q0 + m, q.d * q.q1 + m, q.d * q.q2 + m, q.d * q.q3 + m,
                                    q.d * q.q4 + m, q.d * q.q5 + m, q.d * q.q6 + m, q.d * q.q7 + m);
        for (var j = 0u; j < 8u; j++) {
            MEM[o + j] = v[j];
            ss += dot(v[j], v[j]);
        }
    }
#if NORMALIZED
#else
    red[li] = ss;
    workgroupBarrier();
    // Every lane sums the 64 partials itself: one barrier (CPU-backed adapters pay per barrier).
    var tot = 0.0;
    for (var l = 0u; l < 64u; l++) { tot += red[l]; }
    let r = inverseSqrt(tot / f32(COLS) + {{EPS}});
    // Each lane rescales the blocks it wrote itself: no barrier needed on MEM.
    for (var b = li; b < NB; b += 64u) {
        let o = (row * COLS + b * 32u) / 4u;
        let g = (k * COLS + b * 32u) / 4u;
        for (var j = 0u; j < 8u; j++) {
            MEM[o + j] = MEM[o + j] * r * GAMMA[g + j];
        }
    }
#endif
}
