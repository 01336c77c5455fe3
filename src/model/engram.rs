//! Engram (../shared/spec/models.md §4, train/engram.py): hashed 2- and 3-gram memory added to
//! the residual before attention at a few layers. This module binds its tensors
//! (docs/format.md) and hashes on the host; the CPU reference (cpu/forward.rs) and the GPU
//! (decoder/engram.rs) compute the rest.
//!
//! Per Engram layer and position t, with x' the compressed ids (PAD before the start):
//!   s_n = XOR_{j<n} x'_{t-j} * r_j,  row of head k of order n = s_n mod p_{n,k}
//! Each (order, head) table gets its own row store (streamed, cached and counted like TIDE's).
use super::{Config, DType, TensorSet, Weight};
use crate::error::{format_err, Error, Result};

/// The n-gram orders (a head of order n hashes the last n compressed ids).
pub const ORDERS: [usize; 2] = [2, 3];
/// The short convolution: taps at t, t-3, t-6, t-9.
pub const KERNEL: usize = 4;
pub const DILATION: usize = 3;
/// Past positions the convolution reads.
pub const REACH: usize = (KERNEL - 1) * DILATION;

#[derive(Debug, Clone)]
pub struct EngramLayer {
    /// The decoder layer it is injected at (before that layer's attention).
    pub layer: usize,
    /// r_0..r_2 (odd; x' * r never overflows 63 bits, so u64 arithmetic is exact).
    pub multipliers: [u64; 3],
    /// [order][head] moduli (distinct primes; table rows).
    pub primes: Vec<Vec<u64>>,
    /// One table per (order, head), order-major, of `primes[o][h]` rows (the runtime reads
    /// them through row stores: memory/stores.rs).
    pub tables: Vec<Weight>,
    /// W_K and W_V [dim, d_mem] as f32, row-major, and their biases [dim].
    pub key: Vec<f32>,
    pub key_bias: Vec<f32>,
    pub value: Vec<f32>,
    pub value_bias: Vec<f32>,
    /// RMSNorm weights of h, k and of v~ before the convolution.
    pub norm_h: Vec<f32>,
    pub norm_k: Vec<f32>,
    pub norm_c: Vec<f32>,
    /// Depthwise taps [dim, KERNEL]: tap i reads position t - REACH + DILATION i.
    pub conv: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct Engram {
    pub source: String,
    /// Token id -> compressed id.
    pub compress: Vec<u32>,
    /// The id hashed for positions before the start.
    pub pad: u64,
    pub heads: usize,
    pub head_dim: usize,
    /// The tables' stored type (all tables share it: one gather kernel decodes them).
    pub dtype: DType,
    pub layers: Vec<EngramLayer>,
}

impl Engram {
    /// Stored rows per token per layer: orders x heads.
    pub fn tables_per_layer(&self) -> usize {
        ORDERS.len() * self.heads
    }

    /// Width of the concatenated rows e_t.
    pub fn d_mem(&self) -> usize {
        self.tables_per_layer() * self.head_dim
    }

    /// Bytes of one stored row.
    pub fn row_bytes(&self) -> usize {
        self.dtype.row_bytes(self.head_dim).unwrap_or(0)
    }

    /// Index in `layers` of the Engram layer injected at decoder layer `l`, if any.
    pub fn index_of(&self, l: usize) -> Option<usize> {
        self.layers.iter().position(|e| e.layer == l)
    }

    /// Compressed id of token `t` (ids were checked against the vocabulary by the caller).
    pub fn compressed(&self, t: u32) -> u64 {
        self.compress.get(t as usize).copied().unwrap_or(0) as u64
    }

    /// Table rows of one token for layer `e`: `last` = (x'_t, x'_{t-1}, x'_{t-2}) with PAD
    /// for positions before the start; out gets orders x heads rows, order-major.
    pub fn hash(&self, e: &EngramLayer, last: [u64; 3], out: &mut Vec<u32>) {
        let mut s = last[0].wrapping_mul(e.multipliers[0]);
        let mut j = 1;
        for (o, &n) in ORDERS.iter().enumerate() {
            while j < n {
                s ^= last[j].wrapping_mul(e.multipliers[j]);
                j += 1;
            }
            out.extend(e.primes[o].iter().map(|&p| (s % p) as u32));
        }
    }

