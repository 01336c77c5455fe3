//! The WGSL kernels in a real browser: headless Chromium's WebGPU adapter (SwiftShader here: no
//! shader-f16, no subgroups), each kernel against the CPU reference with the tolerances of
//! tests/kernels.rs. The shapes are smaller (SwiftShader is 3-4x slower than lavapipe) and the
//! variants fewer (each pipeline takes ~2 s to compile there).
//! Run by scripts/test-web.sh (wasm-bindgen-test-runner + chromedriver).
#![cfg(target_arch = "wasm32")]
mod common;

use common::data::{
    as_f32, AttentionCase, EmbedCase, EngramCase, LimeCase, MatmulCase, MemoryRowsCase, QkvCase,
    RouterCase, SampleCase, ALL,
};
use common::fused::{ResidualMemoryCase, StoreCase, SwigluRouterCase};
use common::{assert_close, Rng};
use tide_gpu::decoder::specs::{self, Matmul, Spec};
use tide_gpu::gpu::harness::{run_async, Data};
use tide_gpu::gpu::{GpuContext, GpuOptions};
use tide_gpu::model::dtype::DType;
use tide_gpu::model::RopeLayout;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

async fn gpu() -> GpuContext {
    GpuContext::new(&GpuOptions::default())
        .await
        .expect("no WebGPU adapter: Chromium needs --enable-unsafe-webgpu (webdriver.json)")
}

/// Dispatch `s` for a step of `n_tok` tokens; the final words of each ReadWrite binding.
async fn run_words(ctx: &GpuContext, s: &Spec, data: &[Data], n_tok: u32) -> Vec<Vec<u32>> {
    run_async(
        ctx,
        s.shader,
        s.entry,
        &s.defs,
        &s.bindings,
        data,
        (s.x, s.y_groups(n_tok), 1),
    )
    .await
    .unwrap_or_else(|e| panic!("{} {:?}: {e}", s.shader, s.defs))
}

/// `run_words`, as floats.
async fn run_spec(ctx: &GpuContext, s: &Spec, data: &[Data], n_tok: u32) -> Vec<Vec<f32>> {
    let out = run_words(ctx, s, data, n_tok).await;
    out.iter().map(|v| as_f32(v)).collect()
}

/// Every variant a browser decoder could pick for `m`: the GPU decode matvec, the CPU-adapter
/// matvec_rows in both forms (one token), or the prefill matmul (a batch); weights in a buffer
/// and in a texture.
fn variants(m: &Matmul, n_tok: u32) -> Vec<Spec> {
    // K-quants (CI time: each variant compiles for ~2 s): the GPU family with weights in
    // buffers, and the CPU-adapter forms (SwiftShader's) with weights in textures; the native
    // tests run every form.
    if m.dtype.block_elems() > 32 {
        return if n_tok == 1 {
            vec![
                m.decode_tuned(false),
                m.decode_rows().block_loop(false).weights_in_texture(),
                m.decode_rows().block_loop(true).weights_in_texture(),
            ]
        } else {
            vec![m.prefill(), m.prefill().x_in_texture().weights_in_texture()]
        };
    }
    // Q4_1 (the default model's type) runs every form with weights in buffers and in
    // textures. The other types run each kernel family once in each storage: a type's block
    // decoder and the word loads beneath it are the same WGSL in every form (the native
    // tests run every form for every type).
    if m.dtype != DType::Q4_1 {
        return if n_tok == 1 {
            vec![
                m.decode_tuned(false),
                m.decode_rows().block_loop(true).weights_in_texture(),
            ]
        } else {
            vec![m.prefill(), m.prefill().x_in_texture().weights_in_texture()]
        };
    }
    let base = if n_tok == 1 {
        vec![
            m.decode_tuned(false),
            m.decode_rows().block_loop(false),
            m.decode_rows().block_loop(true),
        ]
    } else {
        vec![m.prefill(), m.prefill().x_in_texture()]
    };
    base.into_iter()
        .flat_map(|s| [s.clone(), s.weights_in_texture()])
        .collect()
}

#[wasm_bindgen_test]
async fn adapter_is_the_browsers_webgpu() {
    let ctx = gpu().await;
    assert_eq!(ctx.info.backend, wgpu::Backend::BrowserWebGpu);
    web_sys::console::log_1(&format!("adapter: {} f16={}", ctx.info.name, ctx.f16).into());
}

