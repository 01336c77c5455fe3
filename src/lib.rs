//! tide-gpu: a portable GPU runtime (wgpu + WGSL) for TIDE and LLaMA-family language models.
//!
//! Layout: `model` reads files, `cpu` is the reference forward, `gpu` holds wgpu plumbing,
//! `decoder` schedules the kernels of one step, `engine` puts both backends behind one face,
//! `generate` runs the text loop, `sample` chooses tokens.
pub mod chat;
pub mod cpu;
pub mod decoder;
pub mod engine;
pub mod error;
pub mod fastcpu;
// The blocking evaluation loops of the native front end.
#[cfg(not(target_arch = "wasm32"))]
pub mod eval;
pub mod frequency;
pub mod generate;
pub mod gpu;
pub mod inspect;
pub mod memory;
pub mod model;
// The OpenAI-compatible API's request checks (`tide serve`).
pub mod openai;
pub mod options;
pub mod sample;
// The serving core: batching, prefix cache, stop strings, logprobs, response bodies.
pub mod serve;
// What every front end decides the same way: context, row cache, read-through gap.
pub mod session;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use engine::{Backend, Engine};
pub use error::{Error, Result};
pub use model::Model;
pub use options::Options;
pub use sample::{Sampler, SamplerConfig};
pub use tokenizers::Tokenizer;

// README.md's Rust quick start runs as a doctest (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeQuickStart;
