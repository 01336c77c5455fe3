//! wgpu plumbing: device context, shader preprocessing and pipelines, weight upload.
//! Knows tensors and buffers, not the model's schedule (that is decoder/).
mod context;
pub mod harness;
pub mod probe;
mod shader;
mod upload;
pub use upload::repack;

pub use context::{adapters_summary, GpuContext, GpuOptions};
pub use shader::{Binding, Defines, Kernel};
pub use upload::{
    gpu_words, matrix_texture, row_texture, weight_texture, GpuTensor, Storage, TEX_WIDTH,
};
