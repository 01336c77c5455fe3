//! Opening model files from disk: a .gguf file, or a Hugging Face directory.
use std::path::{Path, PathBuf};

use super::blob::Blob;
use super::gguf::GgufFile;
use super::llama::Model;
use super::safetensors::{index_file, model_from_parts};
use super::tensor::TensorSet;
use crate::error::{format_err, Error, Result};

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A model directory's separate memory file, read when present.
pub const MEMORY_FILE: &str = "memory.safetensors";

/// Attach (or replace) the TIDE memory of `model` from a separate memory file: a .safetensors
/// file with tide.* tensors and metadata (docs/format.md).
pub fn attach_memory(model: &mut Model, path: &Path) -> Result<()> {
    let name = path.display().to_string();
    let mut set = TensorSet::default();
    index_file(&name, &Blob::map(path)?, &mut set)?;
    let mem = super::tide::TideMemory::from_set(&name, &set, &model.config)?;
    if mem.is_none() {
        return Err(format_err(
            &name,
            "holds no TIDE memory (tide.k metadata absent or 0)",
        ));
    }
    model.memory = mem;
    if let Some(c) = super::safetensors::token_counts(&name, &set, model.config.vocab)? {
        model.token_counts = Some(c);
    }
    Ok(())
}

/// Load a model: a `.gguf` file, a `.safetensors` file with config.json beside it, or a directory
/// holding config.json and safetensors weights; `synthetic:NAME` gives random weights in a
/// known model's shapes (benchmarks).
pub fn load(path: &Path) -> Result<Model> {
    if let Some(name) = path.to_str().and_then(|p| p.strip_prefix("synthetic:")) {
        return super::synthetic::synthetic(name);
    }
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if meta.is_dir() {
        return load_hf_dir(path, None);
    }
    let name = path.display().to_string();
    let blob = Blob::map(path)?;
    let head = &blob.bytes()[..blob.bytes().len().min(4)];
    if head == b"GGUF" {
        return Model::from_gguf(GgufFile::parse(&name, blob)?);
    }
    if path.extension().is_some_and(|e| e == "safetensors") {
        let dir = path.parent().unwrap_or(Path::new("."));
        return load_hf_dir(dir, Some(path.to_path_buf()));
    }
    if path.extension().is_some_and(|e| e == "gguf") || blob.bytes().len() < 8 {
        return Err(format_err(&name, "not a GGUF file (bad magic)"));
    }
    Err(format_err(
        &name,
        "unrecognised model file (expected .gguf, .safetensors or a model directory)",
    ))
}

fn load_hf_dir(dir: &Path, file: Option<PathBuf>) -> Result<Model> {
    let cfg_path = dir.join("config.json");
    let cfg_text = std::fs::read_to_string(&cfg_path).map_err(io_err(&cfg_path))?;
    let cfg_name = cfg_path.display().to_string();
    let cfg: serde_json::Value = serde_json::from_str(&cfg_text)
        .map_err(|e| format_err(&cfg_name, format!("invalid JSON: {e}")))?;
    let files: Vec<PathBuf> = match file {
        Some(f) => vec![f],
        None => {
            let single = dir.join("model.safetensors");
            let index = dir.join("model.safetensors.index.json");
            if single.exists() {
                vec![single]
            } else if index.exists() {
                let text = std::fs::read_to_string(&index).map_err(io_err(&index))?;
                let j: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                    format_err(&index.display().to_string(), format!("invalid JSON: {e}"))
                })?;
                let mut names: Vec<String> = j
                    .get("weight_map")
                    .and_then(|m| m.as_object())
                    .ok_or_else(|| format_err(&index.display().to_string(), "missing weight_map"))?
                    .values()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect();
                names.sort();
                names.dedup();
                names.iter().map(|n| dir.join(n)).collect()
            } else {
                return Err(format_err(
                    &dir.display().to_string(),
                    "no model.safetensors or model.safetensors.index.json",
                ));
            }
        }
    };
    let mut tensors = TensorSet::default();
    for f in &files {
        index_file(&f.display().to_string(), &Blob::map(f)?, &mut tensors)?;
    }
    // A separate memory file beside the backbone (memory added to an existing model).
    let mem = dir.join(MEMORY_FILE);
    if mem.exists() && !files.contains(&mem) {
        index_file(&mem.display().to_string(), &Blob::map(&mem)?, &mut tensors)?;
    }
    let tj = dir.join("tokenizer.json");
    let tok_bytes = if tj.exists() {
        Some(std::fs::read(&tj).map_err(io_err(&tj))?)
    } else {
        None
    };
    let tj_name = tj.display().to_string();
    let tc = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok();
    model_from_parts(
        &dir.display().to_string(),
        &cfg_name,
        &cfg,
        tensors,
        tok_bytes.as_deref().map(|b| (tj_name.as_str(), b)),
        tc.as_deref(),
    )
}
