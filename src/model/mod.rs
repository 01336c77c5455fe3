//! Model files and what they hold: hyper-parameters, weight views, tokenizer. No device code here.
pub mod arch;
pub mod blob;
pub mod card;
pub mod config;
pub mod dtype;
// Not in the wasm module: the page fetches the same files from `tide serve` (and caches them).
#[cfg(not(target_arch = "wasm32"))]
pub mod embedded;
pub mod engram;
pub mod files;
pub mod gguf;
pub mod gguf_split;
pub mod header;
mod llama;
#[cfg(not(target_arch = "wasm32"))]
mod loader;
pub mod safetensors;
pub mod synthetic;
pub mod tensor;
pub mod tide;
pub mod tokenizer;

pub use blob::Blob;
pub use card::Card;
pub use config::{Config, RopeLayout};
pub use dtype::DType;
pub use files::{attach_memory_blob, ModelFiles, MEMORY_FILE};
pub use llama::{Layer, Model};
#[cfg(not(target_arch = "wasm32"))]
pub use loader::{attach_memory, load, load_card_dir, read_card, shard_names};
pub use tensor::{RawTensor, TensorInfo, TensorSet, Weight};
pub use tide::{TideMemory, MAX_K};
