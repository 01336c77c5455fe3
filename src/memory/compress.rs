//! `tide compress`: re-encode a model's memory tables group-wise (q4_1, q8_0, f16) and
//! optionally factor each block by truncated SVD, E_k ~ A_k B_k (docs/format.md).
//!
//! The SVD comes from the d x d Gram matrix G = E^T E (accumulated in f64 over row chunks):
//! its eigenvectors V are E's right singular vectors, so A = E V_r and B = V_r^T give the best
//! rank-r approximation (Eckart-Young) without ever holding a V x V matrix. Errors are measured
//! against the source rows on the decoded result, exactly as the runtime will rebuild it.
use nalgebra::{DMatrix, SymmetricEigen};

use crate::error::{Error, Result};
use crate::model::dtype::{quantize, DType};
use crate::model::tide::svd_width;
use crate::model::TideMemory;

/// Rows handled per matrix product: bounds the f64 scratch to chunk x d.
const CHUNK: usize = 2048;

/// How many singular directions each block keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RankRule {
    /// Exactly r (1..=d).
    Rank(usize),
    /// ceil(f * d) for f in (0, 1]: `--svd-ratio 0.5` keeps half the rank.
    Ratio(f64),
    /// The fewest directions whose squared singular values reach this share of the total.
    Energy(f64),
}

#[derive(Debug, Clone)]
pub struct CompressOptions {
    /// Row encoding of the output tables (or of A_k with SVD).
    pub dtype: DType,
    pub svd: Option<RankRule>,
    /// With SVD: store the bases B_k in f16 (half the file's and the GPU's bytes for them;
    /// they are unit vectors, so f16's 11 bits cost far less than 4-bit rows do) rather than
    /// f32.
    pub basis_f16: bool,
}

/// What one block became.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BlockReport {
    pub block: usize,
    /// Rank kept (d when there is no SVD).
    pub rank: usize,
    /// ||E - E V_r V_r^T||_F / ||E||_F: the truncation alone (0 without SVD).
    pub svd_rel_error: f64,
    /// ||E - decode(stored)||_F / ||E||_F: what the runtime will see, quantisation included.
    pub rel_error: f64,
}

/// The compressed memory: tensors ready to write, and the report.
pub struct Compressed {
    /// Per block: the stored rows (E_k or A_k) in `dtype`'s bytes, [V, width].
    pub tables: Vec<Vec<u8>>,
    /// Per block with SVD: B_k, [width, d], as f32 (values of f16 with `basis_f16`).
    pub basis: Vec<Vec<f32>>,
    /// The bases are written in f16.
    pub basis_f16: bool,
    pub width: usize,
    /// The largest rank kept: every block is stored at this width (one row size for the
    /// gather), smaller ranks padded with zeros.
    pub rank: Option<usize>,
    pub blocks: Vec<BlockReport>,
    /// Bytes of the tables (+ bases) before and after.
    pub bytes_before: usize,
    pub bytes_after: usize,
}

/// Row `v` of block `k` as the runtime reads it before the norm (E_k[v], or A_k[v] B_k).
fn source_row(m: &TideMemory, k: usize, v: usize, a: &mut Vec<f32>, out: &mut [f32]) {
    let t = &m.tables[k];
    match &m.svd {
        None => t.row_f32(v, out),
        Some(s) => {
            a.resize(s.width, 0.0);
            t.row_f32(v, a);
            super::rebuild(a, &s.basis[k], out);
        }
    }
}

fn rows_f64(m: &TideMemory, k: usize, r0: usize, n: usize, d: usize) -> DMatrix<f64> {
    let (mut a, mut row) = (Vec::new(), vec![0f32; d]);
    let mut e = DMatrix::<f64>::zeros(n, d);
    for i in 0..n {
        source_row(m, k, r0 + i, &mut a, &mut row);
        for (j, x) in row.iter().enumerate() {
            e[(i, j)] = *x as f64;
        }
    }
    e
}

/// The rank a rule asks for, given the Gram eigenvalues sorted descending.
fn pick_rank(rule: RankRule, eig: &[f64], d: usize) -> Result<usize> {
    let r = match rule {
        RankRule::Rank(r) => {
            if r == 0 || r > d {
                return Err(Error::Input(format!(
                    "--svd-rank {r} must be in 1..={d} (the model width)"
                )));
            }
            r
        }
        RankRule::Ratio(f) => {
            if !(f > 0.0 && f <= 1.0) {
                return Err(Error::Input(format!(
                    "--svd-ratio {f} must be in (0, 1]: the share of the rank kept"
                )));
            }
            ((f * d as f64).ceil() as usize).clamp(1, d)
        }
        RankRule::Energy(e) => {
            if !(e > 0.0 && e <= 1.0) {
                return Err(Error::Input(format!(
                    "--svd-energy {e} must be in (0, 1]: the share of squared singular values kept"
                )));
            }
            let total: f64 = eig.iter().map(|x| x.max(0.0)).sum();
            let mut acc = 0.0;
            let mut r = d;
            for (i, x) in eig.iter().enumerate() {
                acc += x.max(0.0);
                if acc >= e * total * (1.0 - 1e-12) {
                    r = i + 1;
                    break;
                }
            }
            r
        }
    };
    Ok(r)
}