/// Residual epilogue (h += W x): every weight type, one token and a batch.
#[wasm_bindgen_test]
async fn matmul_residual_all_types() {
    let ctx = gpu().await;
    let mut rng = Rng(1);
    for dtype in ALL {
        // Each variant compiles for ~2 s on SwiftShader: one shape, one token and a batch.
        for &(rows, cols, n_tok) in &[(37usize, 96usize, 1u32), (37, 96, 7)] {
            let c = MatmulCase::residual(&mut rng, dtype, rows, cols, n_tok);
            for s in variants(&c.m, n_tok) {
                let out = run_spec(&ctx, &s, &c.data(&s), n_tok).await;
                assert_close(
                    &format!(
                        "residual {} {:?} {dtype:?} {rows}x{} T={n_tok}",
                        s.shader, s.defs, c.m.cols
                    ),
                    &out[0][..c.want.len()],
                    &c.want,
                    2e-4,
                );
            }
        }
    }
}

/// RMSNorm prologue + gate/up + SwiGLU epilogue.
#[wasm_bindgen_test]
async fn matmul_swiglu() {
    let ctx = gpu().await;
    let mut rng = Rng(3);
    for dtype in [DType::Q4_1, DType::F16] {
        for n_tok in [1u32, 6] {
            let c = MatmulCase::swiglu(&mut rng, dtype, 45, 128, n_tok);
            for s in variants(&c.m, n_tok) {
                let out = run_spec(&ctx, &s, &c.data(&s), n_tok).await;
                assert_close(
                    &format!("swiglu {} {:?} {dtype:?} T={n_tok}", s.shader, s.defs),
                    &out[0],
                    &c.want,
                    2e-4,
                );
            }
        }
    }
}

/// Several tokens in one decode step (matvec_rows' `tokens` entry), Q4_1: the residual with
/// weights in a buffer and RMSNorm + SwiGLU with weights in a texture, 4 tokens each.
#[wasm_bindgen_test]
async fn matvec_rows_several_tokens() {
    let ctx = gpu().await;
    let mut rng = Rng(16);
    let c = MatmulCase::residual(&mut rng, DType::Q4_1, 37, 96, 4);
    let s = c.m.decode_rows_tokens(4);
    let out = run_spec(&ctx, &s, &c.data(&s), 4).await;
    assert_close("residual, 4 tokens", &out[0][..c.want.len()], &c.want, 2e-4);
    let c = MatmulCase::swiglu(&mut rng, DType::Q4_1, 45, 128, 4);
    let s = c.m.decode_rows_tokens(4).weights_in_texture();
    let out = run_spec(&ctx, &s, &c.data(&s), 4).await;
    assert_close("swiglu, 4 tokens", &out[0], &c.want, 2e-4);
}

/// Embedding rows straight from quantised blocks, ids outside the chunk left alone: every
/// type, in buffers and in textures by turns (Q4_1 in both).
#[wasm_bindgen_test]
async fn embed_rows() {
    let ctx = gpu().await;
    let mut rng = Rng(6);
    for (i, dtype) in ALL.into_iter().enumerate() {
        let c = EmbedCase::new(&mut rng, dtype);
        let spec = specs::embed(dtype, c.cols, c.row0, c.rows);
        let forms = match (dtype, i % 2) {
            (DType::Q4_1, _) => vec![spec.clone(), spec.weights_in_texture()],
            (_, 0) => vec![spec],
            _ => vec![spec.weights_in_texture()],
        };
        for s in forms {
            let out = run_spec(&ctx, &s, &c.data(), c.ids.len() as u32).await;
            c.check(&out[0]);
        }
    }
}

/// QKV epilogue with fused RMSNorm, RoPE in both pair layouts, one token (pos0 9) and a batch
/// of 5 (pos0 3). The epilogue is one piece of WGSL that every matmul kernel includes, so each
/// layout goes through half the kernels: adjacent pairs through the GPU matvec and the prefill
/// matmul (buffers), rotate-half through matvec_rows and the prefill matmul with x and weights
/// in textures, the cache in storage textures (CPU adapters).
#[wasm_bindgen_test]
async fn matmul_qkv_rope_both_layouts() {
    let ctx = gpu().await;
    let mut rng = Rng(4);
    for layout in [RopeLayout::Adjacent, RopeLayout::RotateHalf] {
        let gpu_form = layout == RopeLayout::Adjacent;
        for (n_tok, pos0) in [(1u32, 9u32), (5, 3)] {
            // The CPU adapters' forms write the cache into storage textures, as they do in
            // the decoder.
            let c = QkvCase::new(&mut rng, layout, n_tok, pos0, !gpu_form);
            let m = &c.m;
            let s = match (n_tok, gpu_form) {
                (1, true) => m.decode_tuned(false),
                (1, false) => m.decode_rows().weights_in_texture(),
                (_, true) => m.prefill(),
                (_, false) => m.prefill().x_in_texture().weights_in_texture(),
            };
            let out = run_spec(&ctx, &s, &c.data(&s), n_tok).await;
            c.check(&s, &out);
        }
    }
}

