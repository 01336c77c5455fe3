//! Shared test helpers: a GPU context on whatever adapter exists (lavapipe in CI), seeded
//! random data, comparisons with a stated tolerance.
#![allow(dead_code, unused_imports)]
pub mod data;
pub mod fused;
pub use data::{assert_close, step, Rng};

#[cfg(not(target_arch = "wasm32"))]
pub mod golden;
#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub mod st_file;
#[cfg(not(target_arch = "wasm32"))]
pub use native::*;

use tide_gpu::decoder::specs::Spec;
use tide_gpu::gpu::harness::Data;
use tide_gpu::gpu::TEX_WIDTH;

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
