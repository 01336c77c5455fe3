//! Shared test helpers: a GPU context on whatever adapter exists (lavapipe in CI), seeded
//! random data, comparisons with a stated tolerance.
#![allow(dead_code)]
use std::path::PathBuf;

use tide_gpu::decoder::specs::Spec;
use tide_gpu::gpu::harness::{run, Data};
use tide_gpu::gpu::{GpuContext, GpuOptions, TEX_WIDTH};

pub fn gpu() -> GpuContext {
    gpu_with(&GpuOptions::default())
}

pub fn gpu_with(opts: &GpuOptions) -> GpuContext {
    pollster::block_on(GpuContext::new(opts))
        .expect("no GPU adapter: install mesa-vulkan-drivers (lavapipe) to run the GPU tests")
}

/// splitmix64: deterministic data without a dependency.
pub struct Rng(pub u64);
impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// uniform in [-1, 1)
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32() * scale).collect()
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Largest |gpu - cpu| / max(1, |cpu|) (absolute for small values, relative for large ones)
/// and where it occurs; panics with context above `tol`.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f32, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs() / w.abs().max(1.0);
        assert!(!g.is_nan(), "{what}: NaN at {i}");
        if d > worst.0 {
            worst = (d, i);
        }
    }
    assert!(
        worst.0 <= tol,
        "{what}: max |gpu - cpu| / max(1, |cpu|) = {} at {} (gpu {}, cpu {}), tolerance {tol}",
        worst.0,
        worst.1,
        got[worst.1],
        want[worst.1]
    );
    worst.0
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The SmolLM2 GGUF fetched by scripts/fetch-smollm2.sh (CI runs it before the tests).
pub fn smollm2() -> PathBuf {
    let cache = std::env::var("TIDE_CACHE")
        .map(PathBuf::from)
        .unwrap_or(repo().join(".cache"));
    let p = cache.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-smollm2.sh first",
        p.display()
    );
    p
}

pub fn step(pos0: u32, n_tok: u32, n_pen: u32, penalty: f32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(pos0.to_le_bytes());
    v.extend(n_tok.to_le_bytes());
    v.extend(n_pen.to_le_bytes());
    v.extend(penalty.to_le_bytes());
    v
}

/// A JSON array of token ids.
pub fn json_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Dispatch spec `s` once for a step of `n_tok` tokens over `data` (one entry per binding);
/// the final words of each ReadWrite binding.
pub fn run_spec(ctx: &GpuContext, s: &Spec, data: &[Data], n_tok: u32) -> Vec<Vec<u32>> {
    run(
        ctx,
        s.shader,
        s.entry,
        &s.defs,
        &s.bindings,
        data,
        (s.x, s.y_groups(n_tok), 1),
    )
    .unwrap_or_else(|e| panic!("{} failed: {e}", s.shader))
}

/// Rows of `width` floats as the rows of an rgba32uint texture (f32 bits), each padded to the
/// harness's texture width: how the row textures of CPU adapters (x, K/V, memory) look.
pub fn texture_rows(v: &[f32], width: usize) -> Data {
    let mut w = vec![0u32; v.len() / width * TEX_WIDTH * 4];
    for (r, row) in v.chunks(width).enumerate() {
        for (i, x) in row.iter().enumerate() {
            w[r * TEX_WIDTH * 4 + i] = x.to_bits();
        }
    }
    Data::U32(w)
}

/// x [n_tok, cols] as `s` reads it: a buffer, or texture rows (row t = token t).
pub fn x_data(s: &Spec, x: &[f32], cols: usize) -> Data {
    if s.texture_at(2) {
        texture_rows(x, cols)
    } else {
        Data::F32(x.to_vec())
    }
}
