//! tide-gpu: a portable GPU runtime (wgpu + WGSL) for TIDE and LLaMA-family language models.
//!
//! Layout: `model` reads files, `cpu` is the reference forward, `gpu` holds wgpu plumbing,
//! `decoder` schedules the kernels of one step, `engine` puts both backends behind one face,
//! `generate` runs the text loop, `sample` chooses tokens.
pub mod cpu;
pub mod decoder;
pub mod engine;
pub mod error;
// The blocking text loops of the native front end; the browser's async ones are still to come.
#[cfg(not(target_arch = "wasm32"))]
pub mod eval;
#[cfg(not(target_arch = "wasm32"))]
pub mod generate;
pub mod gpu;
pub mod memory;
pub mod model;
pub mod options;
pub mod sample;

pub use engine::{Backend, Engine};
pub use error::{Error, Result};
pub use model::Model;
pub use options::Options;
pub use sample::{Sampler, SamplerConfig};
pub use tokenizers::Tokenizer;