    /// `hash` for the token at `pos` of a sequence whose compressed ids are `ids` (PAD before
    /// the start).
    pub fn hash_at(&self, e: &EngramLayer, ids: &[u64], pos: usize, out: &mut Vec<u32>) {
        let last = [0, 1, 2].map(|j| if pos >= j { ids[pos - j] } else { self.pad });
        self.hash(e, last, out);
    }

    /// Bind the Engram tensors of a model whose config.json has an "engram" entry (`conf`).
    /// Without the entry, Engram tensors in the file are refused (they would be dropped).
    pub fn from_set(
        file: &str,
        set: &TensorSet,
        c: &Config,
        conf: Option<&serde_json::Value>,
    ) -> Result<Option<Engram>> {
        let Some(conf) = conf else {
            if let Some(n) = set
                .weights
                .keys()
                .chain(set.raw.keys())
                .find(|n| n.starts_with("engram.") || n.contains(".engram."))
            {
                return Err(format_err(
                    file,
                    format!("holds Engram tensor '{n}' but config.json has no \"engram\" entry"),
                ));
            }
            return Ok(None);
        };
        let bad = |m: String| Err(format_err(file, format!("config.json \"engram\": {m}")));
        let num = |k: &str| conf.get(k).and_then(|v| v.as_u64());
        let list = |k: &str| -> Option<Vec<u64>> {
            conf.get(k)?
                .as_array()?
                .iter()
                .map(|v| v.as_u64())
                .collect()
        };
        let (Some(heads), Some(head_dim)) = (num("heads"), num("head_dim")) else {
            return bad("needs integer \"heads\" and \"head_dim\"".into());
        };
        let (heads, head_dim) = (heads as usize, head_dim as usize);
        if !(1..=16).contains(&heads) || head_dim == 0 || head_dim > 1024 || head_dim % 32 != 0 {
            return bad(format!(
                "heads {heads} (1..=16) and head_dim {head_dim} (a multiple of 32, at most 1024)"
            ));
        }
        if list("orders").as_deref().is_some_and(|o| o != [2, 3]) {
            return bad("orders must be [2, 3]".into());
        }
        if num("kernel").is_some_and(|k| k != KERNEL as u64)
            || num("dilation").is_some_and(|d| d != DILATION as u64)
        {
            return bad(format!("kernel must be {KERNEL} and dilation {DILATION}"));
        }
        let Some(layers) = list("layers") else {
            return bad("needs \"layers\", a list of layer indices".into());
        };
        let mut seen = Vec::new();
        for &l in &layers {
            if l as usize >= c.n_layers || seen.contains(&l) {
                return bad(format!(
                    "layer {l} is out of range or repeated ({} layers)",
                    c.n_layers
                ));
            }
            seen.push(l);
        }
        let pad = num("pad").unwrap_or(c.vocab as u64);
        if pad > c.vocab as u64 {
            return bad(format!("pad {pad} exceeds the vocabulary {}", c.vocab));
        }
        let dtype = match conf.get("rows").and_then(|v| v.as_str()).unwrap_or("f32") {
            "f32" => DType::F32,
            "f16" => DType::F16,
            "q8_0" => DType::Q8_0,
            "q4_1" => DType::Q4_1,
            other => return bad(format!("rows '{other}' is not one of f32, f16, q8_0, q4_1")),
        };
        let compress = read_compress(file, set, c.vocab)?;
        let shape = LayerShape {
            heads,
            head_dim,
            dtype,
            d: c.dim,
            vocab: c.vocab,
        };
        let mut out = layers
            .iter()
            .map(|&l| read_layer(file, set, l as usize, &shape))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|e| e.layer);
        Ok(Some(Engram {
            source: file.to_string(),
            compress,
            pad,
            heads,
            head_dim,
            dtype,
            layers: out,
        }))
    }
}

