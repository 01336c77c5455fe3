//! GGUF v2/v3 (llama.cpp's model format): the reader, where every count, length and offset read
//! from the header is checked against the bytes actually present before anything is allocated,
//! and the binding of a parsed file's tensors and metadata to a Model (TIDE tensors included).
use std::borrow::Cow;
use std::collections::HashMap;

use super::blob::Blob;
use super::config::Config;
use super::dtype::DType;
use super::llama::{Layer, Model};
use super::tensor::{TensorInfo, TensorSet, Weight};
use super::tokenizer::TokenizerInfo;
use crate::error::{format_err, Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) if v >= 0 => Some(v as u64),
            Value::I16(v) if v >= 0 => Some(v as u64),
            Value::I32(v) if v >= 0 => Some(v as u64),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

pub struct GgufFile {
    pub name: String,
    pub version: u32,
    pub metadata: HashMap<String, Value>,
    /// Each tensor with the file that holds it: one file, or the parts of a split model
    /// (`GgufFile::join`).
    pub tensors: Vec<Weight>,
}

/// The header reader. It reads from a prefix of the file: the whole file when it is in memory
/// (borrowed), else a first 4 MB read from a read-through file, grown as the header needs.
struct Reader<'a> {
    /// Where a longer prefix comes from; None when the prefix is all there is
    /// (`header_need`, which reports a short prefix rather than reading on).
    blob: Option<&'a Blob>,
    b: Cow<'a, [u8]>,
    /// The file's whole length: counts and offsets are checked against it.
    len: usize,
    pos: usize,
    file: &'a str,
    /// Set when the header ran past a fixed prefix.
    short: bool,
}

impl<'a> Reader<'a> {
    fn new(blob: &'a Blob, file: &'a str) -> Reader<'a> {
        let len = blob.len();
        let first = if blob.is_resident() {
            len
        } else {
            len.min(4 << 20)
        };
        Reader {
            blob: Some(blob),
            b: blob.read(0..first),
            len,
            pos: 0,
            file,
            short: false,
        }
    }

    /// A reader of `prefix`, the first bytes of a file of `len` bytes.
    fn of_prefix(prefix: &'a [u8], len: usize, file: &'a str) -> Reader<'a> {
        Reader {
            blob: None,
            b: Cow::Borrowed(prefix),
            len,
            pos: 0,
            file,
            short: false,
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        // No header item is near this large (vocabularies come a token at a time): a claim of
        // more is corruption, refused before a read-through file's prefix grows to hold it.
        const MAX_ITEM: usize = 64 << 20;
        if n > MAX_ITEM {
            return Err(format_err(
                self.file,
                format!(
                    "corrupt header: {what} claims {n} bytes at offset {}",
                    self.pos
                ),
            ));
        }
        let end = self.pos.checked_add(n).filter(|&e| e <= self.len);
        let Some(end) = end else {
            return Err(format_err(
                self.file,
                format!(
                    "truncated: {what} needs {n} bytes at offset {} but the file has {}",
                    self.pos, self.len
                ),
            ));
        };
        if end > self.b.len() {
            let Some(blob) = self.blob else {
                self.short = true;
                return Err(format_err(
                    self.file,
                    format!("the header goes on past the first {} bytes", self.b.len()),
                ));
            };
            let grown = end.max(self.b.len() * 2).min(self.len);
            self.b = blob.read(0..grown);
        }
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1, "u8")?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2, "u16")?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, "u32")?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, "u64")?.try_into().unwrap()))
    }
    /// A count that must fit in the rest of the file at `min_bytes` per item.
    fn count(&mut self, what: &str, min_bytes: usize) -> Result<usize> {
        let n = self.u64()?;
        let left = (self.len - self.pos) as u64;
        if n.saturating_mul(min_bytes as u64) > left {
            return Err(format_err(
                self.file,
                format!("truncated or corrupt header: it claims {n} {what}, more than the {left} bytes left in the file can hold"),
            ));
        }
        Ok(n as usize)
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(what, 1)?;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec())
            .map_err(|_| format_err(self.file, format!("{what} is not valid UTF-8")))
    }
    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.u8()?),
            1 => Value::I8(self.u8()? as i8),
            2 => Value::U16(self.u16()?),
            3 => Value::I16(self.u16()? as i16),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(self.u32()? as i32),
            6 => Value::F32(f32::from_bits(self.u32()?)),
            7 => Value::Bool(self.u8()? != 0),
            8 => Value::Str(self.string(key)?),
            9 => {
                if depth > 2 {
                    return Err(format_err(
                        self.file,
                        format!("metadata '{key}': arrays nested too deep"),
                    ));
                }
                let ety = self.u32()?;
                let min = match ety {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    _ => 8,
                };
                let n = self.count(key, min)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.value(ety, key, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(self.u64()? as i64),
            12 => Value::F64(f64::from_bits(self.u64()?)),
            t => {
                return Err(format_err(
                    self.file,
                    format!("metadata '{key}' has unknown value type {t}"),
                ))
            }
        })
    }
}

