// Decode matrix-vector product for CPU-backed adapters (lavapipe): every lane owns whole 4-row
// groups, so there are no partial sums, no workgroup memory and no barriers. Each of those
// costs a per-lane loop on a CPU Vulkan driver, which made them dearer than the weights.
// x (and the norm's gamma) come from uniform buffers at constant offsets: the driver loads
// such a value once and broadcasts it, where a storage load would walk the lanes.
// Two forms: x held in registers and every block unrolled (fastest per row when a lane owns
// many groups), or LOOP, a loop over blocks that reloads x per block (as fast when a lane owns
// few groups; llvmpipe's compile time grows with the unrolled code, 10 s for one of SmolLM2's).
// Entry `tokens` (BATCHED, TOKENS of them, with LOOP): a few tokens in one step, each weight block loaded and
// unpacked once and multiplied by every token's x (the decode step of several sequences).
#include "common"

#include "matmul_bindings"

#include "{{QUANT}}"

const COLS: u32 = {{COLS}}u;
const NB: u32 = COLS / 32u;
const ROWS: u32 = {{ROWS}}u;
const EPS: f32 = {{EPS}};
const GROUPS: u32 = {{GROUPS}}u;
const LANES: u32 = {{LANES}}u;  // lanes in the whole dispatch

#if LOOP
// x chunk i (times gamma): uniform loads at a lane-uniform index.
fn xq(i: u32) -> vec4<f32> {
#if NORM
    return X[i] * G[i];
#else
    return X[i];
#endif
}
#else
// x (times gamma) by block of 32, and each block's sum; constant indices only, so these stay
// in registers (or the stack), never in per-lane scratch memory.
var<private> xp: array<vec4<f32>, {{NB}} * 8>;
var<private> xsp: array<f32, {{NB}}>;
#endif

#include "matmul_epilogue"

#if ROUTER
// TIDE: the layer's router rides along with the gate/up matvec, whose normalised input x is the
// router's too. W_r [RK1 rows, COLS / 4 texels] as f32 bits; the logits go out without the
// softmax (the down projection's epilogue takes it).
@group(0) @binding(5) var WR: texture_2d<u32>;
@group(0) @binding(6) var<storage, read_write> RL: array<f32>;
const RK1: u32 = {{RK1}}u;

fn router_dot(j: u32) -> f32 {
    var acc = vec4<f32>(0.0);
#if LOOP
    for (var i = 0u; i < NB * 8u; i++) {
        acc += bitcast<vec4<f32>>(textureLoad(WR, vec2<u32>(i, j), 0)) * xq(i);
    }
#else
#for B in 0..{{NB}}
#for J in 0..8
    acc += bitcast<vec4<f32>>(textureLoad(WR, vec2<u32>({{B}}u * 8u + {{J}}u, j), 0)) * xp[{{B}} * 8 + {{J}}];
#endfor
#endfor
#endif
    return acc.x + acc.y + acc.z + acc.w;
}
#endif

#if !LOOP
fn row_dot(row: u32) -> f32 {
    var acc = 0.0;
    if (row < ROWS) {
        let rb = row * (NB * WPB);
#for B in 0..{{NB}}
        acc += bdot(load_block(rb + {{B}}u * WPB), xp[{{B}} * 8], xp[{{B}} * 8 + 1], xp[{{B}} * 8 + 2], xp[{{B}} * 8 + 3], xp[{{B}} * 8 + 4], xp[{{B}} * 8 + 5], xp[{{B}} * 8 + 6], xp[{{B}} * 8 + 7], xsp[{{B}}]);
#endfor
    }
    return acc;
}
#endif

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    var ss = vec4<f32>(0.0);
#if LOOP
    for (var i = 0u; i < NB * 8u; i++) { let r = X[i]; ss += r * r; }
#else
#for B in 0..{{NB}}
    var s{{B}} = vec4<f32>(0.0);
#for J in 0..8
    let r{{B}}_{{J}} = X[{{B}} * 8 + {{J}}];
    ss += r{{B}}_{{J}} * r{{B}}_{{J}};
#if NORM
    xp[{{B}} * 8 + {{J}}] = r{{B}}_{{J}} * G[{{B}} * 8 + {{J}}];
#else
    xp[{{B}} * 8 + {{J}}] = r{{B}}_{{J}};
#endif
    s{{B}} += xp[{{B}} * 8 + {{J}}];
#endfor
    xsp[{{B}}] = s{{B}}.x + s{{B}}.y + s{{B}}.z + s{{B}}.w;
#endfor
#endif
    var inv = 1.0;
#if NORM
    inv = inverseSqrt((ss.x + ss.y + ss.z + ss.w) / f32(COLS) + EPS);
#endif
#if MEMTEX
    router_softmax(gid.x);
