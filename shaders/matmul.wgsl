// Quantised matrix x activations: Y[t, row] = sum_c W[row, c] * x[t, c], weights dequantised in
// registers, one block of 32 at a time, each block reused for T tokens (T = 1 when decoding).
// An invocation owns R weight rows; which rows, and what happens to the result, is the epilogue's
// business (plain store, residual add, QKV + RoPE + KV-cache append, SwiGLU).
// Optional prologue NORM: x = RMSNorm(h) * gamma, computed by the workgroup (fused, no extra pass).
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
const R: u32 = {{R}}u;          // weight rows per invocation
const T: u32 = {{T}}u;          // tokens per invocation
const COLS: u32 = {{COLS}}u;    // row length (multiple of 32)
const NB: u32 = COLS / 32u;
const ROWS: u32 = {{ROWS}}u;    // rows of W bound here
const EPS: f32 = {{EPS}};

var<workgroup> partial: array<f32, WG * T>;
// Rows owned by this invocation and the results for one token, read by the epilogue.
var<private> rows: array<u32, R>;
var<private> outv: array<f32, R>;
var<workgroup> inv_rms: array<f32, T>;

// Physical row of W for slot r of group g.
fn row_of(g: u32, r: u32) -> u32 {
#if EPI_QKV
    // Groups of 4 rows hold two RoPE pairs: adjacent layout (0,1),(2,3); rotate-half (0,2),(1,3).
    let row = g * 4u;
    if (row >= {{QD}}u + {{KVD}}u) { return row + r; }
    let head = row / {{HD}}u;
    let j = (row % {{HD}}u) / 4u;
#if ROPE_HALF
    return head * {{HD}}u + 2u * j + (r & 1u) + (r >> 1u) * ({{HD}}u / 2u);
#else
    return head * {{HD}}u + 4u * j + r;
#endif
#else
#if EPI_SWIGLU
    // R/2 gate rows and the same R/2 up rows (up follows gate in W).
    let half = R / 2u;
    return g * half + (r % half) + (r / half) * {{FFN}}u;
#else
    return g * R + r;
#endif
#endif
}

// Which token row of X slot t of token tile y reads; n_tok bounds it.
fn tok_of(y: u32, t: u32) -> u32 {
#if LAST_ONLY
    return step.n_tok - 1u;
#else
    return y * T + t;
#endif
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.x * WG + lid;
    var ntok = T;
#if LAST_ONLY
#else
    ntok = min(T, step.n_tok - wid.y * T);
#endif

#if NORM
    for (var t = 0u; t < T; t++) {
        var ss = 0.0;
        if (t < ntok) {
            let base = tok_of(wid.y, t) * (COLS / 4u);
            for (var c = lid; c < COLS / 4u; c += WG) {
                let v = X[base + c];
                ss += dot(v, v);
            }
        }
        partial[lid * T + t] = ss;
    }
    workgroupBarrier();
    if (lid < T) {
        var s = 0.0;
        for (var i = 0u; i < WG; i++) { s += partial[i * T + lid]; }
        inv_rms[lid] = inverseSqrt(s / f32(COLS) + EPS);
    }
    workgroupBarrier();
#endif

    var acc: array<f32, R * T>;
    for (var r = 0u; r < R; r++) { rows[r] = row_of(g, r); }
    if (rows[0] < ROWS) {
        for (var b = 0u; b < NB; b++) {
            var xb: array<array<vec4<f32>, 8>, T>;
            var xs: array<f32, T>;
            for (var t = 0u; t < T; t++) {
                var s = vec4<f32>(0.0);
                if (t < ntok) {
                    let base = tok_of(wid.y, t) * (COLS / 4u) + b * 8u;
                    for (var i = 0u; i < 8u; i++) {
#if NORM
                        let v = X[base + i] * G[b * 8u + i];
#else
                        let v = X[base + i];
#endif
                        xb[t][i] = v;
                        s += v;
                    }
                }
                xs[t] = s.x + s.y + s.z + s.w;
            }
            for (var r = 0u; r < R; r++) {
                if (rows[r] >= ROWS) { continue; }
                var blk = load_block(rows[r] * (NB * WPB) + b * WPB);
                for (var t = 0u; t < T; t++) {
                    var q = 0.0;
                    for (var i = 0u; i < 8u; i++) { q += dot(blk.q[i], xb[t][i]); }
                    acc[r * T + t] += blk.d * q + blk.m * xs[t];
                }
            }
        }
    }
    for (var t = 0u; t < ntok; t++) {
        for (var r = 0u; r < R; r++) {
#if NORM
            outv[r] = acc[r * T + t] * inv_rms[t];
#else
            outv[r] = acc[r * T + t];
#endif
        }
        epilogue(tok_of(wid.y, t));
    }
}

#if EPI_STORE
// Plain store into Y[row0 + row] (logits of one token; ROW0 = first row of this chunk).
fn epilogue(tok: u32) {
    for (var r = 0u; r < R; r++) {
        if (rows[r] < ROWS) { Y[{{ROW0}}u + rows[r]] = outv[r]; }
    }
}
#endif
#if EPI_RESIDUAL
// Y is the residual stream [n_tok, ROWS]: h += W x.
fn epilogue(tok: u32) {
    for (var r = 0u; r < R; r++) {
        if (rows[r] < ROWS) { Y[tok * ROWS + rows[r]] += outv[r]; }
    }
}
#endif
#if EPI_SWIGLU
// Y[tok, j] = silu(gate_j) * up_j.
fn epilogue(tok: u32) {
    let half = R / 2u;
    for (var r = 0u; r < half; r++) {
        let j = rows[r];
        if (j < {{FFN}}u) {
            let a = outv[r];
            Y[tok * {{FFN}}u + j] = a / (1.0 + exp(-a)) * outv[r + half];
        }
    }
}
#endif
#if EPI_QKV
// q -> Y[tok, QD]; k, v -> KV cache at position pos0 + tok. RoPE applied to q and k.
fn epilogue(tok: u32) {
    let pos = step.pos0 + tok;
    var o = outv;
    if (rows[0] < {{QD}}u + {{KVD}}u) {
#if ROPE_HALF
        var pa = vec2<u32>(0u, 1u);
        var pb = vec2<u32>(2u, 3u);
        let i0 = (rows[0] % {{HD}}u);
#else
        var pa = vec2<u32>(0u, 2u);
        var pb = vec2<u32>(1u, 3u);
        let i0 = (rows[0] % {{HD}}u) / 2u;
#endif
        for (var k = 0u; k < 2u; k++) {
            let cs = ROPE[pos * ({{HD}}u / 2u) + i0 + k];
            let a = outv[pa[k]];
            let b = outv[pb[k]];
            o[pa[k]] = a * cs.x - b * cs.y;
            o[pb[k]] = a * cs.y + b * cs.x;
        }
    }
    for (var r = 0u; r < R; r++) {
        let row = rows[r];
        if (row < {{QD}}u) {
            Y[tok * {{QD}}u + row] = o[r];
        } else if (row < {{QD}}u + {{KVD}}u) {
            KC[pos * {{KVD}}u + row - {{QD}}u] = o[r];
        } else if (row < ROWS) {
            VC[pos * {{KVD}}u + row - {{QD}}u - {{KVD}}u] = o[r];
        }
    }
}
#endif