fn ggml_type(code: u32) -> std::result::Result<DType, String> {
    Ok(match code {
        0 => DType::F32,
        1 => DType::F16,
        2 => DType::Q4_0,
        3 => DType::Q4_1,
        6 => DType::Q5_0,
        7 => DType::Q5_1,
        8 => DType::Q8_0,
        12 => DType::Q4_K,
        13 => DType::Q5_K,
        14 => DType::Q6_K,
        30 => DType::BF16,
        c => {
            let name = match c {
                9 => "Q8_1",
                10 => "Q2_K",
                11 => "Q3_K",
                15 => "Q8_K",
                16..=23 | 29 => "IQ*",
                24 => "I8",
                25 => "I16",
                26 => "I32",
                27 => "I64",
                28 => "F64",
                _ => "unknown",
            };
            return Err(format!("{name} (ggml type {c})"));
        }
    })
}

/// What a GGUF header holds, up to the start of its tensor data.
struct Header {
    version: u32,
    metadata: HashMap<String, Value>,
    /// Each tensor's name, dims (fastest first), ggml type code and data offset.
    raw: Vec<(String, Vec<u64>, u32, u64)>,
    align: usize,
    data_start: usize,
}

/// Walk the header: magic, version, metadata, tensor infos, alignment.
fn read_header(r: &mut Reader) -> Result<Header> {
    let name = r.file;
    let magic = r.take(4, "magic")?;
    if magic != b"GGUF" {
        return Err(format_err(
            name,
            format!(
                "not a GGUF file (magic {:?}, expected \"GGUF\")",
                String::from_utf8_lossy(magic)
            ),
        ));
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Err(format_err(
            name,
            format!("unsupported GGUF version {version} (2 and 3 are supported)"),
        ));
    }
    // A tensor info takes at least 8 (name len) + 4 + 4 + 8 bytes; a KV at least 8 + 4 + 1.
    let n_tensors = r.count("tensors", 24)?;
    let n_kv = r.count("metadata entries", 13)?;
    let mut metadata = HashMap::with_capacity(n_kv);
    for _ in 0..n_kv {
        let key = r.string("metadata key")?;
        let ty = r.u32()?;
        let v = r.value(ty, &key, 0)?;
        metadata.insert(key, v);
    }
    let mut raw = Vec::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        let tname = r.string("tensor name")?;
        let nd = r.u32()?;
        if nd == 0 || nd > 4 {
            return Err(format_err(
                name,
                format!("tensor '{tname}' has {nd} dimensions (1..4 supported)"),
            ));
        }
        let mut dims = Vec::with_capacity(nd as usize);
        for _ in 0..nd {
            dims.push(r.u64()?);
        }
        let ty = r.u32()?;
        let offset = r.u64()?;
        raw.push((tname, dims, ty, offset));
    }
    let align = match metadata.get("general.alignment") {
        None => 32,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() && a <= 1 << 16 => a as usize,
            _ => {
                return Err(format_err(
                    name,
                    format!("general.alignment {v:?} is not a power of two"),
                ))
            }
        },
    };
    let data_start = r.pos.div_ceil(align) * align;
    Ok(Header {
        version,
        metadata,
        raw,
        align,
        data_start,
    })
}

