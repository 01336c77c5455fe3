//! Tensors as the loaders hand them on: where a tensor's bytes lie inside a model file and what
//! they hold (TensorInfo), a typed view over them (Weight), raw views of other tensors, and the
//! set of a file's tensors with its metadata (TensorSet).
use std::borrow::Cow;
use std::collections::HashMap;

use super::blob::Blob;
use super::dtype::DType;

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    /// Outermost first; the last dimension is the contiguous row.
    pub shape: Vec<usize>,
    /// Byte range inside the file's blob.
    pub start: usize,
    pub end: usize,
}

impl TensorInfo {
    pub fn row_len(&self) -> usize {
        *self.shape.last().unwrap_or(&0)
    }
    pub fn rows(&self) -> usize {
        self.shape[..self.shape.len().saturating_sub(1)]
            .iter()
            .product()
    }
}

/// A tensor view: metadata plus the blob that holds its bytes.
#[derive(Debug, Clone)]
pub struct Weight {
    pub info: TensorInfo,
    pub blob: Blob,
}

impl Weight {
    /// The tensor's stored bytes: borrowed from a file in memory, or read now from a
    /// read-through file (only this tensor's range).
    pub fn bytes(&self) -> Cow<'_, [u8]> {
        self.blob.read(self.info.start..self.info.end)
    }
    /// The stored bytes of rows [r0, r1) alone.
    pub fn row_bytes(&self, rows: std::ops::Range<usize>) -> Cow<'_, [u8]> {
        let rb = self.dtype().row_bytes(self.cols()).unwrap_or(0);
        let s = self.info.start;
        self.blob.read(s + rows.start * rb..s + rows.end * rb)
    }
    /// The stored size in bytes.
    pub fn byte_len(&self) -> usize {
        self.info.end - self.info.start
    }
    /// Drop this tensor's file pages from memory (see `Blob::release`).
    pub fn release(&self) {
        self.blob.release(self.info.start..self.info.end);
    }
    pub fn dtype(&self) -> DType {
        self.info.dtype
    }
    pub fn rows(&self) -> usize {
        self.info.rows()
    }
    pub fn cols(&self) -> usize {
        self.info.row_len()
    }
    /// Row `r` dequantised to f32.
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        super::dtype::dequantize(self.dtype(), &self.row_bytes(r..r + 1), out);
    }
    /// The whole tensor dequantised to f32, row-major.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut v = vec![0f32; self.rows() * self.cols()];
        super::dtype::dequantize(self.dtype(), &self.bytes(), &mut v);
        v
    }
}

impl Weight {
    /// This tensor's shape as f32, with no bytes behind it: for laying out a dry upload
    /// (`GpuContext::dry`), which reads none.
    pub fn f32_placeholder(&self) -> Weight {
        Weight {
            info: TensorInfo {
                dtype: DType::F32,
                start: 0,
                end: 0,
                ..self.info.clone()
            },
            blob: Blob::from_vec(Vec::new()),
        }
    }

    /// The same tensor re-encoded as f32 (for fusing parts stored in different types).
    pub fn to_f32_weight(&self) -> Weight {
        let data: Vec<u8> = self.to_f32().iter().flat_map(|v| v.to_le_bytes()).collect();
        let n = data.len();
        Weight {
            info: TensorInfo {
                name: self.info.name.clone(),
                dtype: DType::F32,
                shape: self.info.shape.clone(),
                start: 0,
                end: n,
            },
            blob: Blob::from_vec(data),
        }
    }
}

/// A tensor of a type the weight path does not read (bytes of quantised memory rows, counts).
#[derive(Debug, Clone)]
pub struct RawTensor {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub start: usize,
    pub end: usize,
    pub blob: Blob,
}

impl RawTensor {
    pub fn bytes(&self) -> Cow<'_, [u8]> {
        self.blob.read(self.start..self.end)
    }
}

/// The tensors and header metadata of one or more .safetensors files.
#[derive(Debug, Default)]
pub struct TensorSet {
    pub weights: HashMap<String, Weight>,
    pub raw: HashMap<String, RawTensor>,
    pub meta: HashMap<String, String>,
    /// The file each tensor came from (for messages), when read by `index_file`.
    pub origin: HashMap<String, String>,
}
