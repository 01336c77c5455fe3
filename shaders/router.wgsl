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
// Partial sums: rows 0..KP1 the dot products, row KP1 the sum of squares, 64 lanes each.
var<workgroup> red: array<f32, {{RED}}>;
var<workgroup> tot: array<f32, {{KP2}}>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = wg.y;
    if (t >= step.n_tok) { return; }
    // Accumulators are named registers (unrolled over the slots), not a private array:
    // CPU-backed adapters spill dynamically indexed arrays to memory.
#for J in 0..{{KP1}}
    var acc{{J}} = 0.0;
#endfor
    var ss = 0.0;
    for (var i = li; i < COLS; i += 64u) {
        let x = X[t * COLS + i];
        ss += x * x;
        let xg = x * G[i];
#for J in 0..{{KP1}}
        acc{{J}} += WR[{{J}}u * COLS + i] * xg;
#endfor
    }
#for J in 0..{{KP1}}
    red[{{J}}u * 64u + li] = acc{{J}};
#endfor
    red[KP1 * 64u + li] = ss;
    workgroupBarrier();
    // Lane j sums slot j's 64 partials: one barrier instead of a tree of them.
    if (li <= KP1) {
        var s = 0.0;
        for (var l = 0u; l < 64u; l++) { s += red[li * 64u + l]; }
        tot[li] = s;
    }
    workgroupBarrier();
    if (li == 0u) {
        let r = inverseSqrt(tot[KP1] / f32(COLS) + {{EPS}});
        var mx = -3.4e38;
        for (var j = 0u; j < KP1; j++) { mx = max(mx, tot[j] * r); }
        var sum = 0.0;
        for (var j = 0u; j < KP1; j++) { sum += exp(tot[j] * r - mx); }
        for (var j = 0u; j < KP1; j++) { A[t * KP1 + j] = exp(tot[j] * r - mx) / sum; }
    }
}
