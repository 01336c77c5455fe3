//! wgpu plumbing: device context, shader preprocessing and pipelines, weight upload.
//! Knows tensors and buffers, not the model's schedule (that is decoder/).
mod blocks;
mod context;
pub mod harness;
mod kernel;
pub mod probe;
mod shader;
mod upload;
pub use blocks::{gpu_words, repack};

pub use crate::options::GpuOptions;
pub use context::{adapter_rank, adapters_summary, GpuContext};
pub use kernel::{bind_named, label, layout_key, slot, Binding, Kernel, Slot};
pub use shader::{preprocess, Defines};
pub use upload::{
    matrix_texture, row_texture, weight_piece_bytes, weight_texture, GpuTensor, Storage, TEX_WIDTH,
};
