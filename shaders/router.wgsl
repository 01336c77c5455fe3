// Per-layer TIDE router: alpha = softmax(W_r n) over the K blocks and NULL (slot K), where
// n = RMSNorm_ffn(h~) is the FFN's own input. One workgroup per token; lanes split the width,
// every lane accumulating all K+1 dot products and the sum of squares, then one tree reduction.
// W_r n = (W_r (h~ * gamma)) / rms(h~), so the normalisation is applied once at the end.
#include "common"

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> WR: array<f32>;          // [KP1, COLS]
@group(0) @binding(2) var<storage, read> X: array<f32>;           // h~ [n_tok, COLS]
@group(0) @binding(3) var<storage, read> G: array<f32>;           // ffn norm gamma [COLS]
@group(0) @binding(4) var<storage, read_write> A: array<f32>;     // alpha [n_tok, KP1]

const COLS: u32 = {{COLS}}u;
const KP1: u32 = {{KP1}}u;
// Rows 0..KP1 hold the dot products, row KP1 the sum of squares.
var<workgroup> red: array<f32, {{RED}}>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = wg.y;
    if (t >= step.n_tok) { return; }
    var acc: array<f32, {{KP1}}>;
    var ss = 0.0;
    for (var i = li; i < COLS; i += 64u) {
        let x = X[t * COLS + i];
        ss += x * x;
        let xg = x * G[i];
        for (var j = 0u; j < KP1; j++) {
            acc[j] += WR[j * COLS + i] * xg;
        }
    }
    for (var j = 0u; j < KP1; j++) { red[j * 64u + li] = acc[j]; }
    red[KP1 * 64u + li] = ss;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (li < s) {
            for (var j = 0u; j <= KP1; j++) { red[j * 64u + li] += red[j * 64u + li + s]; }
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        let r = inverseSqrt(red[KP1 * 64u] / f32(COLS) + {{EPS}});
        var mx = -3.4e38;
        for (var j = 0u; j < KP1; j++) { mx = max(mx, red[j * 64u] * r); }
        var sum = 0.0;
        for (var j = 0u; j < KP1; j++) { sum += exp(red[j * 64u] * r - mx); }
        for (var j = 0u; j < KP1; j++) { A[t * KP1 + j] = exp(red[j * 64u] * r - mx) / sum; }
    }
}
