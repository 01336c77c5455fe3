//! TIDE metadata and tensors (tide.memory.{k}.rows/.gamma, tide.router.{l}.weight) bound to a
//! model, with every shape, type and value checked against the backbone.
use std::collections::HashMap;

use super::TensorSet;
use super::{Config, DType, TensorInfo, Weight};
use crate::error::{format_err, Error, Result};

/// Most memory blocks a model may have (the paper goes to 24; the router kernel keeps K+2 partial sums per lane in 8.7 KiB of workgroup memory).
pub const MAX_K: usize = 32;

#[derive(Debug, Clone)]
pub struct TideMemory {
    /// File the tables came from, for messages.
    pub source: String,
    pub k: usize,
    /// Rows are stored already RMS-normalised and scaled (no gamma at run time).
    pub normalized: bool,
    pub eps: f32,
    /// K tables, each [vocab, dim] in the stored type: where their bytes are (mapped, in
    /// memory), or for a remote file only their type and shape. The runtime reads rows
    /// through a row store it builds from these (memory/stores.rs).
    pub tables: Vec<Weight>,
    /// K gammas of length dim (ones when `normalized`).
    pub gammas: Vec<Vec<f32>>,
    /// Per layer: router W_r [K+1, dim] as f32 (slot K = NULL); None = no memory term in that
    /// layer (what `tide ablate` removes).
    pub routers: Vec<Option<Vec<f32>>>,
    /// Tables factorised by `tide compress --svd-*`: then `tables` hold A_k and a block's row
    /// is A_k[v] B_k.
    pub svd: Option<Svd>,
}

/// Per-block truncated SVD, E_k ~ A_k B_k: A_k [V, width] is the stored table (streamed like
/// plain rows), B_k [width, dim] is small and stays resident.
#[derive(Debug, Clone)]
pub struct Svd {
    /// The rank r kept; the stored width is r rounded up to the 32-value block, the extra
    /// columns of A_k and rows of B_k being zero.
    pub rank: usize,
    pub width: usize,
    /// The K bases B_k, each [width, dim] row-major, as f32 (values of f16 when stored so).
    pub basis: Vec<Vec<f32>>,
    /// The file stores the bases in f16: the GPU keeps them so (half the memory).
    pub basis_f16: bool,
}

/// Stored width of rank-`r` factors: whole 32-value blocks.
pub fn svd_width(rank: usize) -> usize {
    rank.div_ceil(32) * 32
}

fn meta_get<'a>(meta: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    meta.get(key).map(|s| s.as_str())
}

/// f16 bit patterns that are NaN or infinite.
fn f16_bad(lo: u8, hi: u8) -> bool {
    (u16::from_le_bytes([lo, hi]) & 0x7c00) == 0x7c00
}

/// First row of stored `bytes` (rows of `rb` bytes in `dtype`) holding a NaN or infinity; for
/// block types only the f16 scales (and minimums) can be bad, the values being integers.
pub fn first_bad_row(dtype: DType, b: &[u8], rb: usize) -> Option<usize> {
    let row_of = |byte: usize| byte / rb.max(1);
    match dtype {
        DType::F32 => b
            .chunks_exact(4)
            .position(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite())
            .map(|i| row_of(i * 4)),
        DType::F16 => b
            .chunks_exact(2)
            .position(|c| f16_bad(c[0], c[1]))
            .map(|i| row_of(i * 2)),
        DType::BF16 => b
            .chunks_exact(2)
            .position(|c| (u16::from_le_bytes([c[0], c[1]]) & 0x7f80) == 0x7f80)
            .map(|i| row_of(i * 2)),
        DType::Q8_0 | DType::Q4_0 | DType::Q5_0 => b
            .chunks_exact(dtype.block_bytes())
            .position(|c| f16_bad(c[0], c[1]))
            .map(|i| row_of(i * dtype.block_bytes())),
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => b
            .chunks_exact(dtype.block_bytes())
            .position(|c| f16_bad(c[0], c[1]) || f16_bad(c[2], c[3]))
            .map(|i| row_of(i * dtype.block_bytes())),
        DType::Q6_K => b
            .chunks_exact(210)
            .position(|c| f16_bad(c[208], c[209]))
            .map(|i| row_of(i * 210)),
    }
}

