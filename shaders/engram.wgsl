// Engram (train/engram.py) at one layer. The host hashed each token's n-grams and streamed
// the hashed table rows into W ([n_tok, DM / 32 blocks], stored quantised, in table order):
//   gate:  E = the decoded rows; KV = [W_K; W_V] E + [b_K; b_V]  (k | v, D each, in workgroup
//          memory); g = sigmoid(signed_sqrt(RMSNorm_h(h) . RMSNorm_k(k) / sqrt(D))); VT = g v;
//          CONV[row0 + pos] = RMSNorm_c(VT)  (kept per position: the convolution's history)
//   conv:  H[t] += VT[t] + SiLU(sum_i TAPS[:, i] * CONV[row0 + pos - 9 + 3 i])
// `conv` is its own dispatch because a token reads the history rows other tokens of the same
// batch write in `gate`. One workgroup per token does decode, projection and gate, so the
// layer costs two dispatches.
#include "common"

const D: u32 = {{D}}u;
const DM: u32 = {{DM}}u;
const EPS: f32 = {{EPS}};

@group(0) @binding(0) var<uniform> step: Step;

#if GATE
@group(0) @binding(1) var<storage, read> W: array<u32>;            // stored rows, [n_tok, NB]
@group(0) @binding(2) var<storage, read> P: array<vec4<f32>>;      // [2 D, DM]: W_K then W_V
@group(0) @binding(3) var<storage, read> B: array<f32>;            // [2 D]
@group(0) @binding(4) var<storage, read> H: array<f32>;            // [n_tok, D]
@group(0) @binding(5) var<storage, read> NORMS: array<f32>;        // [3, D]: h, k, c
@group(0) @binding(6) var<storage, read_write> VT: array<f32>;     // [n_tok, D]
@group(0) @binding(7) var<storage, read_write> CONV: array<f32>;   // [slots x ctx, D]

#include "{{QUANT}}"

const NB: u32 = DM / 32u;

var<workgroup> e: array<vec4<f32>, {{DM4}}>;
var<workgroup> kv: array<f32, {{D2}}>;
var<workgroup> red: array<vec3<f32>, 64>;
var<workgroup> red_v: array<f32, 64>;

// Every lane sums the 64 partials itself after one barrier, as memory.wgsl does
// (CPU-backed adapters pay per barrier).
@compute @workgroup_size(64)
fn gate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = wg.y;
    if (t >= step.n_tok) { return; }
    for (var b = li; b < NB; b += 64u) {
        let q = load_block((t * NB + b) * WPB);
        let m = vec4<f32>(q.m);
        e[b * 8u] = q.d * q.q0 + m;
        e[b * 8u + 1u] = q.d * q.q1 + m;
        e[b * 8u + 2u] = q.d * q.q2 + m;
        e[b * 8u + 3u] = q.d * q.q3 + m;
        e[b * 8u + 4u] = q.d * q.q4 + m;
        e[b * 8u + 5u] = q.d * q.q5 + m;
        e[b * 8u + 6u] = q.d * q.q6 + m;
        e[b * 8u + 7u] = q.d * q.q7 + m;
    }
    workgroupBarrier();
    for (var o = li; o < 2u * D; o += 64u) {
        var acc = vec4<f32>(0.0);
        let w0 = o * (DM / 4u);
        for (var j = 0u; j < DM / 4u; j++) {
            acc += P[w0 + j] * e[j];
        }
        kv[o] = acc.x + acc.y + acc.z + acc.w + B[o];
    }
    workgroupBarrier();
    // sum h^2, sum k^2, sum (h gamma_h)(k gamma_k)
    var s = vec3<f32>(0.0);
    for (var c = li; c < D; c += 64u) {
        let h = H[t * D + c];
        let k = kv[c];
        s += vec3<f32>(h * h, k * k, h * NORMS[c] * k * NORMS[D + c]);
    }
    red[li] = s;
    workgroupBarrier();
    var tot = vec3<f32>(0.0);
    for (var l = 0u; l < 64u; l++) { tot += red[l]; }
    let x = tot.z * inverseSqrt(tot.x / f32(D) + EPS) * inverseSqrt(tot.y / f32(D) + EPS)
        / sqrt(f32(D));
    let g = 1.0 / (1.0 + exp(-(sqrt(max(abs(x), 1e-6)) * sign(x))));
    var sv = 0.0;
    for (var c = li; c < D; c += 64u) {
        let v = g * kv[D + c];
        VT[t * D + c] = v;
        sv += v * v;
    }
    red_v[li] = sv;
    workgroupBarrier();
    var tv = 0.0;
    for (var l = 0u; l < 64u; l++) { tv += red_v[l]; }
    let r = inverseSqrt(tv / f32(D) + EPS);
    let row = tok_row0(t) + tok_pos(t);
    for (var c = li; c < D; c += 64u) {
        CONV[row * D + c] = VT[t * D + c] * r * NORMS[2u * D + c];
    }
}
#endif

#if CONV_ADD
@group(0) @binding(1) var<storage, read_write> H: array<f32>;  // [n_tok, D]
@group(0) @binding(2) var<storage, read> VT: array<f32>;       // [n_tok, D]
@group(0) @binding(3) var<storage, read> CONV: array<f32>;     // [slots x ctx, D]
@group(0) @binding(4) var<storage, read> TAPS: array<f32>;     // [D, 4]

const KERNEL: u32 = 4u;
const DIL: u32 = 3u;
const REACH: u32 = (KERNEL - 1u) * DIL;

// One lane per (channel, token).
@compute @workgroup_size(64)
fn conv(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let t = gid.y;
    if (c >= D || t >= step.n_tok) { return; }
    let pos = tok_pos(t);
    let row0 = tok_row0(t);
    var acc = 0.0;
    for (var i = 0u; i < KERNEL; i++) {
        // Positions before the sequence's start read zero (causal padding).
        if (pos + DIL * i >= REACH) {
            acc += TAPS[c * KERNEL + i] * CONV[(row0 + pos + DIL * i - REACH) * D + c];
        }
    }
    H[t * D + c] += VT[t * D + c] + acc / (1.0 + exp(-acc));
}
#endif
