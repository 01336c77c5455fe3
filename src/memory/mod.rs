//! The row store: where a TIDE memory row comes from and how it is laid out for the kernels.
//! store.rs: the sources (mapped or in-memory tables; a remote file read with HTTP Range:
//! http.rs natively, fetch.rs in the browser, remote.rs what they share), the LRU row cache
//! and its counters; stores.rs: the stores of one model's memories, built from the model's
//! table descriptions; rows.rs: a token's rows for the CPU reference
//! and the GPU upload; compress.rs: `tide compress`. The tables' metadata and checks are
//! model/tide.rs's. docs/architecture.md follows one row from disk to the kernel.
#[cfg(not(target_arch = "wasm32"))]
pub mod compress;
#[cfg(target_arch = "wasm32")]
pub mod fetch;
#[cfg(not(target_arch = "wasm32"))]
pub mod http;
pub mod remote;
mod rows;
pub mod store;
mod stores;

pub use crate::model::tide::{TideMemory, MAX_K};
pub use rows::{block_rows, rebuild};
pub use stores::{tide_local, MemoryRows};