/// engram.compress: every token's compressed id, each below the vocabulary.
fn read_compress(file: &str, set: &TensorSet, vocab: usize) -> Result<Vec<u32>> {
    let compress = int_tensor(file, set, "engram.compress", &[vocab])?;
    if let Some(&x) = compress.iter().find(|&&x| x >= vocab as u64) {
        return Err(format_err(
            file,
            format!("engram.compress holds {x}, not a compressed id below {vocab}"),
        ));
    }
    Ok(compress.into_iter().map(|x| x as u32).collect())
}

/// What every Engram layer's tensors are shaped by.
struct LayerShape {
    heads: usize,
    head_dim: usize,
    dtype: DType,
    /// The model's width and vocabulary.
    d: usize,
    vocab: usize,
}

/// One Engram layer: hash multipliers and primes, its tables (each checked, each through a
/// row store of its own), projections, norms and convolution.
fn read_layer(file: &str, set: &TensorSet, l: usize, sh: &LayerShape) -> Result<EngramLayer> {
    let (heads, head_dim, d) = (sh.heads, sh.head_dim, sh.d);
    let p = format!("model.layers.{l}.engram");
    let m = int_tensor(file, set, &format!("{p}.multipliers"), &[3])?;
    // x' <= vocab, so r below 2^63 / (vocab + 1) keeps every product exact.
    let limit = (i64::MAX as u64) / (sh.vocab as u64 + 1);
    if m.iter().any(|&r| r % 2 == 0 || r >= limit) {
        return Err(format_err(
            file,
            format!("{p}.multipliers must be odd and below {limit}"),
        ));
    }
    let pr = int_tensor(file, set, &format!("{p}.primes"), &[ORDERS.len(), heads])?;
    if pr.iter().any(|&q| q < 2 || q > u32::MAX as u64) {
        return Err(format_err(
            file,
            format!("{p}.primes must be moduli in 2..2^32"),
        ));
    }
    let primes: Vec<Vec<u64>> = pr.chunks(heads).map(|r| r.to_vec()).collect();
    let mut tables = Vec::new();
    for (o, row) in primes.iter().enumerate() {
        for (h, &rows) in row.iter().enumerate() {
            let name = format!("engram.{l}.table.{o}.{h}");
            let w = super::tide::table(file, set, &name, sh.dtype, rows as usize, head_dim)?;
            if let Some(r) = super::tide::first_non_finite(&w) {
                return Err(format_err(
                    file,
                    format!("tensor '{name}' holds a NaN or infinite value in row {r}"),
                ));
            }
            tables.push(w);
        }
    }
    let d_mem = ORDERS.len() * heads * head_dim;
    let f =
        |n: &str, shape: &[usize]| super::tide::small_f32(set, file, &format!("{p}.{n}"), shape);
    Ok(EngramLayer {
        layer: l,
        multipliers: [m[0], m[1], m[2]],
        primes,
        tables,
        key: f("key_proj.weight", &[d, d_mem])?,
        key_bias: f("key_proj.bias", &[d])?,
        value: f("value_proj.weight", &[d, d_mem])?,
        value_bias: f("value_proj.bias", &[d])?,
        norm_h: f("norm_h.weight", &[d])?,
        norm_k: f("norm_k.weight", &[d])?,
        norm_c: f("norm_c.weight", &[d])?,
        conv: f("conv", &[d, KERNEL])?,
    })
}

/// An integer tensor with its shape checked.
fn int_tensor(file: &str, set: &TensorSet, name: &str, shape: &[usize]) -> Result<Vec<u64>> {
    let r = set.raw.get(name).ok_or_else(|| Error::MissingTensor {
        file: file.into(),
        tensor: name.into(),
    })?;
    if r.shape != shape {
        return Err(Error::Shape {
            file: file.into(),
            tensor: name.into(),
            expected: shape.to_vec(),
            got: r.shape.clone(),
        });
    }
    let v = super::safetensors::non_negative_ints(file, name, r)?;
    if v.len() != shape.iter().product::<usize>() {
        return Err(format_err(
            file,
            format!("'{name}' holds {} values for its shape {shape:?}", v.len()),
        ));
    }
    Ok(v)
}
