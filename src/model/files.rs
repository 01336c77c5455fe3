//! A model from files already in memory (the browser fetches them): one GGUF file, or a model
//! directory's files by name (config.json, safetensors weights, tokenizer.json, ...). The
//! native loader reads a directory from disk and comes through here too.
use super::blob::Blob;
use super::gguf::GgufFile;
use super::llama::Model;
use super::safetensors::{index_file, model_from_parts};
use super::tensor::TensorSet;
use crate::error::{format_err, Result};

/// A model directory's separate memory file, read when present.
pub const MEMORY_FILE: &str = "memory.safetensors";

/// Files that make up a model, by name within its folder (or the one file's name).
pub struct ModelFiles {
    /// What errors call the model: its URL or folder.
    pub source: String,
    pub files: Vec<(String, Blob)>,
}

impl ModelFiles {
    fn get(&self, name: &str) -> Option<&Blob> {
        self.files.iter().find(|(n, _)| n == name).map(|(_, b)| b)
    }

    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.source.trim_end_matches('/'))
    }

    /// Build the model: a lone file starting with GGUF's magic is a GGUF; otherwise config.json
    /// and the .safetensors weights (a separate memory.safetensors included) make it.
    pub fn load(&self) -> Result<Model> {
        if let [(name, blob)] = &self.files[..] {
            if blob.bytes().starts_with(b"GGUF") {
                return Model::from_gguf(GgufFile::parse(name, blob.clone())?);
            }
            if name.ends_with(".gguf") {
                return Err(format_err(name, "not a GGUF file (bad magic)"));
            }
        }
        let cfg_name = self.path("config.json");
        let cfg_bytes = self
            .get("config.json")
            .ok_or_else(|| format_err(&self.source, "no config.json and not a GGUF file"))?;
        let cfg: serde_json::Value = serde_json::from_slice(cfg_bytes.bytes())
            .map_err(|e| format_err(&cfg_name, format!("invalid JSON: {e}")))?;
        let mut tensors = TensorSet::default();
        let mut weights: Vec<&(String, Blob)> = self
            .files
            .iter()
            .filter(|(n, _)| n.ends_with(".safetensors"))
            .collect();
        if weights.iter().all(|(n, _)| n == MEMORY_FILE) {
            return Err(format_err(&self.source, "no .safetensors weights"));
        }
        // The backbone first, then a memory file added beside it.
        weights.sort_by_key(|(n, _)| (n == MEMORY_FILE, n.clone()));
        for (n, b) in weights {
            index_file(&self.path(n), b, &mut tensors)?;
        }
        let tj_name = self.path("tokenizer.json");
        let tc = self
            .get("tokenizer_config.json")
            .map(|b| String::from_utf8_lossy(b.bytes()).into_owned());
        model_from_parts(
            &self.source,
            &cfg_name,
            &cfg,
            tensors,
            self.get("tokenizer.json")
                .map(|b| (tj_name.as_str(), b.bytes())),
            tc.as_deref(),
        )
    }
}