/// First row of a stored table holding a non-finite value. The scan goes in pieces of 8 MB,
/// letting the OS drop each piece's file pages after it: a mapped table then costs memory only
/// for the rows steps read (the point of streaming them), even at its peak.
pub(crate) fn first_non_finite(w: &Weight) -> Option<usize> {
    let rb = w.dtype().row_bytes(w.cols())?.max(1);
    let per = ((8 << 20) / rb).max(1);
    // The rows whose bytes are here: none of a remote table (its rows come by HTTP).
    let rows = w.rows().min(w.byte_len() / rb);
    for r0 in (0..rows).step_by(per) {
        let r1 = (r0 + per).min(rows);
        let piece = w.row_bytes(r0..r1);
        let bad = first_bad_row(w.dtype(), &piece, rb).map(|r| r + r0);
        let at = w.info.start + r0 * rb;
        w.blob.release(at..at + piece.len());
        if bad.is_some() {
            return bad;
        }
    }
    None
}

pub(crate) fn small_f32(
    set: &TensorSet,
    file: &str,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>> {
    let w = set.weights.get(name).ok_or_else(|| Error::MissingTensor {
        file: file.into(),
        tensor: name.into(),
    })?;
    if w.info.shape != shape {
        return Err(Error::Shape {
            file: file.into(),
            tensor: name.into(),
            expected: shape.to_vec(),
            got: w.info.shape.clone(),
        });
    }
    let v = w.to_f32();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(format_err(
            file,
            format!("tensor '{name}' holds a non-finite value at element {i}"),
        ));
    }
    Ok(v)
}

/// An integer metadata value, if present.
fn meta_usize(file: &str, set: &TensorSet, key: &str) -> Result<Option<usize>> {
    meta_get(&set.meta, key)
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format_err(file, format!("metadata {key} = '{s}' is not an integer")))
        })
        .transpose()
}

/// The first block or layer index after `prefix` in the set's tensor names that is `>= n`.
fn index_beyond<'a>(
    names: impl Iterator<Item = &'a String>,
    prefix: &str,
    n: usize,
) -> Option<usize> {
    names
        .filter_map(|name| name.strip_prefix(prefix))
        .filter_map(|r| r.split('.').next()?.parse::<usize>().ok())
        .find(|&i| i >= n)
}

/// How the tables are stored, from the tide.* metadata.
struct Layout {
    dtype: DType,
    normalized: bool,
    eps: f32,
    /// SVD rank, when the tables are factors A_k.
    rank: Option<usize>,
}

impl Layout {
    fn read(file: &str, set: &TensorSet, c: &Config) -> Result<Layout> {
        // Without tide.rows, float tables are read as they are stored (the first table's
        // type); every table must then match it.
        let stored = set
            .weights
            .get("tide.memory.0.rows")
            .map_or("f32", |w| match w.dtype() {
                DType::F16 => "f16",
                DType::BF16 => "bf16",
                _ => "f32",
            });
        let dtype = match meta_get(&set.meta, "tide.rows").unwrap_or(stored) {
            "f32" => DType::F32,
            "f16" => DType::F16,
            "bf16" => DType::BF16,
            "q8_0" => DType::Q8_0,
            "q4_1" => DType::Q4_1,
            other => {
                return Err(format_err(
                    file,
                    format!(
                        "metadata tide.rows = '{other}' is not one of f32, f16, bf16, q8_0, q4_1"
                    ),
                ))
            }
        };
        let normalized = match meta_get(&set.meta, "tide.normalized").unwrap_or("false") {
            "true" => true,
            "false" => false,
            other => {
                return Err(format_err(
                    file,
                    format!("metadata tide.normalized = '{other}' is not true or false"),
                ))
            }
        };
        let eps = match meta_get(&set.meta, "tide.eps") {
            Some(s) => {
                let e = s.trim().parse::<f32>().map_err(|_| {
                    format_err(file, format!("metadata tide.eps = '{s}' is not a number"))
                })?;
                // RMSNorm divides by sqrt(mean(x^2) + eps): NaN, 0 or negative gives NaN or
                // infinity for a zero row.
                if !(e.is_finite() && e > 0.0) {
                    return Err(format_err(
                        file,
                        format!("metadata tide.eps = '{s}' must be a finite number > 0"),
                    ));
                }
                e
            }
            None => c.eps,
        };
        let d = c.dim;
        let rank = meta_usize(file, set, "tide.svd_rank")?;
        if let Some(r) = rank.filter(|&r| r == 0 || r > d) {
            return Err(format_err(
                file,
                format!("metadata tide.svd_rank = {r} must be in 1..={d} (the model width)"),
            ));
        }
        if rank.is_none() {
            if let Some(n) = set.weights.keys().find(|n| n.ends_with(".basis")) {
                return Err(format_err(
                    file,
                    format!("holds '{n}' (an SVD basis) but no tide.svd_rank metadata"),
                ));
            }
        }
        Ok(Layout {
            dtype,
            normalized,
            eps,
            rank,
        })
    }

