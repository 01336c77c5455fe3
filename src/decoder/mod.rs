//! The per-token / per-prompt schedule on the GPU: which kernels run, in what order, in one
//! submission. Everything is allocated and every pipeline and bind group built at load time;
//! a decode step writes 16 bytes of parameters and 4 bytes of token id, submits once and reads
//! back the sampled token (or the K best logits for stochastic sampling).
mod gpu_decoder;
pub mod specs;
pub use gpu_decoder::{DecoderOptions, GpuDecoder, KernelSet, MAX_TOP_K};
