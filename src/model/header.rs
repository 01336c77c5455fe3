//! A model from its weights files' headers alone. The browser reads each header by HTTP Range
//! before downloading a model, builds the model from the headers, and refuses one that the
//! GPU adapter cannot hold before a byte of weights comes down (`engine::gpu_fit`).
//! `header_need` says how much of a file's start its header takes; `HeaderFiles` stands for
//! the files: their headers' bytes, the few weights the loader reads, and zeros elsewhere
//! (nothing that sizes buffers reads them).
use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::blob::{Blob, ReadAt};
use super::{gguf, safetensors, Model, ModelFiles};
use crate::error::{format_err, Result};

/// Whether a file's first bytes hold its whole header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderNeed {
    /// The header ends at this byte.
    Complete(usize),
    /// Read at least this many bytes from the start and ask again.
    More(usize),
}

/// How much of the start of `name` (a GGUF or .safetensors file of `len` bytes) its header
/// takes, from `prefix`, its first bytes.
pub fn header_need(name: &str, prefix: &[u8], len: usize) -> Result<HeaderNeed> {
    if prefix.len() > len {
        return Err(format_err(
            name,
            format!("{} bytes read from a file of {len}", prefix.len()),
        ));
    }
    // Grow a short prefix fast: vocabularies put megabytes before the tensor infos.
    let more = || HeaderNeed::More((prefix.len() * 2).max(1 << 20).min(len));
    if prefix.len() < 8.min(len) {
        return Ok(more());
    }
    if prefix.starts_with(b"GGUF") {
        return Ok(match gguf::header_end(name, prefix, len)? {
            Some(end) => HeaderNeed::Complete(end),
            None => more(),
        });
    }
    if name.ends_with(".safetensors") {
        let n = safetensors::header_len(name, prefix, len as u64)? as usize;
        return Ok(if prefix.len() >= 8 + n {
            HeaderNeed::Complete(8 + n)
        } else {
            HeaderNeed::More(8 + n)
        });
    }
    Err(format_err(
        name,
        "neither a GGUF nor a .safetensors file: no header to read",
    ))
}

/// The most bytes of weights a model may need at load (small tensors the loader reads, such
/// as Llama 3's RoPE frequency factors) for `HeaderFiles` to fetch them rather than give up.
pub const MAX_LOAD_READS: usize = 8 << 20;

/// What is known of a file of `len` bytes: its header, and ranges read for the loader; zeros
/// elsewhere. Reads that start past the header and are not known are noted (`missing`).
struct Known {
    len: usize,
    header: Vec<u8>,
    ranges: Mutex<Vec<(usize, Vec<u8>)>>,
    missing: Mutex<Vec<Range<usize>>>,
}

impl ReadAt for Known {
    fn len(&self) -> usize {
        self.len
    }

    fn read_at(&self, at: usize, out: &mut [u8]) -> std::result::Result<(), String> {
        out.fill(0);
        let end = at + out.len();
        if at == 0 || end <= self.header.len() {
            let h = &self.header[at.min(self.header.len())..];
            let n = h.len().min(out.len());
            out[..n].copy_from_slice(&h[..n]);
            // A read from byte 0 is the GGUF header reader growing its prefix: past the
            // header it is weights that nothing will look at.
            return Ok(());
        }
        let ranges = self.ranges.lock().unwrap();
        match ranges.iter().find(|(s, b)| *s <= at && end <= s + b.len()) {
            Some((s, b)) => out.copy_from_slice(&b[at - s..end - s]),
            None => self.missing.lock().unwrap().push(at..end),
        }
        Ok(())
    }
}

/// A model's files as far as the headers (and the few weights the loader reads) go: enough
/// to build the model with every shape, type and setting of the real one, and zeros for the
/// weights, before its weights are downloaded.
pub struct HeaderFiles {
    source: String,
    files: Vec<(String, Blob, Option<Arc<Known>>)>,
}

/// What building a model from headers gave.
pub enum FromHeaders {
    Model(Box<Model>),
    /// The loader read these byte ranges of these files' weights: add them
    /// (`HeaderFiles::add_range`) and build again.
    Needs(Vec<(String, Range<usize>)>),
    /// The loader reads more weights than `MAX_LOAD_READS` (a memory model's tables are read
    /// whole at load): this model cannot be sized from its headers.
    Unsized(String),
}

impl HeaderFiles {
    pub fn new(source: &str) -> HeaderFiles {
        HeaderFiles {
            source: source.into(),
            files: Vec::new(),
        }
    }

    /// What errors call the model.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// A file held whole (config.json, tokenizer.json).
    pub fn add_whole(&mut self, name: &str, blob: Blob) {
        self.files.push((name.into(), blob, None));
    }

    /// A weights file of `len` bytes by its first bytes, which must hold its header
    /// (`header_need`).
    pub fn add_header(&mut self, name: &str, prefix: Vec<u8>, len: usize) -> Result<()> {
        let mut prefix = prefix;
        match header_need(name, &prefix, len)? {
            // Only the header is known: bytes read past it are weights (`Known::read_at`).
            HeaderNeed::Complete(end) => prefix.truncate(end),
            HeaderNeed::More(n) => {
                return Err(format_err(
                    name,
                    format!(
                        "{} bytes do not hold the header, which goes on to byte {n} or past",
                        prefix.len()
                    ),
                ))
            }
        }
        let known = Arc::new(Known {
            len,
            header: prefix,
            ranges: Mutex::default(),
            missing: Mutex::default(),
        });
        let blob = Blob::from_reader(name, known.clone());
        self.files.push((name.into(), blob, Some(known)));
        Ok(())
    }

    /// Bytes `at..` of a weights file, which the loader asked for.
    pub fn add_range(&mut self, name: &str, at: usize, bytes: Vec<u8>) -> Result<()> {
        let known = self
            .files
            .iter()
            .find_map(|(n, _, k)| (n == name).then_some(k.as_ref()).flatten())
            .ok_or_else(|| format_err(name, "not a weights file given by its header"))?;
        if at.checked_add(bytes.len()).is_none_or(|e| e > known.len) {
            return Err(format_err(
                name,
                format!("bytes {at}.. run past the end of the file"),
            ));
        }
        known.ranges.lock().unwrap().push((at, bytes));
        Ok(())
    }

    /// Build the model (`memory_streamed`: as `ModelFiles::load_with`). Weights the loader
    /// read but that were not given come back as `Needs`, up to `MAX_LOAD_READS` in all;
    /// beyond that, `Unsized`.
    pub fn load(&self, memory_streamed: bool) -> Result<FromHeaders> {
        for (_, _, k) in &self.files {
            if let Some(k) = k {
                k.missing.lock().unwrap().clear();
            }
        }
        let files = ModelFiles {
            source: self.source.clone(),
            files: self
                .files
                .iter()
                .map(|(n, b, _)| (n.clone(), b.clone()))
                .collect(),
        };
        let built = files.load_with(memory_streamed);
        let mut needs = Vec::new();
        for (n, _, k) in &self.files {
            if let Some(k) = k {
                needs.extend(
                    k.missing
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|r| (n.clone(), r.clone())),
                );
            }
        }
        if needs.is_empty() {
            return Ok(FromHeaders::Model(Box::new(built?)));
        }
        let total: usize = needs.iter().map(|(_, r)| r.len()).sum();
        if total > MAX_LOAD_READS {
            return Ok(FromHeaders::Unsized(format!(
                "{}: loading reads {total} bytes of its weights, more than the {MAX_LOAD_READS} \
                 read to size a model from its headers",
                self.source
            )));
        }
        Ok(FromHeaders::Needs(needs))
    }
}
