// LIMe (v2): layer LAYER's raw (pre-RoPE) k and v of each token, in RAW after a raw QKV matmul,
// are replaced by a static mix over the KV heads of layers 0..=LAYER of the same token:
// out head r = sum_j MIX[r, j] head j, j layer-major (j = l R + r'), the same mix for k and v.
// The raw heads of earlier layers wait in HIST (this layer's are stored there for the layers
// after it), so decode keeps only the current tokens' raw K|V, never a second cache.
// One lane per (head dim d, token): it owns every head's value at d, so it reads this layer's
// raw heads and overwrites them with the mix without racing another lane.
#include "common"

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read_write> RAW: array<f32>;   // [n_tok, QD + 2 KVD]
@group(0) @binding(2) var<storage, read_write> HIST: array<f32>;  // [layers, MB, 2, KVD]
@group(0) @binding(3) var<storage, read> MIX: array<f32>;         // [R, (LAYER + 1) R]

const HD: u32 = {{HD}}u;
const NKV: u32 = {{NKV}}u;
const QD: u32 = {{NH}}u * HD;
const KVD: u32 = NKV * HD;
const ROWS: u32 = QD + 2u * KVD;
const LAYER: u32 = {{LAYER}}u;
const MB: u32 = {{MB}}u;
const COLS: u32 = (LAYER + 1u) * NKV;  // a row of MIX

fn hist(l: u32, t: u32, kv: u32, r: u32, d: u32) -> u32 {
    return ((l * MB + t) * 2u + kv) * KVD + r * HD + d;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let d = gid.x;
    let t = gid.y;
    if (d >= HD || t >= step.n_tok) { return; }
    for (var kv = 0u; kv < 2u; kv++) {
        let base = t * ROWS + QD + kv * KVD + d;
        var own: array<f32, {{NKV}}>;
        for (var r = 0u; r < NKV; r++) {
            own[r] = RAW[base + r * HD];
            HIST[hist(LAYER, t, kv, r, d)] = own[r];
        }
        for (var r = 0u; r < NKV; r++) {
            var acc = 0.0;
            for (var l = 0u; l < LAYER; l++) {
                for (var q = 0u; q < NKV; q++) {
                    acc += MIX[r * COLS + l * NKV + q] * HIST[hist(l, t, kv, q, d)];
                }
            }
            for (var q = 0u; q < NKV; q++) {
                acc += MIX[r * COLS + LAYER * NKV + q] * own[q];
            }
            RAW[base + r * HD] = acc;
        }
    }
}
