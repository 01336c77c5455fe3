//! Weights on the GPU: kept in their file's quantisation, repacked to 4-byte-aligned blocks
//! (Q8_0's 34-byte and Q4_0's 18-byte blocks are padded to 36 / 20), split by rows into chunks
//! that each fit one storage binding.
use wgpu::util::DeviceExt;

use super::context::GpuContext;
use crate::error::{Error, Result};
use crate::model::{DType, Weight};

/// GPU words per 32 elements, and the shader snippet that decodes them.
pub fn gpu_words(dtype: DType) -> (usize, &'static str) {
    match dtype {
        DType::F32 => (32, "quant_f32"),
        DType::F16 => (16, "quant_f16"),
        DType::BF16 => (16, "quant_bf16"),
        DType::Q8_0 => (9, "quant_q8_0"),
        DType::Q4_0 => (5, "quant_q4_0"),
        DType::Q4_1 => (5, "quant_q4_1"),
    }
}

/// Repack `n` elements' worth of file bytes into GPU words.
pub fn repack(dtype: DType, src: &[u8], out: &mut Vec<u32>) {
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 | DType::Q4_1 => {
            out.extend(src.chunks_exact(4).map(word))
        }
        DType::Q8_0 => {
            for blk in src.chunks_exact(34) {
                out.push(u16::from_le_bytes([blk[0], blk[1]]) as u32);
                out.extend(blk[2..].chunks_exact(4).map(word));
            }
        }
        DType::Q4_0 => {
            for blk in src.chunks_exact(18) {
                out.push(u16::from_le_bytes([blk[0], blk[1]]) as u32);
                out.extend(blk[2..].chunks_exact(4).map(word));
            }
        }
    }
}

pub struct Chunk {
    pub buffer: wgpu::Buffer,
    pub row0: usize,
    pub rows: usize,
}

/// A matrix [rows, cols] on the GPU, possibly in several row chunks.
pub struct GpuTensor {
    pub name: String,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub chunks: Vec<Chunk>,
}

impl GpuTensor {
    /// Upload the concatenation (by rows) of `parts`, which must share dtype and row length.
    pub fn upload(ctx: &GpuContext, name: &str, parts: &[&Weight]) -> Result<GpuTensor> {
        let dtype = parts[0].dtype();
        let cols = parts[0].cols();
        if parts.iter().any(|p| p.dtype() != dtype || p.cols() != cols) {
            return Err(Error::Gpu(format!(
                "{name}: concatenated parts differ in type or width"
            )));
        }
        if cols % 32 != 0 {
            return Err(Error::Gpu(format!(
                "{name}: row length {cols} is not a multiple of 32, which the GPU kernels need"
            )));
        }
        let rows: usize = parts.iter().map(|p| p.rows()).sum();
        let (wpb, _) = gpu_words(dtype);
        let row_words = cols / 32 * wpb;
        let row_bytes = row_words * 4;
        let max_bind = ctx
            .limits
            .max_storage_buffer_binding_size
            .min(ctx.limits.max_buffer_size) as usize;
        let rows_per_chunk = (max_bind / row_bytes).min(rows);
        if rows_per_chunk == 0 {
            return Err(Error::Gpu(format!(
                "{name}: one row ({row_bytes} bytes) exceeds the adapter's storage binding limit of {max_bind} bytes"
            )));
        }
        let file_row = dtype.row_bytes(cols).unwrap();
        let mut chunks = Vec::new();
        let mut row0 = 0;
        let mut words: Vec<u32> = Vec::new();
        while row0 < rows {
            let n = rows_per_chunk.min(rows - row0);
            words.clear();
            words.reserve(n * row_words);
            // Gather rows [row0, row0 + n) across the parts.
            let mut base = 0;
            for p in parts {
                let (a, b) = (row0.max(base), (row0 + n).min(base + p.rows()));
                if a < b {
                    let bytes = &p.bytes()[(a - base) * file_row..(b - base) * file_row];
                    repack(dtype, bytes, &mut words);
                }
                base += p.rows();
            }
            let buffer = ctx
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(name),
                    contents: bytemuck::cast_slice(&words),
                    usage: wgpu::BufferUsages::STORAGE,
                });
            chunks.push(Chunk {
                buffer,
                row0,
                rows: n,
            });
            row0 += n;
        }
        Ok(GpuTensor {
            name: name.to_string(),
            dtype,
            rows,
            cols,
            chunks,
        })
    }

    pub fn bytes(&self) -> usize {
        self.rows * self.cols / 32 * gpu_words(self.dtype).0 * 4
    }
}