    /// The stored table's width: the model's, or with SVD the rank in whole blocks.
    fn width(&self, d: usize) -> usize {
        self.rank.map_or(d, svd_width)
    }
}

/// tide.k, checked against the tensors the set holds: None for a plain backbone.
fn read_k(file: &str, set: &TensorSet) -> Result<Option<usize>> {
    let has_tensors = set
        .weights
        .keys()
        .chain(set.raw.keys())
        .any(|n| n.starts_with("tide.memory.") || n.starts_with("tide.router."));
    let k = match meta_usize(file, set, "tide.k")? {
        None if !has_tensors => return Ok(None),
        None => {
            return Err(format_err(
                file,
                "has tide.* tensors but no 'tide.k' metadata",
            ))
        }
        Some(k) => k,
    };
    if k == 0 {
        // K = 0 means a plain backbone: tables or routers beside it would be dropped
        // silently, so they are refused.
        if has_tensors {
            return Err(format_err(
                file,
                "metadata tide.k = 0 but the file holds tide.memory.* or tide.router.* \
                 tensors: set tide.k to the number of memory blocks or remove them",
            ));
        }
        return Ok(None);
    }
    if k > MAX_K {
        return Err(format_err(
            file,
            format!("tide.k = {k} exceeds the supported maximum {MAX_K}"),
        ));
    }
    Ok(Some(k))
}

/// The memory's vocabulary and width, when its metadata states them, must be the backbone's.
fn check_backbone(file: &str, set: &TensorSet, c: &Config) -> Result<()> {
    for (key, want) in [("tide.vocab", c.vocab), ("tide.dim", c.dim)] {
        if let Some(got) = meta_usize(file, set, key)?.filter(|&g| g != want) {
            return Err(format_err(
                file,
                format!(
                    "memory {key} is {got} but the backbone's is {want}: this memory belongs to another model"
                ),
            ));
        }
    }
    Ok(())
}

/// The K tables, their SVD bases (none without SVD) and their gammas.
type Tables = (Vec<Weight>, Vec<Vec<f32>>, Vec<Vec<f32>>);

/// The K tables, their SVD bases and gammas, each checked (shape, type, finite values).
fn read_tables(file: &str, set: &TensorSet, c: &Config, k: usize, lay: &Layout) -> Result<Tables> {
    let (v, d, width) = (c.vocab, c.dim, lay.width(c.dim));
    let mut tables: Vec<Weight> = Vec::with_capacity(k);
    let mut basis = Vec::new();
    let mut gammas = Vec::with_capacity(k);
    for i in 0..k {
        let name = format!("tide.memory.{i}.rows");
        let w = table(file, set, &name, lay.dtype, v, width)?;
        if let Some(row) = first_non_finite(&w) {
            return Err(format_err(
                file,
                format!("tensor '{name}' holds a NaN or infinite value in row {row}"),
            ));
        }
        tables.push(w);
        if lay.rank.is_some() {
            let bname = format!("tide.memory.{i}.basis");
            basis.push(small_f32(set, file, &bname, &[width, d])?);
        }
        let gname = format!("tide.memory.{i}.gamma");
        gammas.push(if lay.normalized && !set.weights.contains_key(&gname) {
            vec![1.0; d]
        } else {
            small_f32(set, file, &gname, &[d])?
        });
    }
    let names = set.weights.keys().chain(set.raw.keys());
    if let Some(extra) = index_beyond(names, "tide.memory.", k) {
        return Err(format_err(
            file,
            format!("holds tables for block {extra} but tide.k = {k}"),
        ));
    }
    Ok((tables, basis, gammas))
}