/// Right singular vectors of block k (columns of V, by descending singular value) and the
/// eigenvalues of E^T E (squared singular values).
fn right_singular(
    m: &TideMemory,
    k: usize,
    d: usize,
    progress: &mut dyn FnMut(u64),
) -> (DMatrix<f64>, Vec<f64>) {
    let v = m.tables[k].rows();
    let mut g = DMatrix::<f64>::zeros(d, d);
    for r0 in (0..v).step_by(CHUNK) {
        let n = CHUNK.min(v - r0);
        let e = rows_f64(m, k, r0, n, d);
        g.gemm_tr(1.0, &e, &e, 1.0);
        progress(n as u64);
    }
    let eig = SymmetricEigen::new(g);
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let vecs = DMatrix::from_fn(d, d, |i, j| eig.eigenvectors[(i, order[j])]);
    let vals = order.iter().map(|&i| eig.eigenvalues[i]).collect();
    (vecs, vals)
}

/// Compress every block of `m`. `progress` is told how many rows each pass finished; the
/// total is `progress_total(m, opts)`.
pub fn compress(
    m: &TideMemory,
    opts: &CompressOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Compressed> {
    let d = m.gammas[0].len();
    if !super::stores::tables_here(m) {
        return Err(Error::Input(format!(
            "{}: tide compress reads a local memory file, not a remote one",
            m.source
        )));
    }
    if !crate::model::dtype::QUANTIZE_TYPES.contains(&opts.dtype) {
        return Err(Error::Input(format!(
            "cannot write memory rows as {:?}: use f32, f16, q8_0 or q4_1",
            opts.dtype
        )));
    }
    let before = m.tables.iter().map(|t| t.bytes().len()).sum::<usize>()
        + m.svd.as_ref().map_or(0, |s| {
            let per = if s.basis_f16 { 2 } else { 4 };
            s.basis.iter().map(|b| b.len() * per).sum()
        });
    // Pass 1 (SVD only): each block's basis, then one rank for all (the largest asked).
    let mut factors = Vec::new();
    if let Some(rule) = opts.svd {
        for k in 0..m.k {
            let (vecs, vals) = right_singular(m, k, d, progress);
            let r = pick_rank(rule, &vals, d)?;
            factors.push((vecs, vals, r));
        }
    }
    let rank = factors.iter().map(|f| f.2).max();
    let width = rank.map_or(d, svd_width);
    let mut out = Compressed {
        tables: Vec::new(),
        basis: Vec::new(),
        basis_f16: opts.basis_f16,
        width,
        rank,
        blocks: Vec::new(),
        bytes_before: before,
        bytes_after: 0,
    };
    // Pass 2: the stored rows, and the error of their decoded reconstruction.
    for k in 0..m.k {
        let v = m.tables[k].rows();
        let mut bytes = Vec::with_capacity(opts.dtype.row_bytes(width).unwrap_or(0) * v);
        let (mut num, mut den) = (0f64, 0f64);
        let f = factors.get(k);
        // B = V_r^T padded to `width` rows, as stored (f32, or f16's values).
        let basis: Option<Vec<f32>> = f.map(|(vecs, _, rk)| {
            let mut b = vec![0f32; width * d];
            for i in 0..*rk {
                for j in 0..d {
                    let x = vecs[(j, i)] as f32;
                    b[i * d + j] = if opts.basis_f16 {
                        half::f16::from_f32(x).to_f32()
                    } else {
                        x
                    };
                }
            }
            b
        });
        let basis_bytes = if opts.basis_f16 { 2 } else { 4 };
        let mut dec = vec![0f32; width];
        let mut rec = vec![0f32; d];
        let mut vals = Vec::with_capacity(width);
        for r0 in (0..v).step_by(CHUNK) {
            let n = CHUNK.min(v - r0);
            let e = rows_f64(m, k, r0, n, d);
            let a = f.map(|(vecs, _, rk)| &e * vecs.columns(0, *rk));
            for i in 0..n {
                vals.clear();
                match &a {
                    None => vals.extend((0..d).map(|j| e[(i, j)] as f32)),
                    Some(a) => {
                        vals.extend((0..a.ncols()).map(|j| a[(i, j)] as f32));
                        vals.resize(width, 0.0);
                    }
                }
                let start = bytes.len();
                quantize(opts.dtype, &vals, &mut bytes);
                crate::model::dtype::dequantize(opts.dtype, &bytes[start..], &mut dec);
                match &basis {
                    None => rec.copy_from_slice(&dec),
                    Some(b) => super::rebuild(&dec, b, &mut rec),
                }
                for (j, x) in rec.iter().enumerate() {
                    let s = e[(i, j)];
                    num += (s - *x as f64).powi(2);
                    den += s * s;
                }
            }
            progress(n as u64);
        }
        let den = den.max(f64::MIN_POSITIVE);
        let svd_rel_error = f.map_or(0.0, |(_, vals, r)| {
            let total: f64 = vals.iter().map(|x| x.max(0.0)).sum();
            let tail: f64 = vals[*r..].iter().map(|x| x.max(0.0)).sum();
            (tail / total.max(f64::MIN_POSITIVE)).sqrt()
        });
        out.blocks.push(BlockReport {
            block: k,
            rank: f.map_or(d, |x| x.2),
            svd_rel_error,
            rel_error: (num / den).sqrt(),
        });
        out.bytes_after += bytes.len() + basis.as_ref().map_or(0, |b| b.len() * basis_bytes);
        out.tables.push(bytes);
        out.basis.extend(basis);
    }
    Ok(out)
}

/// Rows the progress callback will count in all.
pub fn progress_total(m: &TideMemory, opts: &CompressOptions) -> u64 {
    let rows: usize = m.tables.iter().map(|t| t.rows()).sum();
    rows as u64 * if opts.svd.is_some() { 2 } else { 1 }
}

fn st_err(path: &std::path::Path, e: safetensors::SafeTensorError) -> Error {
    Error::Format {
        file: path.display().to_string(),
        msg: format!("writing safetensors: {e}"),
    }
}

/// `tide.rows` name of a row type.
pub fn rows_name(dtype: DType) -> String {
    dtype.name().to_lowercase()
}

/// Write the compressed memory as a memory file (docs/format.md): the tables, the SVD bases,
/// the gammas and routers of `m`, and the token counts when the model has them.
pub fn write_memory_file(
    m: &TideMemory,
    c: &Compressed,
    dtype: DType,
    token_counts: Option<&[u64]>,
    path: &std::path::Path,
) -> Result<()> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype as St;
    let d = m.gammas[0].len();
    let f32_bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    // (name, dtype, shape, bytes)
    let mut owned: Vec<(String, St, Vec<usize>, Vec<u8>)> = Vec::new();
    for (k, rows) in c.tables.iter().enumerate() {
        let v = m.tables[k].rows();
        let (st, shape) = match dtype {
            DType::F32 => (St::F32, vec![v, c.width]),
            DType::F16 => (St::F16, vec![v, c.width]),
            _ => (St::U8, vec![v, rows.len() / v.max(1)]),
        };
        owned.push((format!("tide.memory.{k}.rows"), st, shape, rows.clone()));
        owned.push((
            format!("tide.memory.{k}.gamma"),
            St::F32,
            vec![d],
            f32_bytes(&m.gammas[k]),
        ));
    }
    for (k, b) in c.basis.iter().enumerate() {
        let (st, bytes) = if c.basis_f16 {
            let h: Vec<u8> = b
                .iter()
                .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                .collect();
            (St::F16, h)
        } else {
            (St::F32, f32_bytes(b))
        };
        owned.push((
            format!("tide.memory.{k}.basis"),
            st,
            vec![c.width, d],
            bytes,
        ));
    }
    for (l, r) in m.routers.iter().enumerate() {
        if let Some(r) = r {
            owned.push((
                format!("tide.router.{l}.weight"),
                St::F32,
                vec![m.k + 1, d],
                f32_bytes(r),
            ));
        }
    }
    if let Some(tc) = token_counts {
        let b = tc.iter().flat_map(|x| x.to_le_bytes()).collect();
        owned.push(("tide.token_counts".into(), St::U64, vec![tc.len()], b));
    }
    let mut views = Vec::with_capacity(owned.len());
    for (name, st, shape, bytes) in &owned {
        let view = TensorView::new(*st, shape.clone(), bytes).map_err(|e| st_err(path, e))?;
        views.push((name.clone(), view));
    }
    let mut meta = std::collections::HashMap::new();
    meta.insert("tide.k".to_string(), m.k.to_string());
    meta.insert("tide.rows".to_string(), rows_name(dtype).to_string());
    meta.insert("tide.normalized".to_string(), m.normalized.to_string());
    meta.insert("tide.eps".to_string(), format!("{:e}", m.eps));
    meta.insert("tide.vocab".to_string(), m.tables[0].rows().to_string());
    meta.insert("tide.dim".to_string(), d.to_string());
    if let Some(r) = c.rank {
        meta.insert("tide.svd_rank".to_string(), r.to_string());
    }
    safetensors::serialize_to_file(views, Some(meta), path).map_err(|e| st_err(path, e))
}

/// A .safetensors file's tensors and metadata without the tide.* ones (the backbone of a
/// model whose memory moves to its own file), written to `out`. Returns how many it kept.
pub fn write_without_memory(name: &str, bytes: &[u8], out: &std::path::Path) -> Result<usize> {
    let bad = |e: safetensors::SafeTensorError| Error::Format {
        file: name.to_string(),
        msg: format!("not a valid safetensors file: {e}"),
    };
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(bad)?;
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(bad)?;
    let all = st.tensors();
    let keep: Vec<_> = all
        .into_iter()
        .filter(|(n, _)| !n.starts_with("tide."))
        .collect();
    let kept = keep.len();
    let meta = header.metadata().as_ref().map(|m| {
        m.iter()
            .filter(|(k, _)| !k.starts_with("tide."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    });
    safetensors::serialize_to_file(keep, meta, out).map_err(|e| st_err(out, e))?;
    Ok(kept)
}
