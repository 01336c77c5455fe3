//! The WGSL kernels in a real browser: headless Chromium's WebGPU adapter (SwiftShader here: no
//! shader-f16, no subgroups), each kernel against the CPU reference with the tolerances of
//! tests/kernels.rs. The shapes are smaller (SwiftShader is 3-4x slower than lavapipe).
//! Run by scripts/test-web.sh (wasm-bindgen-test-runner + chromedriver).
#![cfg(target_arch = "wasm32")]
mod common;

use common::data::{as_f32, EmbedCase, MatmulCase, ALL};
use common::{assert_close, Rng};
use tide_gpu::decoder::specs::{self, Matmul, Spec};
use tide_gpu::gpu::harness::{run_async, Data};
use tide_gpu::gpu::{GpuContext, GpuOptions};
use tide_gpu::model::dtype::DType;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

async fn gpu() -> GpuContext {
    GpuContext::new(&GpuOptions::default())
        .await
        .expect("no WebGPU adapter: Chromium needs --enable-unsafe-webgpu (webdriver.json)")
}

/// Dispatch `s` for a step of `n_tok` tokens; the final floats of each ReadWrite binding.
async fn run_spec(ctx: &GpuContext, s: &Spec, data: &[Data], n_tok: u32) -> Vec<Vec<f32>> {
    let out = run_async(
        ctx,
        s.shader,
        s.entry,
        &s.defs,
        &s.bindings,
        data,
        (s.x, s.y_groups(n_tok), 1),
    )
    .await
    .unwrap_or_else(|e| panic!("{} {:?}: {e}", s.shader, s.defs));
    out.iter().map(|v| as_f32(v)).collect()
}

/// Every variant a browser decoder could pick for `m`: the GPU decode matvec, the CPU-adapter
/// matvec_rows in both forms (one token), or the prefill matmul (a batch); weights in a buffer
/// and in a texture.
fn variants(m: &Matmul, n_tok: u32) -> Vec<Spec> {
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
                        "residual {} {:?} {dtype:?} {rows}x{cols} T={n_tok}",
                        s.shader, s.defs
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

/// Embedding rows straight from quantised blocks, ids outside the chunk left alone.
#[wasm_bindgen_test]
async fn embed_rows() {
    let ctx = gpu().await;
    let mut rng = Rng(6);
    for dtype in ALL {
        let c = EmbedCase::new(&mut rng, dtype);
        let spec = specs::embed(dtype, c.cols, c.row0, c.rows);
        for s in [spec.clone(), spec.weights_in_texture()] {
            let out = run_spec(&ctx, &s, &c.data(), c.ids.len() as u32).await;
            c.check(&out[0]);
        }
    }
}
