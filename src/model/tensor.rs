//! Where a tensor's bytes lie inside a model file, and what they hold.
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
