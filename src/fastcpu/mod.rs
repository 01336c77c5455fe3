//! The fast CPU backend (issue 34), beside the reference in cpu/ (which stays f32 and simple,
//! the oracle these kernels are checked against). Weights are read in their stored block
//! formats, never copied to f32; activations are quantised per 32-value block to 8 bits as
//! llama.cpp does (`q8.rs`), so a block's dot product is an integer sum times two scales
//! (`dot.rs`: a portable path, and AVX2 where the CPU has it, chosen at run time).
//! `matvec.rs` multiplies a weight by a batch of vectors (read once, rows split among
//! threads), `attention.rs` attends over the f32 K/V cache, and `forward.rs` runs the whole
//! model a batch of tokens at a time on the reference's session.
//!
//! Not yet: the other types (they fall back per tensor to the reference's kernel, and the
//! front end says so), wasm's simd128.
pub mod attention;
pub mod dot;
pub mod forward;
pub mod matvec;
pub mod q8;
pub use forward::{fallbacks, FastCpu};
