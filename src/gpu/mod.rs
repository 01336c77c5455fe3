//! wgpu plumbing: device context, shader preprocessing and pipelines, weight upload.
//! Knows tensors and buffers, not the model's schedule (that is decoder/).
mod context;
pub mod harness;
mod kernel;
pub mod probe;
mod shader;
mod upload;
pub use upload::repack;

pub use crate::options::GpuOptions;
pub use context::{adapter_rank, adapters_summary, GpuContext};
pub use kernel::{bind_named, label, layout_key, slot, Binding, Kernel, Slot};
pub use shader::{preprocess, Defines};
pub use upload::{
    gpu_words, matrix_texture, row_texture, weight_texture, GpuTensor, Storage, TEX_WIDTH,
};
