//! TIDE memory: K token-indexed tables (stored f32/f16/8-bit/4-bit, raw + gamma or
//! pre-normalised), per-layer routers, and the host-side row work shared by both backends.
//! docs/format.md describes the tensors and metadata.
mod rows;
mod tables;

pub use rows::{block_rows, gather_raw_rows};
pub use tables::{TideMemory, MAX_K};
