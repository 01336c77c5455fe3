// Quantised matrix x activations: Y[t, row] = sum_c W[row, c] * x[t, c]. Weights are dequantised
// in registers one block of 32 at a time and each block is reused for T tokens (T = 1 when
// decoding, 4 in prefill). An invocation owns 4 weight rows; which rows, and what is done with
// the results, is the epilogue's business (plain store, residual add, QKV + RoPE + KV-cache
// append, SwiGLU). Optional prologue NORM: x = RMSNorm(h) * gamma, fused (no extra pass).
// No private arrays with run-time indices: CPU Vulkan drivers spill those to memory.
#include "common"

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;
#if NORM
@group(0) @binding(3) var<storage, read> G: array<vec4<f32>>;
#endif
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
#if EPI_QKV
@group(0) @binding(5) var<storage, read_write> KC: array<f32>;
@group(0) @binding(6) var<storage, read_write> VC: array<f32>;
@group(0) @binding(7) var<storage, read> ROPE: array<vec2<f32>>;
#endif

#include "{{QUANT}}"

const WG: u32 = {{WG}}u;
const T: u32 = {{T}}u;          // tokens per invocation (1 or 4: one vec4 lane each)
const COLS: u32 = {{COLS}}u;    // row length (multiple of 32)
const NB: u32 = COLS / 32u;
const ROWS: u32 = {{ROWS}}u;    // rows of W bound here
const EPS: f32 = {{EPS}};

var<workgroup> partial: array<vec4<f32>, WG>;
var<workgroup> inv_rms: vec4<f32>;

#include "matmul_epilogue"

// Which token row of X slot t of token tile y reads.
fn tok_of(y: u32, t: u32) -> u32 {
#if LAST_ONLY
    return step.n_tok - 1u;
#else
    return y * T + t;
#endif
}

fn xin(i: u32, gi: u32) -> vec4<f32> {
#if NORM
    return X[i] * G[gi];
#else
    return X[i];
#endif
}

// Block b of one row against the x block of each of the ntok tokens: lane t of the result.
fn row_block(row: u32, b: u32, y: u32, ntok: u32) -> vec4<f32> {
    var out = vec4<f32>(0.0);
    if (row >= ROWS) { return out; }
    let k = load_block(row * (NB * WPB) + b * WPB);
    let gb = b * 8u;
    for (var t = 0u; t < ntok; t++) {
        let xb = tok_of(y, t) * (COLS / 4u) + gb;
        let x0 = xin(xb, gb); let x1 = xin(xb + 1u, gb + 1u);
        let x2 = xin(xb + 2u, gb + 2u); let x3 = xin(xb + 3u, gb + 3u);
        let x4 = xin(xb + 4u, gb + 4u); let x5 = xin(xb + 5u, gb + 5u);
        let x6 = xin(xb + 6u, gb + 6u); let x7 = xin(xb + 7u, gb + 7u);
        let q = dot(k.q0, x0) + dot(k.q1, x1) + dot(k.q2, x2) + dot(k.q3, x3)
              + dot(k.q4, x4) + dot(k.q5, x5) + dot(k.q6, x6) + dot(k.q7, x7);
        let s = (x0 + x1) + (x2 + x3) + (x4 + x5) + (x6 + x7);
        out[t] = k.d * q + k.m * (s.x + s.y + s.z + s.w);
    }
    return out;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.x * WG + lid;
#if LAST_ONLY
    let ntok = 1u;
#else
    let ntok = min(T, step.n_tok - wid.y * T);
#endif

    var inv = vec4<f32>(1.0);
#if NORM
    var ss = vec4<f32>(0.0);
    for (var t = 0u; t < ntok; t++) {
        let base = tok_of(wid.y, t) * (COLS / 4u);
        var s = 0.0;
        for (var c = lid; c < COLS / 4u; c += WG) {
            let v = X[base + c];
            s += dot(v, v);
        }
        ss[t] = s;
    }
    partial[lid] = ss;
    workgroupBarrier();
    if (lid == 0u) {
        var tot = vec4<f32>(0.0);
        for (var i = 0u; i < WG; i++) { tot += partial[i]; }
        inv_rms = inverseSqrt(tot / f32(COLS) + EPS);
    }
    workgroupBarrier();
    inv = inv_rms;
#endif

    let rows = vec4<u32>(row_of(g, 0u), row_of(g, 1u), row_of(g, 2u), row_of(g, 3u));
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    if (rows.x < ROWS) {
        for (var b = 0u; b < NB; b++) {
            a0 += row_block(rows.x, b, wid.y, ntok);
            a1 += row_block(rows.y, b, wid.y, ntok);
            a2 += row_block(rows.z, b, wid.y, ntok);
            a3 += row_block(rows.w, b, wid.y, ntok);
        }
    }
    for (var t = 0u; t < ntok; t++) {
        epilogue(tok_of(wid.y, t), rows, vec4<f32>(a0[t], a1[t], a2[t], a3[t]) * inv[t]);
    }
}

