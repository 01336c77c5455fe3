//! The default model, compiled into the binary: models/tide-k4 (a TIDE model with K = 4
//! memory blocks trained by train/; models/README.md says on what and how).
use super::blob::Blob;
use super::llama::Model;
use super::safetensors::{index_file, model_from_parts};
use super::tensor::TensorSet;
use crate::error::{format_err, Result};

pub const DEFAULT_MODEL: &str = "embedded:tide-k4";

static CONFIG: &str = include_str!("../../models/tide-k4/config.json");
static WEIGHTS: &[u8] = include_bytes!("../../models/tide-k4/model.safetensors");
static TOKENIZER: &[u8] = include_bytes!("../../models/tide-k4/tokenizer.json");

/// The embedded model's files as they are in models/tide-k4 (`tide serve` offers them).
pub fn default_model_files() -> [(&'static str, &'static [u8]); 3] {
    [
        ("config.json", CONFIG.as_bytes()),
        ("model.safetensors", WEIGHTS),
        ("tokenizer.json", TOKENIZER),
    ]
}

/// Load the embedded default model (nothing is read from disk).
pub fn default_model() -> Result<Model> {
    let cfg: serde_json::Value = serde_json::from_str(CONFIG)
        .map_err(|e| format_err(DEFAULT_MODEL, format!("invalid config.json: {e}")))?;
    let mut set = TensorSet::default();
    index_file(DEFAULT_MODEL, &Blob::from_static(WEIGHTS), &mut set)?;
    model_from_parts(
        DEFAULT_MODEL,
        DEFAULT_MODEL,
        &cfg,
        set,
        Some((DEFAULT_MODEL, TOKENIZER)),
        None,
    )
}
