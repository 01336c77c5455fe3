//! The row store: where a TIDE memory row comes from and how it is laid out for the kernels.
//! Today the tables are memory-mapped (or embedded) and a step's rows are copied out of them
//! (rows.rs); the tables themselves, their metadata and checks are model/tide.rs's.
//! docs/architecture.md follows one row from disk to the kernel.
#[cfg(not(target_arch = "wasm32"))]
pub mod compress;
#[cfg(not(target_arch = "wasm32"))]
pub mod http;
mod rows;
pub mod store;

pub use crate::model::tide::{TideMemory, MAX_K};
pub use rows::{block_rows, gather_raw_rows};
