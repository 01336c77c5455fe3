// Decode matrix-vector product (one token): y = W x, weights dequantised in registers.
// Lanes split the columns: lane `lane` of a row set owns blocks lane, lane + LPR, ... (BPL of
// them), loads that slice of x once and keeps it in registers while it walks the rows; partial
// dots meet in workgroup memory, and one lane per 4-row group sums them and runs the epilogue
// (shared with the prefill matmul). Many rows per workgroup keep the per-workgroup start-up
// (x slice, norm, barrier) small against the weight traffic.
#include "common"

#include "matmul_bindings"

#include "{{QUANT}}"

const WG: u32 = {{WG}}u;
const COLS: u32 = {{COLS}}u;
const NB: u32 = COLS / 32u;
const ROWS: u32 = {{ROWS}}u;
const EPS: f32 = {{EPS}};
const LPR: u32 = {{LPR}}u;      // lanes per row set
const SUBS: u32 = WG / LPR;     // row sets working side by side
const GPW: u32 = {{GPW}}u;      // 4-row groups per workgroup
const SLOTS: u32 = GPW * 4u;

var<workgroup> part: array<f32, SLOTS * LPR>;
var<workgroup> ssq: array<f32, WG>;

#include "matmul_epilogue"

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tok = step.n_tok - 1u;
    let xrow = tok * (COLS / 4u);
    let sub = lid / LPR;
    let lane = lid % LPR;

    var ss = 0.0;
#if NORM
    for (var c = lid; c < COLS / 4u; c += WG) {
        let v = xraw(xrow + c);
        ss += dot(v, v);
    }
#endif
    ssq[lid] = ss;

    if (sub < SUBS) {
#for K in 0..{{BPL}}
        let b{{K}} = lane + {{K}}u * LPR;
        let g{{K}} = min(b{{K}}, NB - 1u) * 8u;
        let x{{K}}_0 = xin(xrow + g{{K}}, g{{K}});
        let x{{K}}_1 = xin(xrow + g{{K}} + 1u, g{{K}} + 1u);
        let x{{K}}_2 = xin(xrow + g{{K}} + 2u, g{{K}} + 2u);
        let x{{K}}_3 = xin(xrow + g{{K}} + 3u, g{{K}} + 3u);
        let x{{K}}_4 = xin(xrow + g{{K}} + 4u, g{{K}} + 4u);
        let x{{K}}_5 = xin(xrow + g{{K}} + 5u, g{{K}} + 5u);
        let x{{K}}_6 = xin(xrow + g{{K}} + 6u, g{{K}} + 6u);
        let x{{K}}_7 = xin(xrow + g{{K}} + 7u, g{{K}} + 7u);
        let s{{K}} = (x{{K}}_0 + x{{K}}_1) + (x{{K}}_2 + x{{K}}_3) + (x{{K}}_4 + x{{K}}_5) + (x{{K}}_6 + x{{K}}_7);
        let xs{{K}} = s{{K}}.x + s{{K}}.y + s{{K}}.z + s{{K}}.w;
#endfor
        for (var slot = sub; slot < SLOTS; slot += SUBS) {
            let row = row_of(wid.x * GPW + slot / 4u, slot % 4u);
            var acc = 0.0;
            if (row < ROWS) {
                let rb = row * (NB * WPB);
#for K in 0..{{BPL}}
                if (b{{K}} < NB) {
                    acc += bdot(load_block(rb + b{{K}} * WPB), x{{K}}_0, x{{K}}_1, x{{K}}_2, x{{K}}_3, x{{K}}_4, x{{K}}_5, x{{K}}_6, x{{K}}_7, xs{{K}});
                }
#endfor
            }
            part[slot * LPR + lane] = acc;
        }
    }
    workgroupBarrier();
    var inv = 1.0;
#if NORM
    var tot = 0.0;
    for (var i = 0u; i < WG; i++) { tot += ssq[i]; }
    inv = inverseSqrt(tot / f32(COLS) + EPS);
#endif
    for (var gl = lid; gl < GPW; gl += WG) {
        let g = wid.x * GPW + gl;
        var v = vec4<f32>(0.0);
        for (var r = 0u; r < 4u; r++) {
            var s = 0.0;
            for (var l = 0u; l < LPR; l++) { s += part[(gl * 4u + r) * LPR + l]; }
            v[r] = s;
        }
        let rows = vec4<u32>(row_of(g, 0u), row_of(g, 1u), row_of(g, 2u), row_of(g, 3u));
        if (rows.x < ROWS) { epilogue(tok, rows, v * inv); }
    }
}
