// Sampling support on the GPU: repetition penalty, then the K best logits (value desc, id asc on
// ties) found by one workgroup: each invocation keeps a sorted private top-K of its strided slice,
// then the lists are merged pairwise in a tree. K = 1 is greedy argmax.
#include "common"

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read_write> L: array<f32>;        // logits [VOCAB]
@group(0) @binding(2) var<storage, read> PEN: array<u32>;            // distinct recent ids
@group(0) @binding(3) var<storage, read_write> SV: array<f32>;       // scratch [WG * K]
@group(0) @binding(4) var<storage, read_write> SI: array<u32>;       // scratch [WG * K]
@group(0) @binding(5) var<storage, read_write> OUT: array<u32>;      // [K ids, K value bits]

const WG: u32 = 256u;
const K: u32 = {{K}}u;
const VOCAB: u32 = {{VOCAB}}u;

// llama.cpp's rule: positive logits are divided by the penalty, negative ones multiplied.
@compute @workgroup_size(64)
fn penalize(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= step.n_pen) { return; }
    let id = PEN[i];
    if (id >= VOCAB) { return; }
    let v = L[id];
    L[id] = select(v * step.penalty, v / step.penalty, v > 0.0);
}

fn better(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
    return va > vb || (va == vb && ia < ib);
}

var<private> bv: array<f32, K>;
var<private> bi: array<u32, K>;

@compute @workgroup_size(256)
fn topk(@builtin(local_invocation_index) lid: u32) {
    for (var j = 0u; j < K; j++) { bv[j] = -3.4e38; bi[j] = 0xffffffffu; }
    for (var i = lid; i < VOCAB; i += WG) {
        let v = L[i];
        if (!better(v, i, bv[K - 1u], bi[K - 1u])) { continue; }
        var j = K - 1u;
        while (j > 0u && better(v, i, bv[j - 1u], bi[j - 1u])) {
            bv[j] = bv[j - 1u];
            bi[j] = bi[j - 1u];
            j--;
        }
        bv[j] = v;
        bi[j] = i;
    }
    for (var j = 0u; j < K; j++) { SV[lid * K + j] = bv[j]; SI[lid * K + j] = bi[j]; }
    storageBarrier();
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            // merge list lid (a) with list lid + stride (b), keep the best K
            var a = lid * K;
            var b = (lid + stride) * K;
            let ae = a + K;
            let be = b + K;
            for (var j = 0u; j < K; j++) {
                if (b >= be || (a < ae && better(SV[a], SI[a], SV[b], SI[b]))) {
                    bv[j] = SV[a]; bi[j] = SI[a]; a++;
                } else {
                    bv[j] = SV[b]; bi[j] = SI[b]; b++;
                }
            }
        }
        storageBarrier();
        workgroupBarrier();
        if (lid < stride) {
            for (var j = 0u; j < K; j++) { SV[lid * K + j] = bv[j]; SI[lid * K + j] = bi[j]; }
        }
        storageBarrier();
        workgroupBarrier();
    }
    if (lid == 0u) {
        for (var j = 0u; j < K; j++) { OUT[j] = SI[j]; OUT[K + j] = bitcast<u32>(SV[j]); }
    }
}
