// Batched (prefill) matrix product Y[t, row] = sum_c W[row, c] * x[t, c]. Lanes are tokens:
// every lane of a workgroup reads the same weight block at the same time (one uniform load,
// dequantised once per SIMD group) and dots it with its own token's x block, which stays in
// registers for all 4 * GR rows of the workgroup. Optional prologue NORM: each lane computes
// its token's RMS and multiplies by gamma on the fly. Epilogues are shared with matvec.wgsl.
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

const WG: u32 = {{WG}}u;        // tokens per workgroup
const GR: u32 = {{GR}}u;        // 4-row groups per workgroup
const COLS: u32 = {{COLS}}u;
const NB: u32 = COLS / 32u;
const ROWS: u32 = {{ROWS}}u;
const EPS: f32 = {{EPS}};

#include "matmul_epilogue"

fn xin(i: u32, gi: u32) -> vec4<f32> {
#if NORM
    return X[i] * G[gi];
#else
    return X[i];
#endif
}

fn bdot(k: Blk, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>, xs: f32) -> f32 {
    let q = dot(k.q0, x0) + dot(k.q1, x1) + dot(k.q2, x2) + dot(k.q3, x3)
          + dot(k.q4, x4) + dot(k.q5, x5) + dot(k.q6, x6) + dot(k.q7, x7);
    return k.d * q + k.m * xs;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tok = wid.y * WG + lid;
    if (tok >= step.n_tok) { return; }
    let xrow = tok * (COLS / 4u);
    var inv = 1.0;
#if NORM
    var ss = 0.0;
    for (var c = 0u; c < COLS / 4u; c++) {
        let v = X[xrow + c];
        ss += dot(v, v);
    }
    inv = inverseSqrt(ss / f32(COLS) + EPS);
#endif
    let g0 = wid.x * GR;
#for J in 0..{{GR}}
    let r{{J}} = vec4<u32>(row_of(g0 + {{J}}u, 0u), row_of(g0 + {{J}}u, 1u), row_of(g0 + {{J}}u, 2u), row_of(g0 + {{J}}u, 3u));
    let w{{J}} = min(r{{J}}, vec4<u32>(ROWS - 1u)) * (NB * WPB);
    var a{{J}} = vec4<f32>(0.0);
#endfor
    for (var b = 0u; b < NB; b++) {
        let gb = b * 8u;
        let x0 = xin(xrow + gb, gb); let x1 = xin(xrow + gb + 1u, gb + 1u);
        let x2 = xin(xrow + gb + 2u, gb + 2u); let x3 = xin(xrow + gb + 3u, gb + 3u);
        let x4 = xin(xrow + gb + 4u, gb + 4u); let x5 = xin(xrow + gb + 5u, gb + 5u);
        let x6 = xin(xrow + gb + 6u, gb + 6u); let x7 = xin(xrow + gb + 7u, gb + 7u);
        let s4 = (x0 + x1) + (x2 + x3) + (x4 + x5) + (x6 + x7);
        let xs = s4.x + s4.y + s4.z + s4.w;
        let o = b * WPB;
#for J in 0..{{GR}}
        a{{J}} += vec4<f32>(
            bdot(load_block(w{{J}}.x + o), x0, x1, x2, x3, x4, x5, x6, x7, xs),
            bdot(load_block(w{{J}}.y + o), x0, x1, x2, x3, x4, x5, x6, x7, xs),
            bdot(load_block(w{{J}}.z + o), x0, x1, x2, x3, x4, x5, x6, x7, xs),
            bdot(load_block(w{{J}}.w + o), x0, x1, x2, x3, x4, x5, x6, x7, xs));
#endfor
    }
#for J in 0..{{GR}}
    if (r{{J}}.x < ROWS) { epilogue(tok, r{{J}}, a{{J}} * inv); }
#endfor
}
