// Bindings shared by the matmul family (matmul.wgsl for batches, matvec.wgsl for one token).
@group(0) @binding(0) var<uniform> step: Step;
#include "weights"
#if XTEX
// A batch's x rows in an rgba32uint texture (f32 bits; texel (c, t) = x[t, 4c..4c+3]) and
// gamma as a uniform: the prefill matmul on CPU adapters, where per-lane storage loads walk
// the lanes one word at a time.
@group(0) @binding(2) var X: texture_2d<u32>;
#if NORM
@group(0) @binding(3) var<uniform> G: array<vec4<f32>, {{COLS}} / 4>;
#endif
#else
#if XUBO
// One token's x (or TOKENS tokens' x, in order), and gamma, as uniforms (matvec_rows on CPU
// adapters).
#if BATCHED
@group(0) @binding(2) var<uniform> X: array<vec4<f32>, {{TOKENS}} * {{COLS}} / 4>;
#else
@group(0) @binding(2) var<uniform> X: array<vec4<f32>, {{COLS}} / 4>;
#endif
#if NORM
@group(0) @binding(3) var<uniform> G: array<vec4<f32>, {{COLS}} / 4>;
#endif
#else
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;
#if NORM
@group(0) @binding(3) var<storage, read> G: array<vec4<f32>>;
#endif
#endif
#endif
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
#if QKV_BIAS
@group(0) @binding(8) var<storage, read> QB: array<f32>;   // [ROWS]: q | k | v biases
#endif
#if EPI_QKV
#if QKV_RAW
#else
#if KV_TEX
// CPU adapters: the cache itself is a pair of textures (texel (j, p) = floats 4j..4j+3 of
// position p's row), which attention reads with one gather per texel; no buffer copy.
@group(0) @binding(5) var KC: texture_storage_2d<rgba32uint, write>;
@group(0) @binding(6) var VC: texture_storage_2d<rgba32uint, write>;
#else
@group(0) @binding(5) var<storage, read_write> KC: array<f32>;
@group(0) @binding(6) var<storage, read_write> VC: array<f32>;
#endif
@group(0) @binding(7) var<storage, read> ROPE: array<vec2<f32>>;
#endif
#endif
#if MEMORY
#if MEMTEX
// One token (CPU adapters): its MEMK memory rows as texture rows (f32 bits, texel (q, k) =
// M_k[4q..4q+3]), and the layer's router logits as a uniform (the router itself is fused into
// the gate/up matvec, matvec_rows.wgsl); slot MEMK + 1 is the layer's memory switch (1 or 0,
// set by the host). The softmax is taken here and written out to ALPHA.
@group(0) @binding(5) var MEM: texture_2d<u32>;
@group(0) @binding(6) var<storage, read_write> ALPHA: array<f32>;   // [MEMK + 1]
@group(0) @binding(7) var<uniform> LOGITS: array<vec4<f32>, ({{MEMK}} + 5) / 4>;
#else
@group(0) @binding(5) var<storage, read> MEM: array<f32>;     // [n_tok, MEMK, ROWS]
@group(0) @binding(6) var<storage, read> ALPHA: array<f32>;   // [n_tok, MEMK + 1]
#endif
#endif