/// Every layer's router W_r [K+1, dim]; a router for a layer the backbone lacks is refused.
fn read_routers(
    file: &str,
    set: &TensorSet,
    c: &Config,
    k: usize,
) -> Result<Vec<Option<Vec<f32>>>> {
    let routers = (0..c.n_layers)
        .map(|l| {
            let name = format!("tide.router.{l}.weight");
            small_f32(set, file, &name, &[k + 1, c.dim]).map(Some)
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(extra) = index_beyond(set.weights.keys(), "tide.router.", c.n_layers) {
        return Err(format_err(
            file,
            format!(
                "holds a router for layer {extra} but the backbone has {} layers",
                c.n_layers
            ),
        ));
    }
    Ok(routers)
}

impl TideMemory {
    /// The TIDE part of a tensor set, or None when it has none (a K = 0 model).
    pub fn from_set(file: &str, set: &TensorSet, c: &Config) -> Result<Option<TideMemory>> {
        let Some(k) = read_k(file, set)? else {
            return Ok(None);
        };
        check_backbone(file, set, c)?;
        let lay = Layout::read(file, set, c)?;
        let (tables, basis, gammas) = read_tables(file, set, c, k, &lay)?;
        let routers = read_routers(file, set, c, k)?;
        let width = lay.width(c.dim);
        Ok(Some(TideMemory {
            source: file.to_string(),
            k,
            normalized: lay.normalized,
            eps: lay.eps,
            tables,
            gammas,
            routers,
            svd: lay.rank.map(|rank| Svd {
                // Mixed or other float types go to the GPU as f32.
                basis_f16: (0..k).all(|i| {
                    set.weights
                        .get(&format!("tide.memory.{i}.basis"))
                        .is_some_and(|w| w.dtype() == DType::F16)
                }),
                rank,
                width,
                basis,
            }),
        }))
    }

    /// This memory with layer `l`'s injection removed (layer-wise ablation).
    pub fn without_layer(&self, l: usize) -> TideMemory {
        let mut m = self.clone();
        if let Some(r) = m.routers.get_mut(l) {
            *r = None;
        }
        m
    }

    /// Bytes of one token's K stored rows.
    pub fn row_bytes(&self) -> usize {
        self.tables[0]
            .dtype()
            .row_bytes(self.tables[0].cols())
            .unwrap_or(0)
    }
}

/// One stored table: float [V, d], or bytes [V, row_bytes] of a block-quantised type.
pub(crate) fn table(
    file: &str,
    set: &TensorSet,
    name: &str,
    dtype: DType,
    v: usize,
    d: usize,
) -> Result<Weight> {
    let rb = dtype.row_bytes(d).ok_or_else(|| {
        format_err(
            file,
            format!("width {d} is not a multiple of the {dtype:?} block of {name}"),
        )
    })?;
    if let Some(w) = set.weights.get(name) {
        if w.info.shape != [v, d] {
            return Err(Error::Shape {
                file: file.into(),
                tensor: name.into(),
                expected: vec![v, d],
                got: w.info.shape.clone(),
            });
        }
        // A float table of another float type would be read with the wrong row size.
        if w.dtype() != dtype {
            return Err(format_err(
                file,
                format!(
                    "tensor '{name}' is {:?} but tide.rows says {dtype:?}",
                    w.dtype()
                ),
            ));
        }
        return Ok(w.clone());
    }
    let r = set.raw.get(name).ok_or_else(|| Error::MissingTensor {
        file: file.into(),
        tensor: name.into(),
    })?;
    if r.dtype != "U8" {
        return Err(Error::UnsupportedType {
            file: file.into(),
            tensor: name.into(),
            ty: r.dtype.clone(),
        });
    }
    if r.shape != [v, rb] {
        return Err(Error::Shape {
            file: file.into(),
            tensor: format!("{name} ({dtype:?} rows of {d} values, {rb} bytes each)"),
            expected: vec![v, rb],
            got: r.shape.clone(),
        });
    }
    Ok(Weight {
        info: TensorInfo {
            name: name.into(),
            dtype,
            shape: vec![v, d],
            start: r.start,
            end: r.end,
        },
        blob: r.blob.clone(),
    })
}