#endif
    // Lanes take groups round-robin; the host sizes the dispatch so that every lane gets the
    // same number of groups where it can.
    for (var g = gid.x; g < GROUPS; g += LANES) {
        let rows = vec4<u32>(row_of(g, 0u), row_of(g, 1u), row_of(g, 2u), row_of(g, 3u));
        // A loop, not four inlined copies: the driver's compile time grows with code size.
        var v = vec4<f32>(0.0);
#if LOOP
        // Rows past the end read the last row; their results are not stored.
        let rb = min(rows, vec4<u32>(ROWS - 1u)) * (NB * WPB);
        for (var b = 0u; b < NB; b++) {
            let x0 = xq(b * 8u); let x1 = xq(b * 8u + 1u); let x2 = xq(b * 8u + 2u); let x3 = xq(b * 8u + 3u);
            let x4 = xq(b * 8u + 4u); let x5 = xq(b * 8u + 5u); let x6 = xq(b * 8u + 6u); let x7 = xq(b * 8u + 7u);
            let s4 = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
            let xs = s4.x + s4.y + s4.z + s4.w;
            for (var r = 0u; r < 4u; r++) {
                v[r] += bdot(load_block(rb[r] + b * WPB), x0, x1, x2, x3, x4, x5, x6, x7, xs);
            }
        }
#else
        for (var r = 0u; r < 4u; r++) { v[r] = row_dot(rows[r]); }
#endif
        if (rows.x < ROWS) { epilogue(0u, rows, v * inv); }
    }
#if ROUTER
    // Router rows go to the highest lanes first: they hold the fewest FFN groups.
    for (var j = LANES - 1u - gid.x; j < RK1; j += LANES) { RL[j] = router_dot(j) * inv; }
#endif
}

#if BATCHED
// x chunk i of token t (times gamma).
fn xt(t: u32, i: u32) -> vec4<f32> {
#if NORM
    return X[t * NB * 8u + i] * G[i];
#else
    return X[t * NB * 8u + i];
#endif
}

@compute @workgroup_size({{WG}})
fn tokens(@builtin(global_invocation_id) gid: vec3<u32>) {
    // Per token: the RMSNorm's scale (1 without the norm); named registers, not an array.
#for T in 0..{{TOKENS}}
    var inv{{T}} = 1.0;
#if NORM
    var ss{{T}} = vec4<f32>(0.0);
    for (var i = 0u; i < NB * 8u; i++) { let r = X[{{T}}u * NB * 8u + i]; ss{{T}} += r * r; }
    inv{{T}} = inverseSqrt((ss{{T}}.x + ss{{T}}.y + ss{{T}}.z + ss{{T}}.w) / f32(COLS) + EPS);
#endif
#endfor
    for (var g = gid.x; g < GROUPS; g += LANES) {
        let rows = vec4<u32>(row_of(g, 0u), row_of(g, 1u), row_of(g, 2u), row_of(g, 3u));
        // Rows past the end read the last row; their results are not stored.
        let rb = min(rows, vec4<u32>(ROWS - 1u)) * (NB * WPB);
#for T in 0..{{TOKENS}}
        var v{{T}} = vec4<f32>(0.0);
#endfor
        for (var b = 0u; b < NB; b++) {
            let k0 = load_block(rb.x + b * WPB);
            let k1 = load_block(rb.y + b * WPB);
            let k2 = load_block(rb.z + b * WPB);
            let k3 = load_block(rb.w + b * WPB);
#for T in 0..{{TOKENS}}
            {
                let x0 = xt({{T}}u, b * 8u); let x1 = xt({{T}}u, b * 8u + 1u);
                let x2 = xt({{T}}u, b * 8u + 2u); let x3 = xt({{T}}u, b * 8u + 3u);
                let x4 = xt({{T}}u, b * 8u + 4u); let x5 = xt({{T}}u, b * 8u + 5u);
                let x6 = xt({{T}}u, b * 8u + 6u); let x7 = xt({{T}}u, b * 8u + 7u);
                let s4 = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
                let xs = s4.x + s4.y + s4.z + s4.w;
                v{{T}} += vec4<f32>(bdot(k0, x0, x1, x2, x3, x4, x5, x6, x7, xs),
                                    bdot(k1, x0, x1, x2, x3, x4, x5, x6, x7, xs),
                                    bdot(k2, x0, x1, x2, x3, x4, x5, x6, x7, xs),
                                    bdot(k3, x0, x1, x2, x3, x4, x5, x6, x7, xs));
            }
#endfor
        }
        if (rows.x < ROWS) {
#for T in 0..{{TOKENS}}
            epilogue({{T}}u, rows, v{{T}} * inv{{T}});
#endfor
        }
    }
}
#endif
