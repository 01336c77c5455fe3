//! Plain-Rust f32 reference forward: the oracle for every GPU test and the no-GPU fallback.
//! Deliberately simple; it knows nothing of the GPU code it checks.
mod forward;
pub mod ops;
pub(crate) use forward::{engram_add, lime_mix, softmax};
pub use forward::{CpuModel, CpuSession, Forward};
