// Decode matrix-vector product (one token): y = W x, weights dequantised in registers.
// Lanes split the columns: lane `lane` of a row set owns 32-element block(s) `lane`, so its
// slice of x is loaded once and stays in registers while it walks the rows; partial dots meet
// in workgroup memory and one lane per 4-row group sums them and runs the epilogue (shared with
// the prefill matmul). On CPU Vulkan drivers this matters: every storage load is a per-lane
// gather, so x must not be reloaded per row.
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
const COLS: u32 = {{COLS}}u;
const NB: u32 = COLS / 32u;
const ROWS: u32 = {{ROWS}}u;
const EPS: f32 = {{EPS}};
const LPR: u32 = {{LPR}}u;      // lanes per row set: min(NB, WG)
const SUBS: u32 = WG / LPR;     // row sets working side by side
const GPW: u32 = {{GPW}}u;      // 4-row groups per workgroup
const SLOTS: u32 = GPW * 4u;

var<workgroup> part: array<f32, SLOTS * LPR>;
var<workgroup> ssq: array<f32, WG>;

#include "matmul_epilogue"

fn xin(i: u32, gi: u32) -> vec4<f32> {
#if NORM
    return X[i] * G[gi];
#else
    return X[i];
#endif
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tok = step.n_tok - 1u;
    let xrow = tok * (COLS / 4u);
    let sub = lid / LPR;
    let lane = lid % LPR;

    var ss = 0.0;
#if NORM
    for (var c = lid; c < COLS / 4u; c += WG) {
        let v = X[xrow + c];
        ss += dot(v, v);
    }
#endif
    ssq[lid] = ss;

    if (sub < SUBS) {
#if X_RESIDENT
        // NB <= WG: this lane's single block of x, loaded once.
        let b = lane;
        let gb = b * 8u;
        let x0 = xin(xrow + gb, gb); let x1 = xin(xrow + gb + 1u, gb + 1u);
        let x2 = xin(xrow + gb + 2u, gb + 2u); let x3 = xin(xrow + gb + 3u, gb + 3u);
        let x4 = xin(xrow + gb + 4u, gb + 4u); let x5 = xin(xrow + gb + 5u, gb + 5u);
        let x6 = xin(xrow + gb + 6u, gb + 6u); let x7 = xin(xrow + gb + 7u, gb + 7u);
        let s4 = (x0 + x1) + (x2 + x3) + (x4 + x5) + (x6 + x7);
        let xs = s4.x + s4.y + s4.z + s4.w;
#endif
        for (var slot = sub; slot < SLOTS; slot += SUBS) {
            let row = row_of(wid.x * GPW + slot / 4u, slot % 4u);
            var acc = 0.0;
            if (row < ROWS) {
#if X_RESIDENT
                let k = load_block(row * (NB * WPB) + b * WPB);
                let q = dot(k.q0, x0) + dot(k.q1, x1) + dot(k.q2, x2) + dot(k.q3, x3)
                      + dot(k.q4, x4) + dot(k.q5, x5) + dot(k.q6, x6) + dot(k.q7, x7);
                acc = k.d * q + k.m * xs;
#else
                for (var b = lane; b < NB; b += LPR) {
                    let gb = b * 8u;
                    let x0 = xin(xrow + gb, gb); let x1 = xin(xrow + gb + 1u, gb + 1u);
                    let x2 = xin(xrow + gb + 2u, gb + 2u); let x3 = xin(xrow + gb + 3u, gb + 3u);
                    let x4 = xin(xrow + gb + 4u, gb + 4u); let x5 = xin(xrow + gb + 5u, gb + 5u);
                    let x6 = xin(xrow + gb + 6u, gb + 6u); let x7 = xin(xrow + gb + 7u, gb + 7u);
                    let s4 = (x0 + x1) + (x2 + x3) + (x4 + x5) + (x6 + x7);
                    let k = load_block(row * (NB * WPB) + b * WPB);
                    let q = dot(k.q0, x0) + dot(k.q1, x1) + dot(k.q2, x2) + dot(k.q3, x3)
                          + dot(k.q4, x4) + dot(k.q5, x5) + dot(k.q6, x6) + dot(k.q7, x7);
                    acc += k.d * q + k.m * (s4.x + s4.y + s4.z + s4.w);
                }
#endif
            }
            part[slot * LPR + lane] = acc;
        }
    }
    workgroupBarrier();
    if (lid < GPW) {
        var inv = 1.0;
#if NORM
        var tot = 0.0;
        for (var i = 0u; i < WG; i++) { tot += ssq[i]; }
        inv = inverseSqrt(tot / f32(COLS) + EPS);
#endif
        let g = wid.x * GPW + lid;
        var v = vec4<f32>(0.0);
        for (var r = 0u; r < 4u; r++) {
            var s = 0.0;
            for (var l = 0u; l < LPR; l++) { s += part[(lid * 4u + r) * LPR + l]; }
            v[r] = s;
        }
        let rows = vec4<u32>(row_of(g, 0u), row_of(g, 1u), row_of(g, 2u), row_of(g, 3u));
        if (rows.x < ROWS) { epilogue(tok, rows, v * inv); }
    }
}
