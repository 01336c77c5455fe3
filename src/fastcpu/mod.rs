//! The fast CPU backend (issue 34), beside the reference in cpu/ (which stays f32 and simple,
//! the oracle these kernels are checked against). Weights are read in their stored block
//! formats, never copied to f32; activations are quantised per 32-value block to 8 bits as
//! llama.cpp does (`q8.rs`), so a block's dot product is an integer sum times two scales
//! (`dot.rs`: every stored type on a portable path, AVX2 where the CPU has it (chosen at run
//! time), simd128 in the browser build). `matvec.rs` multiplies weights by a batch of vectors
//! (each read once, rows split among rayon's threads: natively a fixed pool, in the browser
//! wasm-bindgen-rayon's workers when the page is cross-origin isolated), `attention.rs` attends
//! over the f32 K/V cache, and `forward.rs` runs the whole model a batch of tokens at a time on
//! the reference's session. `--backend cpu` runs it; `auto` takes it where the only adapter is
//! a software one (engine.rs).
pub mod attention;
pub mod dot;
pub mod forward;
pub mod matvec;
pub mod q8;
pub use forward::{fallbacks, FastCpu};
