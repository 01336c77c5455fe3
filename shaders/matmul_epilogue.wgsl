// Input loading, row mapping and epilogues shared by matmul.wgsl (prefill) and matvec.wgsl /
// matvec_rows.wgsl (decode); xin and bdot serve the decode kernels (the prefill matmul
// orders its products differently and needs raw x for its RMS).
// An invocation finishing a group gets the 4 rows of the group and their 4 results.

// Word 4i..4i+3 of the matmul input x ([n_tok, COLS] row-major).
fn xraw(i: u32) -> vec4<f32> {
#if XTEX
    return bitcast<vec4<f32>>(textureLoad(X, vec2<u32>(i % (COLS / 4u), i / (COLS / 4u)), 0));
#else
    return X[i];
#endif
}

// x of the matmul input, RMS-normalisation's gamma applied when NORM (1/rms comes later).
fn xin(i: u32, gi: u32) -> vec4<f32> {
#if NORM
    return xraw(i) * G[gi];
#else
    return xraw(i);
#endif
}

// One dequantised block of 32 weights against 32 x values whose sum is xs: d * q.x + m * sum(x).
fn bdot(k: Blk, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>, xs: f32) -> f32 {
    let q = dot(k.q0, x0) + dot(k.q1, x1) + dot(k.q2, x2) + dot(k.q3, x3)
          + dot(k.q4, x4) + dot(k.q5, x5) + dot(k.q6, x6) + dot(k.q7, x7);
    return k.d * q + k.m * xs;
}

// Physical row of W for slot r (0..4) of group g.
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
    // 2 gate rows and the same 2 up rows (up follows gate in W).
    return g * 2u + (r & 1u) + (r >> 1u) * {{FFN}}u;
#else
    return g * 4u + r;
#endif
#endif
}

#if EPI_STORE
// Plain store into Y[ROW0 + row] (logits of one token; ROW0 = first row of this chunk).
fn epilogue(tok: u32, rows: vec4<u32>, v: vec4<f32>) {
    for (var r = 0u; r < 4u; r++) {
        if (rows[r] < ROWS) { Y[{{ROW0}}u + rows[r]] = v[r]; }
    }
}
#endif
#if EPI_STORE_ALL
// Every token's logits: Y[tok, ROW0 + row] of a [n_tok, YSTRIDE] array (perplexity).
fn epilogue(tok: u32, rows: vec4<u32>, v: vec4<f32>) {
    for (var r = 0u; r < 4u; r++) {
        if (rows[r] < ROWS) { Y[tok * {{YSTRIDE}}u + {{ROW0}}u + rows[r]] = v[r]; }
    }
}
#endif
#if EPI_RESIDUAL
#if MEMTEX
// The router weights of the K blocks (constant indices only: registers, not scratch).
var<private> al: array<f32, {{MEMK}}>;

// alpha = softmax over the K blocks and NULL of the layer's router logits, times the layer's
// memory switch. Every lane takes it (the logits are uniform: one broadcast load each);
// lane 0 also writes the weights out for `router_weights`.
fn router_softmax(lane: u32) {
    let lnull = LOGITS[{{MEMK}} / 4][{{MEMK}} % 4];
    var mx = lnull;
#for K in 0..{{MEMK}}
    mx = max(mx, LOGITS[{{K}} / 4][{{K}} % 4]);
#endfor
    let en = exp(lnull - mx);
    var sum = en;
#for K in 0..{{MEMK}}
    al[{{K}}] = exp(LOGITS[{{K}} / 4][{{K}} % 4] - mx);
    sum += al[{{K}}];
#endfor
    let s = LOGITS[({{MEMK}} + 1) / 4][({{MEMK}} + 1) % 4] / sum;
#for K in 0..{{MEMK}}
    al[{{K}}] *= s;
#endfor
    if (lane == 0u) {
#for K in 0..{{MEMK}}
        ALPHA[{{K}}] = al[{{K}}];
#endfor
        ALPHA[{{MEMK}}] = en * s;
    }
}

