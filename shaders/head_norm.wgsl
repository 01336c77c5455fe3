// Per-head RMSNorm of q and k (Qwen3; QK_NORM), then RoPE, after a QKV matmul that stored
// q | k | v as they are (QKV_RAW; for LIMe, lime.wgsl has mixed k and v in between): q to Q, k
// and v into the K/V cache at the token's position (in its slot), each in the order the QKV
// epilogue would have written it. The norm needs a whole head at once, which no 4-row matmul
// group has. One workgroup per (head of q, k or v; token).
#include "common"

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> RAW: array<f32>;        // [n_tok, QD + 2 KVD]
#if QK_NORM
@group(0) @binding(2) var<storage, read> QN: array<f32>;         // [HD]
@group(0) @binding(3) var<storage, read> KN: array<f32>;         // [HD]
#endif
@group(0) @binding(4) var<storage, read_write> Q: array<f32>;    // [n_tok, QD]
#if KV_TEX
@group(0) @binding(5) var KC: texture_storage_2d<rgba32uint, write>;
@group(0) @binding(6) var VC: texture_storage_2d<rgba32uint, write>;
#else
@group(0) @binding(5) var<storage, read_write> KC: array<f32>;   // [ctx, KVD]
@group(0) @binding(6) var<storage, read_write> VC: array<f32>;
#endif
@group(0) @binding(7) var<storage, read> ROPE: array<vec2<f32>>;

const HD: u32 = {{HD}}u;
const NH: u32 = {{NH}}u;
const NKV: u32 = {{NKV}}u;
const QD: u32 = NH * HD;
const KVD: u32 = NKV * HD;
const ROWS: u32 = QD + 2u * KVD;

var<workgroup> part: array<f32, 64>;

// The head dim held by slot s (specs::slot_order): with K/V in textures and rotate-half
// pairs, q and k are stored in the slot order of the QKV epilogue's 4-row groups.
fn dim_of(s: u32) -> u32 {
#if KV_TEX
#if ROPE_HALF
    let j = s / 4u;
    let r = s % 4u;
    return 2u * j + (r & 1u) + (r >> 1u) * (HD / 2u);
#else
    return s;
#endif
#else
    return s;
#endif
}

fn gamma(is_q: bool, l: u32) -> f32 {
#if QK_NORM
    if (is_q) { return QN[l]; }
    return KN[l];
#else
    return 1.0;
#endif
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let head = wid.x;
    let tok = wid.y;
    if (tok >= step.n_tok) { return; }
    let pos = tok_pos(tok);
    let kvrow = tok_row0(tok) + pos;
    let base = tok * ROWS + head * HD;
#if QK_NORM
    var ss = 0.0;
    for (var i = lid; i < HD; i += 64u) {
        let x = RAW[base + i];
        ss += x * x;
    }
    part[lid] = ss;
    workgroupBarrier();
    for (var w = 32u; w > 0u; w >>= 1u) {
        if (lid < w) { part[lid] += part[lid + w]; }
        workgroupBarrier();
    }
    let inv = inverseSqrt(part[0] / f32(HD) + {{EPS}});
#else
    let inv = 1.0;
#endif
    let is_q = head < NH;
    let is_v = head >= NH + NKV;
    for (var t = lid; t < HD / 4u; t += 64u) {
        var o = vec4<f32>(0.0);
        for (var r = 0u; r < 4u; r++) {
            let s = 4u * t + r;
            if (is_v) {
                o[r] = RAW[base + s];
                continue;
            }
            let l = dim_of(s);
#if ROPE_HALF
            let i = l % (HD / 2u);
            let a = i;
            let b = i + HD / 2u;
#else
            let i = l / 2u;
            let a = 2u * i;
            let b = a + 1u;
#endif
            let xa = RAW[base + a] * inv * gamma(is_q, a);
            let xb = RAW[base + b] * inv * gamma(is_q, b);
            let cs = ROPE[pos * (HD / 2u) + i];
            if (l == a) {
                o[r] = xa * cs.x - xb * cs.y;
            } else {
                o[r] = xa * cs.y + xb * cs.x;
            }
        }
        if (is_q) {
            for (var r = 0u; r < 4u; r++) { Q[tok * QD + head * HD + 4u * t + r] = o[r]; }
            continue;
        }
        let kv_head = select(head - NH - NKV, head - NH, !is_v);
#if KV_TEX
        let texel = vec2<u32>(kv_head * (HD / 4u) + t, kvrow);
        if (is_v) {
            textureStore(VC, texel, bitcast<vec4<u32>>(o));
        } else {
            textureStore(KC, texel, bitcast<vec4<u32>>(o));
        }
#else
        for (var r = 0u; r < 4u; r++) {
            let at = kvrow * KVD + kv_head * HD + 4u * t + r;
            if (is_v) { VC[at] = o[r]; } else { KC[at] = o[r]; }
        }
#endif
    }
}