impl GgufFile {
    pub fn parse(name: &str, blob: Blob) -> Result<GgufFile> {
        let mut r = Reader::new(&blob, name);
        let Header {
            version,
            metadata,
            raw,
            align,
            data_start,
        } = read_header(&mut r)?;
        let file_len = r.len;
        drop(r);
        // A vocab-only file (no tensors) may end right after its header, before the padding.
        if data_start > file_len && !raw.is_empty() {
            return Err(format_err(
                name,
                "truncated: no tensor data after the header",
            ));
        }
        let data_len = file_len.saturating_sub(data_start) as u64;
        let mut tensors = Vec::with_capacity(raw.len());
        for (tname, dims, ty, offset) in raw {
            let dtype = ggml_type(ty).map_err(|t| Error::UnsupportedType {
                file: name.to_string(),
                tensor: tname.clone(),
                ty: t,
            })?;
            // GGUF lists dims fastest-first; we store [outer.., row length].
            let mut shape: Vec<usize> = Vec::with_capacity(dims.len());
            let mut elems: u64 = 1;
            for &d in dims.iter().rev() {
                elems = elems
                    .checked_mul(d)
                    .filter(|&e| e <= data_len.saturating_mul(8))
                    .ok_or_else(|| {
                        format_err(
                            name,
                            format!(
                                "tensor '{tname}' claims dimensions {dims:?}, larger than the file"
                            ),
                        )
                    })?;
                shape.push(d as usize);
            }
            let row = *shape.last().unwrap();
            let rows = (elems / row.max(1) as u64) as usize;
            let nbytes = dtype
                .row_bytes(row)
                .and_then(|rb| rb.checked_mul(rows))
                .ok_or_else(|| format_err(name, format!("tensor '{tname}': row length {row} is not a multiple of the {} block size {}", dtype.name(), dtype.block_elems())))?;
            if offset % align as u64 != 0 {
                return Err(format_err(
                    name,
                    format!("tensor '{tname}' offset {offset} is not aligned to {align}"),
                ));
            }
            let end = offset.checked_add(nbytes as u64).filter(|&e| e <= data_len);
            let Some(end) = end else {
                return Err(format_err(name, format!("truncated: tensor '{tname}' needs bytes {offset}..{} of the data section, which has {data_len}", offset as u128 + nbytes as u128)));
            };
            let info = TensorInfo {
                name: tname,
                dtype,
                shape,
                start: data_start + offset as usize,
                end: data_start + end as usize,
            };
            tensors.push(Weight {
                info,
                blob: blob.clone(),
            });
        }
        Ok(GgufFile {
            name: name.to_string(),
            version,
            metadata,
            tensors,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }
}

impl Model {
    /// Bind a parsed GGUF file (architecture "llama") to a model.
    pub fn from_gguf(g: GgufFile) -> Result<Model> {
        let file = g.name.clone();
        let fmt = |m: String| crate::error::format_err(&file, m);
        let arch = g
            .get("general.architecture")
            .and_then(|v| v.as_str())
            .ok_or_else(|| fmt("missing general.architecture".into()))?
            .to_string();
        let traits = super::arch::find(super::arch::GGUF_ARCHS, &arch).map_err(&fmt)?;
        let u = |k: &str| -> Result<usize> {
            g.get(&format!("{arch}.{k}"))
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .ok_or_else(|| fmt(format!("missing or non-integer metadata {arch}.{k}")))
        };
        let f = |k: &str, default: f64| -> f64 {
            g.get(&format!("{arch}.{k}"))
                .and_then(|v| v.as_f64())
                .unwrap_or(default)
        };
        g.check_whole()?;
        let find = |name: &str| -> Option<Weight> {
            g.tensors.iter().find(|t| t.info.name == name).cloned()
        };
        let need = |name: &str| -> Result<Weight> {
            find(name).ok_or_else(|| Error::MissingTensor {
                file: file.clone(),
                tensor: name.to_string(),
            })
        };
        let dim = u("embedding_length")?;
        let n_heads = u("attention.head_count")?;
        let n_kv_heads = u("attention.head_count_kv").unwrap_or(n_heads);
        let token_embd = need("token_embd.weight")?;
        let vocab = g
            .get(&format!("{arch}.vocab_size"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .unwrap_or(token_embd.rows());
        let head_dim = match g
            .get(&format!("{arch}.attention.key_length"))
            .and_then(|v| v.as_u64())
        {
            Some(v) => v as usize,
            None if n_heads > 0 => dim / n_heads,
            None => 0,
        };
        // Partial rotary embeddings (RoPE on the first n_rot dims only) are not modelled.
        if let Some(n_rot) = g
            .get(&format!("{arch}.rope.dimension_count"))
            .and_then(|v| v.as_u64())
        {
            if n_rot as usize != head_dim {
                return Err(fmt(format!(
                    "{arch}.rope.dimension_count {n_rot} differs from the head dim {head_dim}: partial RoPE is not supported"
                )));
            }
        }
        let rope_freq_factors = rope_freq_factors(&g, &arch, head_dim, &find)?;
        let config = Config {
            vocab,
            dim,
            n_layers: u("block_count")?,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim: u("feed_forward_length")?,
            rope_theta: f("rope.freq_base", 10000.0) as f32,
            eps: f("attention.layer_norm_rms_epsilon", 1e-5) as f32,
            ctx_len: u("context_length").unwrap_or(2048),
            rope_layout: traits.rope,
            rope_freq_factors,
        };
        config.validate(&file)?;
        let mut layers = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let t = |s: &str| need(&format!("blk.{i}.{s}.weight"));
            layers.push(Layer {
                attn_norm: t("attn_norm")?,
                wq: t("attn_q")?,
                wk: t("attn_k")?,
                wv: t("attn_v")?,
                wo: t("attn_output")?,
                ffn_norm: t("ffn_norm")?,
                w_gate: t("ffn_gate")?,
                w_up: t("ffn_up")?,
                w_down: t("ffn_down")?,
                qkv_bias: match traits.qkv_bias {
                    true => {
                        let b = |s: &str| need(&format!("blk.{i}.{s}.bias"));
                        Some([b("attn_q")?, b("attn_k")?, b("attn_v")?])
                    }
                    false => None,
                },
                qk_norm: match traits.qk_norm {
                    true => Some([t("attn_q_norm")?, t("attn_k_norm")?]),
                    false => None,
                },
                lime_mix: None,
            });
        }
        let tokenizer = TokenizerInfo::from_gguf(&g)?;
        let set = tide_set_of_gguf(&g);
        let memory = super::tide::TideMemory::from_set(&file, &set, &config)?;
        let model = Model {
            source: file.clone(),
            config,
            output_norm: need("output_norm.weight")?,
            lm_head: find("output.weight"),
            token_embd,
            layers,
            tokenizer,
            memory,
            engram: None,
            token_counts: None,
        };
        model.validate()?;
        Ok(model)
    }
}

/// RoPE frequency divisors: Llama 3.1's `rope_freqs.weight` tensor, or linear scaling
/// (`rope.scaling.type` = linear, every frequency divided by `rope.scaling.factor`).
fn rope_freq_factors(
    g: &GgufFile,
    arch: &str,
    head_dim: usize,
    find: &dyn Fn(&str) -> Option<Weight>,
) -> Result<Option<Vec<f32>>> {
    let fmt = |m: String| crate::error::format_err(&g.name, m);
    let kind = g
        .get(&format!("{arch}.rope.scaling.type"))
        .and_then(|v| v.as_str())
        .unwrap_or("none");
    let factor = g
        .get(&format!("{arch}.rope.scaling.factor"))
        .and_then(|v| v.as_f64());
    let table = find("rope_freqs.weight");
    match (kind, table) {
        (_, Some(w)) => {
            if w.info.shape != [head_dim / 2] {
                return Err(Error::Shape {
                    file: g.name.clone(),
                    tensor: w.info.name.clone(),
                    expected: vec![head_dim / 2],
                    got: w.info.shape.clone(),
                });
            }
            Ok(Some(w.to_f32()))
        }
        ("none", None) => Ok(None),
        ("linear", None) => match factor {
            Some(f) if f > 0.0 => Ok((f != 1.0).then(|| vec![f as f32; head_dim / 2])),
            _ => Err(fmt(format!(
                "{arch}.rope.scaling.factor {factor:?} must be positive"
            ))),
        },
        (other, None) => Err(fmt(format!(
            "RoPE scaling '{other}' ({arch}.rope.scaling.type) is not supported (none, linear and llama3's rope_freqs are)"
        ))),
    }
}

/// TIDE tensors and `tide.*` metadata of a GGUF file (memory rows in native GGUF types).
fn tide_set_of_gguf(g: &GgufFile) -> TensorSet {
    let mut set = TensorSet::default();
    for t in g
        .tensors
        .iter()
        .filter(|t| t.info.name.starts_with("tide."))
    {
        set.weights.insert(t.info.name.clone(), t.clone());
    }
    for (k, v) in g.metadata.iter().filter(|(k, _)| k.starts_with("tide.")) {
        let s = v
            .as_str()
            .map(String::from)
            .or_else(|| v.as_u64().map(|x| x.to_string()))
            .or_else(|| v.as_f64().map(|x| x.to_string()))
            .or_else(|| v.as_bool().map(|x| x.to_string()));
        if let Some(s) = s {
            set.meta.insert(k.clone(), s);
        }
    }
    set
}

/// How many bytes from the start of a GGUF file of `len` bytes hold its header, from `prefix`,
/// the file's first bytes: None when the header goes on past the prefix (read more and ask
/// again), an error when what is there is not a GGUF header.
pub fn header_end(name: &str, prefix: &[u8], len: usize) -> Result<Option<usize>> {
    let mut r = Reader::of_prefix(prefix, len, name);
    match read_header(&mut r) {
        Ok(h) => Ok(Some(h.data_start.min(len))),
        Err(_) if r.short => Ok(None),
        Err(e) => Err(e),
    }
}
