// Causal GQA attention over the KV cache. Token t of the batch sits at position tok_pos(t) of
// its sequence, whose position 0 is cache row tok_row0(t) (its slot), and sees its positions
// 0..=tok_pos(t). One sequence (prefill, decode): positions pos0 + t from row kv0. Several
// (continuous batching: `main` and `heads`, a token per sequence): positions from step.tok.
// - main (decode, K/V in buffers): one workgroup per (query head, token); lanes split the
//   positions.
// - heads (decode, K/V in textures: CPU adapters): a lane per query head, a workgroup row per
//   token.
// - prefill (one sequence): lanes are tokens, one workgroup per (query head, tile of WG
//   tokens); every lane walks the positions together (K/V loads are the same address for all
//   lanes) with an online softmax, so no scores scratch and no barriers.
#include "common"

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;      // [n_tok, QD]
#if KVTEX
// rgba32uint textures holding f32 bits, texel (j, p) = floats 4j..4j+3 of position p's row.
// (CPU adapters: a texel fetch is one gather, where a storage load walks the lanes.)
@group(0) @binding(2) var KC: texture_2d<u32>;
@group(0) @binding(3) var VC: texture_2d<u32>;
fn kload(p: u32, j: u32) -> vec4<f32> { return bitcast<vec4<f32>>(textureLoad(KC, vec2<u32>(j, p), 0)); }
fn vload(p: u32, j: u32) -> vec4<f32> { return bitcast<vec4<f32>>(textureLoad(VC, vec2<u32>(j, p), 0)); }
#else
@group(0) @binding(2) var<storage, read> KC: array<vec4<f32>>;     // [ctx, KVD]
@group(0) @binding(3) var<storage, read> VC: array<vec4<f32>>;     // [ctx, KVD]
fn kload(p: u32, j: u32) -> vec4<f32> { return KC[p * (KVD / 4u) + j]; }
fn vload(p: u32, j: u32) -> vec4<f32> { return VC[p * (KVD / 4u) + j]; }
#endif
@group(0) @binding(4) var<storage, read_write> S: array<f32>;      // scratch [n_tok * H, CTX]
@group(0) @binding(5) var<storage, read_write> O: array<vec4<f32>>; // [n_tok, QD]

const WG: u32 = {{WG}}u;
const HD: u32 = {{HD}}u;
const QD: u32 = {{QD}}u;
const KVD: u32 = {{KVD}}u;
const GROUP: u32 = {{GROUP}}u;  // query heads per KV head
const CTX: u32 = {{CTX}}u;

const NH: u32 = QD / HD;

// Decode on CPU adapters (lavapipe, K and V in textures): a lane per query head walks every
// position with an online softmax. No scores scratch, no workgroup memory, no barriers.

@compute @workgroup_size({{WG}})
fn heads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let h = min(gid.x, NH - 1u);  // spare lanes repeat the last head and store nothing
    // One token: the batch's last (a decode step); tokens of several sequences: gid.y.
    let t = select(step.n_tok - 1u, gid.y, step.seqs != 0u);
    let last = tok_pos(t);
    let r0 = tok_row0(t);
    let j0 = (h / GROUP) * (HD / 4u);
    let qb = (t * QD + h * HD) / 4u;
    let scale = inverseSqrt(f32(HD));
#for K in 0..{{HD4}}
    let q{{K}} = Q[qb + {{K}}u] * scale;
    var o{{K}} = vec4<f32>(0.0);
#endfor
    var m = -3.0e38;
    var l = 0.0;
    for (var p = 0u; p <= last; p++) {
        var s = 0.0;
#for K in 0..{{HD4}}
        s += dot(q{{K}}, kload(r0 + p, j0 + {{K}}u));
#endfor
        let mn = max(m, s);
        let c = exp(m - mn);
        let e = exp(s - mn);
        l = l * c + e;
#for K in 0..{{HD4}}
        o{{K}} = o{{K}} * c + e * vload(r0 + p, j0 + {{K}}u);
#endfor
        m = mn;
    }
    if (gid.x < NH) {
        let inv = 1.0 / l;
#for K in 0..{{HD4}}
        O[qb + {{K}}u] = o{{K}} * inv;
#endfor
    }
}

#if KVTEX
#else
var<workgroup> red: array<f32, WG>;

// One barrier per reduction: every invocation reads all partials (cheaper than a tree on CPU
// Vulkan drivers, where each barrier switches every invocation's context).
fn reduce_max(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    var r = red[0];
    for (var i = 1u; i < WG; i++) { r = max(r, red[i]); }
    workgroupBarrier();
    return r;
}

