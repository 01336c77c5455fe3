//! The sha256 of each file `tide serve` offers, for /models.json (the browser checks a download
//! against it before use). Hashing a gigabyte takes seconds, so each hash is computed once and
//! kept in a cache file keyed by the file's path, size and modification time: a restart reads it
//! back, a changed file is hashed again.
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Serialize, Deserialize, Clone, PartialEq)]
struct Entry {
    bytes: u64,
    modified_ns: u128,
    sha256: String,
}

/// Hashes by canonical path, read from and written back to `path` (None: not kept).
pub struct FileHashes {
    path: Option<PathBuf>,
    entries: BTreeMap<String, Entry>,
    changed: bool,
    /// Files hashed now, and hashes taken from the cache (for the log).
    pub hashed: usize,
    pub cached: usize,
}

/// Where the cache lives: $XDG_CACHE_HOME/tide, else ~/.cache/tide.
pub fn default_cache_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("tide").join("file-sha256.json"))
}

/// The hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl FileHashes {
    /// The cache at `path`; an unreadable or corrupt cache starts empty (it is only a cache).
    pub fn open(path: Option<PathBuf>) -> FileHashes {
        let entries = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        FileHashes {
            path,
            entries,
            changed: false,
            hashed: 0,
            cached: 0,
        }
    }

    /// The sha256 of the file at `p`: from the cache when its size and modification time are
    /// unchanged, else read through now (a progress bar for large files).
    pub fn of(&mut self, p: &Path) -> Result<String> {
        let key = std::fs::canonicalize(p)
            .with_context(|| format!("{}", p.display()))?
            .display()
            .to_string();
        let md = std::fs::metadata(p).with_context(|| format!("{}", p.display()))?;
        let modified_ns = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        if let Some(e) = self.entries.get(&key) {
            if e.bytes == md.len() && e.modified_ns == modified_ns {
                self.cached += 1;
                return Ok(e.sha256.clone());
            }
        }
        let sha256 = hash_file(p, md.len())?;
        self.entries.insert(
            key,
            Entry {
                bytes: md.len(),
                modified_ns,
                sha256: sha256.clone(),
            },
        );
        self.changed = true;
        self.hashed += 1;
        Ok(sha256)
    }

    /// Write the cache back (entries of files that are gone dropped). A cache that cannot be
    /// written costs only the hashing next time: say so and go on.
    pub fn save(&mut self) {
        let Some(path) = &self.path else { return };
        if !self.changed {
            return;
        }
        self.entries.retain(|k, _| Path::new(k).exists());
        let write = || -> std::io::Result<()> {
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d)?;
            }
            // Written aside, then renamed: a cache is never left half written.
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, serde_json::to_vec_pretty(&self.entries)?)?;
            std::fs::rename(&tmp, path)
        };
        match write() {
            Ok(()) => self.changed = false,
            Err(e) => eprintln!(
                "serve: could not keep the file hashes in {}: {e}",
                path.display()
            ),
        }
    }
}

fn hash_file(p: &Path, len: u64) -> Result<String> {
    let mut f = std::fs::File::open(p).with_context(|| format!("{}", p.display()))?;
    let bar = (len >= 64 << 20).then(|| {
        let b = indicatif::ProgressBar::new(len);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "serve: sha256 of {msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        b
    });
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", p.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        if let Some(b) = &bar {
            b.inc(n as u64);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(hex(&h.finalize()))
}
