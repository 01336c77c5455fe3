// Token embedding lookup straight from the quantised table: one invocation per 32-element block
// of one token's row. Rows outside this chunk [ROW0, ROW0 + ROWS) are left to another dispatch.
#include "common"

@group(0) @binding(0) var<uniform> step: Step;
#include "weights"
@group(0) @binding(2) var<storage, read> IDS: array<u32>;
@group(0) @binding(3) var<storage, read_write> H: array<vec4<f32>>;   // [n_tok, COLS]

#include "{{QUANT}}"

const COLS: u32 = {{COLS}}u;
const NB: u32 = COLS / 32u;
const ROW0: u32 = {{ROW0}}u;
const ROWS: u32 = {{ROWS}}u;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = gid.x;
    let t = gid.y;
    if (b >= NB || t >= step.n_tok) { return; }
    let id = IDS[t];
    if (id < ROW0 || id >= ROW0 + ROWS) { return; }
    let k = load_block((id - ROW0) * NB * WPB + b * WPB);
    let o = (t * COLS + b * 32u) / 4u;
    let m = vec4<f32>(k.m);
    H[o] = k.d * k.q0 + m; H[o + 1u] = k.d * k.q1 + m; H[o + 2u] = k.d * k.q2 + m; H[o + 3u] = k.d * k.q3 + m;
    H[o + 4u] = k.d * k.q4 + m; H[o + 5u] = k.d * k.q5 + m; H[o + 6u] = k.d * k.q6 + m; H[o + 7u] = k.d * k.q7 + m;
}