fn reduce_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    var r = 0.0;
    for (var i = 0u; i < WG; i++) { r += red[i]; }
    workgroupBarrier();
    return r;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let last = tok_pos(t);
    let r0 = tok_row0(t);
    let kvh = h / GROUP;
    let srow = (t * (QD / HD) + h) * CTX;
    let scale = inverseSqrt(f32(HD));
    let qb = (t * QD + h * HD) / 4u;

    var mx = -3.0e38;
    for (var p = lid; p <= last; p += WG) {
        let kb = ((r0 + p) * KVD + kvh * HD) / 4u;
        var s = 0.0;
        for (var i = 0u; i < HD / 4u; i++) { s += dot(Q[qb + i], KC[kb + i]); }
        s *= scale;
        S[srow + p] = s;
        mx = max(mx, s);
    }
    mx = reduce_max(mx, lid);
    var sum = 0.0;
    for (var p = lid; p <= last; p += WG) {
        let e = exp(S[srow + p] - mx);
        S[srow + p] = e;
        sum += e;
    }
    sum = reduce_sum(sum, lid);
    storageBarrier();
    workgroupBarrier();
    let inv = 1.0 / sum;
    for (var d = lid; d < HD; d += WG) {
        var acc = 0.0;
        for (var p = 0u; p <= last; p++) {
            let i = (r0 + p) * KVD + kvh * HD + d;
            acc += S[srow + p] * VC[i / 4u][i % 4u];
        }
        let o = t * QD + h * HD + d;
        O[o / 4u][o % 4u] = acc * inv;
    }
}

#endif

// SGKV (CPU adapters with subgroups of 8, K/V in textures, HD a multiple of 32): every lane
// of the tile reads the same K and V rows, so a subgroup's 8 lanes fetch 1/8 of each row
// apiece and subgroupBroadcast hands the chunks round (one fetch in eight). Chunk S * 8 + L
// lives in lane L's kf<S> / vf<S>; q and o are named by the same (S, L).
@compute @workgroup_size({{WG}})
#if SGKV
fn prefill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(subgroup_invocation_id) sl: u32) {
    let h = wid.x;
    let t0 = wid.y * WG + lid;
    // A lane past the batch still fetches for the others of its subgroup, as its last token.
    if (subgroupAll(t0 >= step.n_tok)) { return; }
    let t = min(t0, step.n_tok - 1u);
#else
fn prefill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y * WG + lid;
    if (t >= step.n_tok) { return; }
#endif
    let last = step.pos0 + t;
    // The last position any lane of this tile needs: the same loop bound for every lane.
    let pmax = step.pos0 + min(step.n_tok, (wid.y + 1u) * WG) - 1u;
    let kvh = h / GROUP;
    let scale = inverseSqrt(f32(HD));
    let qb = (t * QD + h * HD) / 4u;
    var m = -3.0e38;
    var l = 0.0;
    let j0 = kvh * (HD / 4u);
#if SGKV
#for S in 0..{{HD8}}
#for L in 0..8
    let q{{S}}_{{L}} = Q[qb + {{S}}u * 8u + {{L}}u] * scale;
    var o{{S}}_{{L}} = vec4<f32>(0.0);
#endfor
#endfor
    for (var p = 0u; p <= pmax; p++) {
#for S in 0..{{HD8}}
        let kf{{S}} = kload(step.kv0 + p, j0 + {{S}}u * 8u + sl);
        let vf{{S}} = vload(step.kv0 + p, j0 + {{S}}u * 8u + sl);
#endfor
        var s = 0.0;
#for S in 0..{{HD8}}
#for L in 0..8
        s += dot(q{{S}}_{{L}}, subgroupBroadcast(kf{{S}}, {{L}}u));
#endfor
#endfor
        // No branch on p <= last: the broadcasts need every lane, so positions a lane
        // must not see get weight 0 instead.
        let see = p <= last;
        let mn = select(m, max(m, s), see);
        let c = exp(m - mn);
        let e = select(0.0, exp(s - mn), see);
        l = l * c + e;
#for S in 0..{{HD8}}
#for L in 0..8
        o{{S}}_{{L}} = o{{S}}_{{L}} * c + e * subgroupBroadcast(vf{{S}}, {{L}}u);
#endfor
#endfor
        m = mn;
    }
    let inv = 1.0 / l;
    let ob = (t * QD + h * HD) / 4u;
    if (t0 < step.n_tok) {
#for S in 0..{{HD8}}
#for L in 0..8
        O[ob + {{S}}u * 8u + {{L}}u] = o{{S}}_{{L}} * inv;
#endfor
#endfor
    }
#else
#for K in 0..{{HD4}}
    let q{{K}} = Q[qb + {{K}}u] * scale;
    var o{{K}} = vec4<f32>(0.0);
#endfor
    for (var p = 0u; p <= pmax; p++) {
        var s = 0.0;
#for K in 0..{{HD4}}
        s += dot(q{{K}}, kload(step.kv0 + p, j0 + {{K}}u));
#endfor
        if (p <= last) {
            let mn = max(m, s);
            let c = exp(m - mn);
            let e = exp(s - mn);
            l = l * c + e;
#for K in 0..{{HD4}}
            o{{K}} = o{{K}} * c + e * vload(step.kv0 + p, j0 + {{K}}u);
#endfor
            m = mn;
        }
    }
    let inv = 1.0 / l;
    let ob = (t * QD + h * HD) / 4u;
#for K in 0..{{HD4}}
    O[ob + {{K}}u] = o{{K}} * inv;
#endfor
#endif
}
