//! The fast CPU backend (issue 34), beside the reference in cpu/ (which stays f32 and simple,
//! the oracle these kernels are checked against). Weights are read in their stored block
//! formats, never copied to f32; activations are quantised per 32-value block to 8 bits as
//! llama.cpp does (`q8.rs`), so a block's dot product is an integer sum times two scales
//! (`dot.rs`: a portable path, and AVX2 where the CPU has it, chosen at run time).
//!
//! So far: the dot products of Q4_0, Q4_1 and Q8_0 rows and the matrix-vector product over
//! them (`matvec.rs`). Not yet: the other types, the forward pass, wasm's simd128, the choice
//! of backend.
pub mod dot;
pub mod matvec;
pub mod q8;