// The same for rows 4q..4q+3 at once (one texel per block): the texture variant.
fn memory_terms(q: u32) -> vec4<f32> {
    var s = vec4<f32>(0.0);
#for K in 0..{{MEMK}}
    s += al[{{K}}] * bitcast<vec4<f32>>(textureLoad(MEM, vec2<u32>(q, {{K}}u), 0));
#endfor
    return s;
}
#else
#if MEMORY
// TIDE injection beside the FFN: sum_k alpha_k M_k[row] (NULL, slot MEMK, adds nothing).
fn memory_term(tok: u32, row: u32) -> f32 {
    var s = 0.0;
    for (var k = 0u; k < {{MEMK}}u; k++) {
        s += ALPHA[tok * ({{MEMK}}u + 1u) + k] * MEM[(tok * {{MEMK}}u + k) * ROWS + row];
    }
    return s;
}
#endif
#endif
// Y is the residual stream [n_tok, ROWS]: h += W x (+ the memory term after the FFN).
fn epilogue(tok: u32, rows: vec4<u32>, v: vec4<f32>) {
#if MEMTEX
    let mt = memory_terms(rows.x / 4u);
#endif
    for (var r = 0u; r < 4u; r++) {
        if (rows[r] < ROWS) {
#if MEMTEX
            Y[tok * ROWS + rows[r]] += v[r] + mt[r];
#else
#if MEMORY
            Y[tok * ROWS + rows[r]] += v[r] + memory_term(tok, rows[r]);
#else
            Y[tok * ROWS + rows[r]] += v[r];
#endif
#endif
        }
    }
}
#endif
#if EPI_SWIGLU
// Y[tok, j] = silu(gate_j) * up_j for the two j of this group.
fn epilogue(tok: u32, rows: vec4<u32>, v: vec4<f32>) {
    let a = v.xy;
    let o = a / (1.0 + exp(-a)) * v.zw;
    if (rows.x < {{FFN}}u) { Y[tok * {{FFN}}u + rows.x] = o.x; }
    if (rows.y < {{FFN}}u) { Y[tok * {{FFN}}u + rows.y] = o.y; }
}
#endif
#if EPI_QKV
#if QKV_BIAS
fn with_bias(rows: vec4<u32>, v: vec4<f32>) -> vec4<f32> {
    return v + vec4<f32>(QB[rows.x], QB[rows.y], QB[rows.z], QB[rows.w]);
}
#else
fn with_bias(rows: vec4<u32>, v: vec4<f32>) -> vec4<f32> {
    return v;
}
#endif
#if QKV_RAW
// q | k | v rows as they are into Y[tok, ROWS]; head_norm.wgsl normalises, rotates and caches.
fn epilogue(tok: u32, rows: vec4<u32>, v_in: vec4<f32>) {
    let v = with_bias(rows, v_in);
    for (var r = 0u; r < 4u; r++) { Y[tok * ROWS + rows[r]] = v[r]; }
}
#else
// q -> Y[tok, QD]; k, v -> KV cache at the token's position (in its sequence's slot). RoPE
// applied to q and k.
fn epilogue(tok: u32, rows: vec4<u32>, v_in: vec4<f32>) {
    let v = with_bias(rows, v_in);
    let pos = tok_pos(tok);
    let kvrow = tok_row0(tok) + pos;
    var o = v;
    if (rows.x < {{QD}}u + {{KVD}}u) {
#if ROPE_HALF
        // slots (0,2) and (1,3) are pairs i0, i0 + 1
        let i0 = rows.x % {{HD}}u;
        let a = v.xy;
        let b = v.zw;
#else
        // slots (0,1) and (2,3) are pairs i0, i0 + 1
        let i0 = (rows.x % {{HD}}u) / 2u;
        let a = v.xz;
        let b = v.yw;
#endif
        let c0 = ROPE[pos * ({{HD}}u / 2u) + i0];
        let c1 = ROPE[pos * ({{HD}}u / 2u) + i0 + 1u];
        let cs = vec2<f32>(c0.x, c1.x);
        let sn = vec2<f32>(c0.y, c1.y);
        let ra = a * cs - b * sn;
        let rb = a * sn + b * cs;
#if ROPE_HALF
        o = vec4<f32>(ra, rb);
#else
        o = vec4<f32>(ra.x, rb.x, ra.y, rb.y);
#endif
    }
#if KV_TEX
    // A texel takes the group's 4 values at once, so q and k are stored in slot order: a
    // permutation within each head (identity for adjacent pairs) that leaves every q.k as it
    // is. v is unrotated and its 4 rows are consecutive.
    var base = rows.x;
    if (rows.x < {{QD}}u + {{KVD}}u) {
#if ROPE_HALF
        base = (rows.x / {{HD}}u) * {{HD}}u + 2u * (rows.x % {{HD}}u);
#endif
    }
    if (base < {{QD}}u) {
        for (var r = 0u; r < 4u; r++) { Y[tok * {{QD}}u + base + r] = o[r]; }
    } else if (base < {{QD}}u + {{KVD}}u) {
        textureStore(KC, vec2<u32>((base - {{QD}}u) / 4u, kvrow), bitcast<vec4<u32>>(o));
    } else if (base < ROWS) {
        textureStore(VC, vec2<u32>((base - {{QD}}u - {{KVD}}u) / 4u, kvrow), bitcast<vec4<u32>>(o));
    }
#else
    for (var r = 0u; r < 4u; r++) {
        let row = rows[r];
        if (row < {{QD}}u) {
            Y[tok * {{QD}}u + row] = o[r];
        } else if (row < {{QD}}u + {{KVD}}u) {
            KC[kvrow * {{KVD}}u + row - {{QD}}u] = o[r];
        } else if (row < ROWS) {
            VC[kvrow * {{KVD}}u + row - {{QD}}u - {{KVD}}u] = o[r];
        }
    }
#endif
}
#endif
#endif
