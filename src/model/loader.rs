//! Opening model files from disk: a .gguf file, or a Hugging Face directory.
use std::path::{Path, PathBuf};

use super::blob::Blob;
use super::card::Card;
use super::files::{attach_memory_blob, ModelFiles, MEMORY_FILE};
use super::gguf::GgufFile;
use super::gguf_split::part_names;
use super::llama::Model;
use crate::error::{format_err, Error, Result};

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Attach (or replace) the TIDE memory of `model` from a separate memory file: a .safetensors
/// file with tide.* tensors and metadata (docs/format.md).
pub fn attach_memory(model: &mut Model, path: &Path) -> Result<()> {
    attach_memory_blob(model, &path.display().to_string(), &Blob::map(path)?)
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
    if let Some(parts) = part_names(&file_name(path)) {
        return load_split(path, &parts);
    }
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

/// A split GGUF model (`NAME-0000i-of-0000N.gguf`, any part's path): every part from the
/// same folder, joined.
fn load_split(path: &Path, parts: &[String]) -> Result<Model> {
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut files = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        let part = dir.join(p);
        if !part.is_file() {
            return Err(format_err(
                &path.display().to_string(),
                format!(
                    "part {} of this split model, {}, is missing: all {} parts must be in one folder",
                    i + 1,
                    part.display(),
                    parts.len()
                ),
            ));
        }
        files.push(GgufFile::parse(
            &part.display().to_string(),
            Blob::map(&part)?,
        )?);
    }
    Model::from_gguf(GgufFile::join(files)?)
}

/// A memory model's card in `dir`'s config.json, if that is what the folder holds.
pub fn read_card(dir: &Path) -> Result<Option<Card>> {
    let path = dir.join("config.json");
    if !dir.is_dir() || !path.exists() {
        return Ok(None);
    }
    let name = path.display().to_string();
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    let cfg: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format_err(&name, format!("invalid JSON: {e}")))?;
    Card::from_config(&name, &cfg)
}

/// Load a memory model's folder (its card, its memory file) with the backbone GGUF at
/// `backbone`, which the front end found or fetched.
pub fn load_card_dir(dir: &Path, card: &Card, backbone: &Path) -> Result<Model> {
    let read = |p: &Path| std::fs::read(p).map_err(io_err(p));
    let mut parts = ModelFiles {
        source: dir.display().to_string(),
        files: vec![(
            "config.json".into(),
            Blob::from_vec(read(&dir.join("config.json"))?),
        )],
    };
    parts
        .files
        .push((card.tide_backbone.file.clone(), Blob::map(backbone)?));
    let mem = dir.join(&card.memory);
    if mem.exists() {
        parts.files.push((card.memory.clone(), Blob::map(&mem)?));
    }
    parts.load()
}

fn load_hf_dir(dir: &Path, file: Option<PathBuf>) -> Result<Model> {
    if let (Some(card), None) = (read_card(dir)?, &file) {
        // The backbone beside the memory; the front end may find or fetch it elsewhere.
        let backbone = dir.join(&card.tide_backbone.file);
        if !backbone.exists() {
            let how = card
                .tide_backbone
                .fetch
                .as_deref()
                .map_or(String::new(), |f| {
                    format!(" (fetch it with {f}; the tide CLI does so itself)")
                });
            return Err(format_err(
                &dir.display().to_string(),
                format!(
                    "the backbone {} that config.json names is not in the folder{how}",
                    card.tide_backbone.file
                ),
            ));
        }
        return load_card_dir(dir, &card, &backbone);
    }
    let read = |p: &Path| std::fs::read(p).map_err(io_err(p));
    let config = read(&dir.join("config.json"))?;
    let files: Vec<PathBuf> = match file {
        Some(f) => vec![f],
        None => {
            let single = dir.join("model.safetensors");
            let index = dir.join("model.safetensors.index.json");
            if single.exists() {
                vec![single]
            } else if index.exists() {
                let names = shard_names(&read(&index)?, &index.display().to_string())?;
                names.iter().map(|n| dir.join(n)).collect()
            } else {
                return Err(format_err(
                    &dir.display().to_string(),
                    "no model.safetensors or model.safetensors.index.json",
                ));
            }
        }
    };
    let mut parts = ModelFiles {
        source: dir.display().to_string(),
        files: Vec::new(),
    };
    parts
        .files
        .push(("config.json".into(), Blob::from_vec(config)));
    for f in &files {
        parts.files.push((file_name(f), Blob::map(f)?));
    }
    // A separate memory file beside the backbone (memory added to an existing model).
    let mem = dir.join(MEMORY_FILE);
    if mem.exists() && !files.contains(&mem) {
        parts.files.push((MEMORY_FILE.into(), Blob::map(&mem)?));
    }
    for name in ["tokenizer.json", "tokenizer_config.json"] {
        let p = dir.join(name);
        if p.exists() {
            parts.files.push((name.into(), Blob::from_vec(read(&p)?)));
        }
    }
    parts.load()
}

/// The shard files a model.safetensors.index.json's weight_map names (sorted, distinct): plain
/// file names in the model's folder, never a path out of it. `name` is for messages.
pub fn shard_names(index: &[u8], name: &str) -> Result<Vec<String>> {
    let j: serde_json::Value = serde_json::from_slice(index)
        .map_err(|e| format_err(name, format!("invalid JSON: {e}")))?;
    let map = j
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| format_err(name, "missing weight_map"))?;
    let mut names = Vec::new();
    for (tensor, file) in map {
        let f = file
            .as_str()
            .ok_or_else(|| format_err(name, format!("weight_map[{tensor}] is not a string")))?;
        if f.is_empty() || f.contains(['/', '\\']) || f.starts_with('.') {
            return Err(format_err(
                name,
                format!("weight_map[{tensor}] = {f:?} is not a file in the model's folder"),
            ));
        }
        names.push(f.to_string());
    }
    names.sort();
    names.dedup();
    Ok(names)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}
