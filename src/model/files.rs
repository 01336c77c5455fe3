//! A model from files already in memory (the browser fetches them): one GGUF file, or a model
//! directory's files by name (config.json, safetensors weights, tokenizer.json, ...). The
//! native loader reads a directory from disk and comes through here too.
use super::blob::Blob;
use super::card::Card;
use super::gguf::GgufFile;
use super::gguf_split::split_name;
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
    /// and the .safetensors weights (a separate memory.safetensors included) make it, or, when
    /// config.json is a memory model's card, the backbone it names and the memory beside it.
    pub fn load(&self) -> Result<Model> {
        self.load_with(false)
    }

    /// `load`, where a card's memory file may be absent because its rows will be streamed
    /// (attached after loading): the model then comes without memory.
    pub fn load_with(&self, memory_streamed: bool) -> Result<Model> {
        if self.files.len() > 1 && self.files.iter().all(|(n, _)| split_name(n).is_some()) {
            return self.load_split();
        }
        if let [(name, blob)] = &self.files[..] {
            if blob.read(0..blob.len().min(4)).starts_with(b"GGUF") {
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
        if let Some(card) = Card::from_config(&cfg_name, &cfg)? {
            return self.load_card(&card, memory_streamed);
        }
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

    /// A split GGUF model: its parts, in any order, joined by part number.
    fn load_split(&self) -> Result<Model> {
        let mut parts: Vec<_> = self.files.iter().collect();
        parts.sort_by_key(|(n, _)| split_name(n).map(|(_, no, _)| no));
        let files = parts
            .into_iter()
            .map(|(n, b)| GgufFile::parse(&self.path(n), b.clone()))
            .collect::<Result<Vec<_>>>()?;
        Model::from_gguf(GgufFile::join(files)?)
    }

    /// A memory model: the GGUF backbone the card names, with the memory file beside it.
    fn load_card(&self, card: &Card, memory_streamed: bool) -> Result<Model> {
        let b = &card.tide_backbone;
        let how = b
            .fetch
            .as_deref()
            .map(|f| format!(" (fetch it with {f})"))
            .unwrap_or_default();
        let blob = self.get(&b.file).ok_or_else(|| {
            format_err(
                &self.source,
                format!(
                    "the backbone {} that config.json names is missing{how}",
                    b.file
                ),
            )
        })?;
        let len = blob.len() as u64;
        if len != b.bytes {
            return Err(format_err(
                &self.path(&b.file),
                format!(
                    "{len} bytes, but config.json names a backbone of {} bytes: another file{how}",
                    b.bytes
                ),
            ));
        }
        let mut model = Model::from_gguf(GgufFile::parse(&self.path(&b.file), blob.clone())?)?;
        match self.get(&card.memory) {
            Some(mem) => attach_memory_blob(&mut model, &self.path(&card.memory), mem)?,
            None if memory_streamed => {}
            None => {
                return Err(format_err(
                    &self.source,
                    format!("its memory file {} is missing", card.memory),
                ))
            }
        }
        Ok(model)
    }
}

/// Attach (or replace) the TIDE memory of `model` from a memory file's bytes: a .safetensors
/// file with tide.* tensors and metadata (docs/format.md). `name` is for messages.
pub fn attach_memory_blob(model: &mut Model, name: &str, blob: &Blob) -> Result<()> {
    let mut set = TensorSet::default();
    index_file(name, blob, &mut set)?;
    let mem = super::tide::TideMemory::from_set(name, &set, &model.config)?;
    if mem.is_none() {
        return Err(format_err(
            name,
            "holds no TIDE memory (tide.k metadata absent or 0)",
        ));
    }
    let counts = super::safetensors::token_counts(name, &set, model.config.vocab)?;
    model.memory = mem;
    if let Some(c) = counts {
        model.token_counts = Some(c);
    }
    Ok(())
}
