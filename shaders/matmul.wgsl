// Batched (prefill) matrix product Y[t, row] = sum_c W[row, c] * x[t, c]. Each lane holds a
// register tile of TPL tokens x 4*GR rows: a weight block, once loaded and dequantised, serves
// TPL tokens, and each token's x block serves 4*GR rows, so loads per multiply-add are a
// fraction of a matrix-vector product's (on CPU-backed adapters loads are what costs).
// Optional NORM: gamma is applied to x as it is loaded, and each lane sums its tokens' squares
// from the same loads; 1/rms scales the results before the epilogue.
// Epilogues are shared with matvec.wgsl.
// SGW (CPU adapters with subgroups of 8, Q4_0 / Q4_1 weights in a texture): every lane of a
// workgroup needs the same weight blocks, and a texel fetch costs as much as ~32
// multiply-adds on lavapipe, whatever the address. So each of a subgroup's 8 lanes fetches
// one of the 8 texels that hold a group's 4 blocks, and subgroupBroadcast hands them round:
// one fetch per lane and group instead of eight.
// (naga 30 takes subgroup builtins without `enable subgroups;`, and rejects the directive.)
#include "common"

#include "matmul_bindings"

#include "{{QUANT}}"

const WG: u32 = {{WG}}u;        // lanes per workgroup
const TPL: u32 = {{TPL}}u;      // tokens per lane
const GR: u32 = {{GR}}u;        // 4-row groups per workgroup
const COLS: u32 = {{COLS}}u;
const NB: u32 = COLS / 32u;
const ROWS: u32 = {{ROWS}}u;
const EPS: f32 = {{EPS}};

#include "matmul_epilogue"

@compute @workgroup_size({{WG}})
#if SGW
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) sl: u32) {
    let t0 = (wid.y * WG + lid) * TPL;
    // A lane past the batch still fetches for the others of its subgroup.
    if (subgroupAll(t0 >= step.n_tok)) { return; }
#else
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t0 = (wid.y * WG + lid) * TPL;
    if (t0 >= step.n_tok) { return; }
#endif
#for T in 0..{{TPL}}
    // Past the batch end a slot repeats the last token; its results are not stored.
    let xr{{T}} = min(t0 + {{T}}u, step.n_tok - 1u) * (COLS / 4u);
    // NORM: the sum of squares for 1/rms builds up from the x chunks the blocks load anyway
    // (a separate pass over x cost as many fetches as the products' own x loads).
    var ss{{T}} = 0.0;
#endfor
    let g0 = wid.x * GR;
#for J in 0..{{GR}}
    let r{{J}} = vec4<u32>(row_of(g0 + {{J}}u, 0u), row_of(g0 + {{J}}u, 1u), row_of(g0 + {{J}}u, 2u), row_of(g0 + {{J}}u, 3u));
    let w{{J}} = min(r{{J}}, vec4<u32>(ROWS - 1u)) * (NB * WPB);
#if SGW
    // This lane fetches texel sl / 4 of row slot sl % 4's block.
    let mw{{J}} = w{{J}}[sl % 4u];
#endif
#for T in 0..{{TPL}}
    var a{{J}}_{{T}} = vec4<f32>(0.0);
#endfor
#endfor
    for (var b = 0u; b < NB; b++) {
        let gb = b * 8u;
#for T in 0..{{TPL}}
#for I in 0..8
        let u{{T}}_{{I}} = xraw(xr{{T}} + gb + {{I}}u);
#endfor
#if NORM
        ss{{T}} += (dot(u{{T}}_0, u{{T}}_0) + dot(u{{T}}_1, u{{T}}_1)) + (dot(u{{T}}_2, u{{T}}_2) + dot(u{{T}}_3, u{{T}}_3))
                 + (dot(u{{T}}_4, u{{T}}_4) + dot(u{{T}}_5, u{{T}}_5)) + (dot(u{{T}}_6, u{{T}}_6) + dot(u{{T}}_7, u{{T}}_7));
#for I in 0..8
        let x{{T}}_{{I}} = u{{T}}_{{I}} * G[gb + {{I}}u];
#endfor
#else
#for I in 0..8
        let x{{T}}_{{I}} = u{{T}}_{{I}};
#endfor
#endif
        let s{{T}} = (x{{T}}_0 + x{{T}}_1) + (x{{T}}_2 + x{{T}}_3) + (x{{T}}_4 + x{{T}}_5) + (x{{T}}_6 + x{{T}}_7);
        let xs{{T}} = s{{T}}.x + s{{T}}.y + s{{T}}.z + s{{T}}.w;
#endfor
        let o = b * WPB;
#for J in 0..{{GR}}
        {
#if SGW
            let tq = texel((mw{{J}} + o) / 4u + sl / 4u);
            let kx = block5(words5_of(subgroupBroadcast(tq, 0u), subgroupBroadcast(tq, 4u), w{{J}}.x + o));
            let ky = block5(words5_of(subgroupBroadcast(tq, 1u), subgroupBroadcast(tq, 5u), w{{J}}.y + o));
            let kz = block5(words5_of(subgroupBroadcast(tq, 2u), subgroupBroadcast(tq, 6u), w{{J}}.z + o));
            let kw = block5(words5_of(subgroupBroadcast(tq, 3u), subgroupBroadcast(tq, 7u), w{{J}}.w + o));
#else
            let kx = load_block(w{{J}}.x + o);
            let ky = load_block(w{{J}}.y + o);
            let kz = load_block(w{{J}}.z + o);
            let kw = load_block(w{{J}}.w + o);
#endif
            // Row by row, the block's 8 chunks outside and the tokens inside: each chunk of
            // the row's weights serves TPL tokens while it sits in registers (on lavapipe,
            // 1.3x faster than one whole block dot per token: fewer operand reloads).
            let kk = array<Blk, 4>(kx, ky, kz, kw);
#for C in 0..4
            {
#for T in 0..{{TPL}}
                var p{{T}} = 0.0;
#endfor
#for I in 0..8
#for T in 0..{{TPL}}
                p{{T}} += dot(kk[{{C}}].q{{I}}, x{{T}}_{{I}});
#endfor
#endfor
#for T in 0..{{TPL}}
                a{{J}}_{{T}}[{{C}}] += kk[{{C}}].d * p{{T}} + kk[{{C}}].m * xs{{T}};
#endfor
            }
#endfor
        }
#endfor
    }
#for T in 0..{{TPL}}
#if NORM
    let inv{{T}} = inverseSqrt(ss{{T}} / f32(COLS) + EPS);
#else
    let inv{{T}} = 1.0;
#endif
#endfor
#for J in 0..{{GR}}
#for T in 0..{{TPL}}
    if (t0 + {{T}}u < step.n_tok && r{{J}}.x < ROWS) { epilogue(t0 + {{T}}u, r{{J}}, a{{J}}_{{T}} * inv{{T}}); }
#endfor
#endfor
}
