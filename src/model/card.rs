//! A memory model's card: a folder whose config.json names a pretrained backbone (a GGUF file
//! that is fetched, not shipped) and holds the TIDE memory trained on it (models/smollm2-tide).
//! The card says which file the backbone is and how big; the front end finds or fetches it.
use serde::Deserialize;

use crate::error::{format_err, Result};

/// config.json of a memory model (docs/format.md, "Memory on a fetched backbone").
#[derive(Debug, Clone, Deserialize)]
pub struct Card {
    pub tide_backbone: Backbone,
    /// The memory file in the folder (default memory.safetensors).
    #[serde(default = "default_memory")]
    pub memory: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Backbone {
    /// The GGUF file's name, also what it is called beside the memory when served.
    pub file: String,
    /// Its exact size in bytes: a file of another size is another backbone.
    pub bytes: u64,
    /// Its SHA-256 (hex), for the front end to check a fetched file.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The project's script that fetches it (run from the repository root; prints its path).
    #[serde(default)]
    pub fetch: Option<String>,
    /// Where it comes from, for people.
    #[serde(default)]
    pub source: Option<String>,
}

fn default_memory() -> String {
    super::files::MEMORY_FILE.to_string()
}

/// File names in a card: plain names within the folder.
fn plain(n: &str) -> bool {
    !n.is_empty() && !n.starts_with('.') && !n.contains(['/', '\\'])
}

impl Card {
    /// The card in a parsed config.json, or None when it names no backbone (a plain Hugging
    /// Face config). `name` is for messages.
    pub fn from_config(name: &str, cfg: &serde_json::Value) -> Result<Option<Card>> {
        if cfg.get("tide_backbone").is_none() {
            return Ok(None);
        }
        let card: Card = serde_json::from_value(cfg.clone())
            .map_err(|e| format_err(name, format!("tide_backbone: {e}")))?;
        for (what, f) in [
            ("tide_backbone.file", &card.tide_backbone.file),
            ("memory", &card.memory),
        ] {
            if !plain(f) {
                return Err(format_err(
                    name,
                    format!("{what} = {f:?} is not a file name within the folder"),
                ));
            }
        }
        if !card.tide_backbone.file.ends_with(".gguf") {
            return Err(format_err(
                name,
                format!(
                    "tide_backbone.file = {:?}: a backbone must be a .gguf file",
                    card.tide_backbone.file
                ),
            ));
        }
        Ok(Some(card))
    }
}