/// Qwen2's q/k/v biases in the QKV epilogue and Qwen3's raw QKV + head_norm (per-head q/k
/// RMSNorm, then RoPE): a batch of 5 with K/V in buffers (adjacent pairs) and one token with
/// K/V in textures (rotate-half, slot order), against the CPU reference.
#[wasm_bindgen_test]
async fn qkv_bias_and_head_norm() {
    let ctx = gpu().await;
    let mut rng = Rng(12);
    for (layout, n_tok, pos0, kv_tex) in [
        (RopeLayout::Adjacent, 5u32, 3u32, false),
        (RopeLayout::RotateHalf, 1, 9, true),
    ] {
        let c = QkvCase::with(&mut rng, layout, n_tok, pos0, kv_tex, true, false);
        let s = match kv_tex {
            false => c.m.prefill(),
            true => c.m.decode_rows().weights_in_texture(),
        };
        c.check(&s, &run_spec(&ctx, &s, &c.data(&s), n_tok).await);
        let c = QkvCase::with(&mut rng, layout, n_tok, pos0, kv_tex, true, true);
        let s = if n_tok == 1 {
            c.m.decode_tuned(false)
        } else {
            c.m.prefill()
        };
        let raw = run_spec(&ctx, &s, &c.data(&s), n_tok).await.remove(0);
        let hn = c.head_norm_spec();
        c.check(
            &hn,
            &run_spec(&ctx, &hn, &c.head_norm_data(&raw), n_tok).await,
        );
    }
}

/// Causal GQA attention (6 query heads over 2 KV heads of 16, and of 64 as SmolLM2's): one
/// token at position 70 and a batch of 70 from position 3 (two tiles of 64, the second partly
/// empty), K/V in buffers (GPU kernels) and in textures (CPU-adapter kernels).
#[wasm_bindgen_test]
async fn attention_gqa_causal() {
    let ctx = gpu().await;
    let mut rng = Rng(5);
    for hd in [16usize, 64] {
        for (n_tok, pos0) in [(1u32, 70u32), (70, 3)] {
            let c = AttentionCase::new(&mut rng, hd, n_tok, pos0);
            for s in c.specs() {
                let out = run_spec(&ctx, &s, &c.data(&s), n_tok).await;
                c.check(&s, &out);
            }
        }
    }
}

/// LIMe's mix of earlier layers' raw k and v heads (lime.wgsl), Engram's gate (4-bit rows,
/// k | v, v gated) and convolution (engram.wgsl), and attention over tokens of
/// several sequences at their own positions and slots (the server's shared steps).
#[wasm_bindgen_test]
async fn lime_mix_and_attention_in_slots() {
    let ctx = gpu().await;
    let c = LimeCase::new(&mut Rng(17));
    let out = run_spec(&ctx, &c.spec(), &c.data(), c.n_tok).await;
    c.check(&out);
    let c = EngramCase::new(&mut Rng(19));
    for s in c.specs() {
        let out = run_spec(&ctx, &s, &c.data(&s), c.toks.len() as u32).await;
        c.check(&s, &out);
    }
    let toks = [(2u32, 0u32), (0, 79), (3, 5)];
    let c = AttentionCase::seqs(&mut Rng(15), 16, 5, &toks);
    for s in c.seqs_specs() {
        let out = run_spec(&ctx, &s, &c.data(&s), toks.len() as u32).await;
        c.check(&s, &out);
    }
}

/// TIDE router: softmax over K blocks and NULL of W_r RMSNorm(h), per token of a batch.
#[wasm_bindgen_test]
async fn router_softmax_per_token() {
    let ctx = gpu().await;
    let mut rng = Rng(14);
    let c = RouterCase::new(&mut rng, 96, 6, 3);
    let out = run_spec(&ctx, &c.spec(), &c.data(), c.n_tok).await;
    c.check(&out[0]);
}

