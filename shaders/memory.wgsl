// TIDE memory rows, computed once per token and read by every layer: one workgroup per
// (block k, token) decodes the token's stored row of block k (streamed in by the host for this
// step, in the table's own quantisation), RMS-normalises it and scales it by the block's gamma.
// MEM[t, k, :] = RMSNorm(E_k[x_t]) * gamma_k  (pre-normalised tables: just the decoded row).
// SVD tables (entry `svd`): the stored row is A_k[x_t] and E_k[x_t] = A_k[x_t] B_k is rebuilt
// here, before the norm, in the same dispatch.
#include "common"

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> W: array<u32>;              // [n_tok, K, row words]
@group(0) @binding(2) var<storage, read> GAMMA: array<vec4<f32>>;    // [K, COLS]
@group(0) @binding(3) var<storage, read_write> MEM: array<vec4<f32>>; // [n_tok, K, COLS]
#if SVD
#if BASIS_F16
// B_k in f16, four values in two words (unpack2x16float is core WGSL: no shader-f16 needed).
@group(0) @binding(4) var<storage, read> BASIS: array<vec2<u32>>;  // [K, AW, COLS]: B_k
fn basis(i: u32) -> vec4<f32> {
    let w = BASIS[i];
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
#else
@group(0) @binding(4) var<storage, read> BASIS: array<vec4<f32>>;  // [K, AW, COLS]: B_k
fn basis(i: u32) -> vec4<f32> { return BASIS[i]; }
#endif
#endif

#include "{{QUANT}}"

const COLS: u32 = {{COLS}}u;
const NB: u32 = COLS / 32u;
const K: u32 = {{K}}u;

// The 32 values of a stored block.
fn decoded(q: Blk) -> array<vec4<f32>, 8> {
    let m = vec4<f32>(q.m);
    return array<vec4<f32>, 8>(q.d * q.q0 + m, q.d * q.q1 + m, q.d * q.q2 + m, q.d * q.q3 + m,
                               q.d * q.q4 + m, q.d * q.q5 + m, q.d * q.q6 + m, q.d * q.q7 + m);
}

#if ROW_LANES
// CPU-backed adapters: a lane owns a whole row and decodes it twice, once for its RMS and once
// to write it, so there is no workgroup memory and no barrier (per-lane loops on such drivers).
@compute @workgroup_size(8)
fn rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    let t = gid.y;
    if (k >= K || t >= step.n_tok) { return; }
    let row = t * K + k;
#if NORMALIZED
    let r = 1.0;
#else
    var ss = vec4<f32>(0.0);
    for (var b = 0u; b < NB; b++) {
        let v = decoded(load_block((row * NB + b) * WPB));
#for J in 0..8
        ss += v[{{J}}] * v[{{J}}];
#endfor
    }
    let r = inverseSqrt((ss.x + ss.y + ss.z + ss.w) / f32(COLS) + {{EPS}});
#endif
    for (var b = 0u; b < NB; b++) {
        let v = decoded(load_block((row * NB + b) * WPB));
        let o = (row * COLS + b * 32u) / 4u;
#if NORMALIZED
#for J in 0..8
        MEM[o + {{J}}u] = v[{{J}}];
#endfor
#else
        let g = (k * COLS + b * 32u) / 4u;
#for J in 0..8
        MEM[o + {{J}}u] = v[{{J}}] * r * GAMMA[g + {{J}}u];
#endfor
#endif
    }
}
#else
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let k = wg.x;
    let t = wg.y;
    if (t >= step.n_tok) { return; }
    let row = t * K + k;
    var ss = 0.0;
    for (var b = li; b < NB; b += 64u) {
        let o = (row * COLS + b * 32u) / 4u;
        let v = decoded(load_block((row * NB + b) * WPB));
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
#if SVD
const AW: u32 = {{AW}}u;          // stored width of A_k: the rank rounded up to whole blocks
const C4: u32 = COLS / 4u;
var<workgroup> coef: array<vec4<f32>, {{AW4}}>;

@compute @workgroup_size(64)
fn svd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let k = wg.x;
    let t = wg.y;
    if (t >= step.n_tok) { return; }
    let row = t * K + k;
    // The coefficients A_k[x_t], decoded once into workgroup memory.
    for (var b = li; b < AW / 32u; b += 64u) {
        let v = decoded(load_block((row * (AW / 32u) + b) * WPB));
        for (var j = 0u; j < 8u; j++) {
            coef[b * 8u + j] = v[j];
        }
    }
    workgroupBarrier();
    // Each lane rebuilds four columns at a time: sum_i a_i B_k[i, c].
    var ss = 0.0;
    for (var c = li; c < C4; c += 64u) {
        var acc = vec4<f32>(0.0);
        var o = k * AW * C4 + c;
        for (var i = 0u; i < AW / 4u; i++) {
            let a = coef[i];
            acc += a.x * basis(o) + a.y * basis(o + C4) + a.z * basis(o + 2u * C4)
                + a.w * basis(o + 3u * C4);
            o += 4u * C4;
        }
        MEM[row * C4 + c] = acc;
        ss += dot(acc, acc);
    }
#if NORMALIZED
#else
    red[li] = ss;
    workgroupBarrier();
    var tot = 0.0;
    for (var l = 0u; l < 64u; l++) { tot += red[l]; }
    let r = inverseSqrt(tot / f32(COLS) + {{EPS}});
    for (var c = li; c < C4; c += 64u) {
        MEM[row * C4 + c] = MEM[row * C4 + c] * r * GAMMA[k * C4 + c];
    }
#endif
}
#endif
#endif