/// TIDE's fused FFN-down epilogue (h += W x + sum_k alpha_k M_k[row]): the GPU decode matvec
/// and the batch matmul (x in a buffer and in a texture), and the CPU-adapter form that takes
/// the router's softmax itself from memory rows in a texture (weights in a texture, as
/// SwiftShader's decoder runs it; the layer switched on and off).
#[wasm_bindgen_test]
async fn matmul_residual_memory() {
    let ctx = gpu().await;
    let mut rng = Rng(11);
    for n_tok in [1u32, 3] {
        let c = ResidualMemoryCase::new(&mut rng, n_tok);
        let m = &c.m;
        let specs = if n_tok == 1 {
            vec![m.decode()]
        } else {
            vec![m.prefill(), m.prefill().x_in_texture().weights_in_texture()]
        };
        for s in specs {
            let out = run_spec(&ctx, &s, &c.data(&s), n_tok).await;
            c.check(&s, &out[0]);
        }
        if n_tok > 1 {
            continue;
        }
        for (lp, switch) in [(false, 1.0f32), (false, 0.0), (true, 1.0)] {
            let s = c.texture_spec(lp).weights_in_texture();
            let out = run_spec(&ctx, &s, &c.texture_data(switch), 1).await;
            c.check_texture(&format!("loop {lp}"), switch, &out);
        }
    }
}

/// The router logits riding in the SwiGLU matvec of CPU adapters (K = 4: a row per lane;
/// K = 40: rows wrapping around the lanes), weights in a texture.
#[wasm_bindgen_test]
async fn matvec_swiglu_with_router() {
    let ctx = gpu().await;
    let mut rng = Rng(13);
    for (dtype, k, loops) in [
        (DType::Q4_1, 4usize, &[false, true][..]),
        (DType::Q8_0, 40, &[false]),
    ] {
        let c = SwigluRouterCase::new(&mut rng, dtype, k);
        for &lp in loops {
            let s = c.spec(lp).weights_in_texture();
            let out = run_spec(&ctx, &s, &c.data(), 1).await;
            c.check(&format!("loop {lp}"), &out);
        }
    }
}

/// The LM head's store with fused RMSNorm, last token only, into a chunk at ROW0: the batch
/// matmul and the one-token matvec_rows (weights in a texture), three weight types.
#[wasm_bindgen_test]
async fn matmul_store_norm_last_token() {
    let ctx = gpu().await;
    let mut rng = Rng(2);
    for dtype in [DType::Q4_1, DType::Q8_0, DType::Q6_K] {
        let c = StoreCase::new(&mut rng, dtype);
        let [(batch, n), (one, _)] = c.specs();
        for (s, n_tok) in [(batch, n), (one.weights_in_texture(), 1)] {
            let out = run_spec(&ctx, &s, &c.data(n_tok), n_tok).await;
            c.check(&s, &out[0]);
        }
    }
}

/// TIDE memory rows, both kernels: Q4_1 and Q8_0 tables normalised here, f16 tables stored
/// normalised; each also as SVD tables (A_k 64 wide, rebuilt through B_k).
#[wasm_bindgen_test]
async fn memory_rows_both_kernels() {
    let ctx = gpu().await;
    let mut rng = Rng(15);
    for (dtype, normalized) in [
        (DType::Q4_1, false),
        (DType::Q8_0, false),
        (DType::F16, true),
    ] {
        let c = MemoryRowsCase::new(&mut rng, dtype, normalized);
        // f16 bases with the float rows, f32 with the quantised ones.
        let svd = MemoryRowsCase::svd(&mut rng, dtype, normalized, 64, dtype == DType::F16);
        for (c, s) in [&c, &svd]
            .into_iter()
            .flat_map(|c| c.specs().into_iter().map(move |s| (c, s)))
        {
            let out = run_spec(&ctx, &s, &c.data(), c.n_tok).await;
            c.check(&s, &out[0]);
        }
    }
}

/// Top-k (greedy k = 1, k = 40 and 64) equals a CPU sort, ties and NaN included; the repetition
/// penalty equals the CPU's.
#[wasm_bindgen_test]
async fn top_k_and_penalty() {
    let ctx = gpu().await;
    let mut rng = Rng(7);
    let c = SampleCase::new(&mut rng);
    for k in [1usize, 40, 64] {
        let out = run_words(&ctx, &c.top_k_spec(k), &c.top_k_data(k), 1).await;
        c.check_top_k(k, &out[3]);
    }
    let out = run_spec(&ctx, &c.penalty_spec(), &c.penalty_data(), 1).await;
    c.check_penalty(&out[0]);
}
