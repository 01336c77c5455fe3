//! Products of weights in their stored block types with one or several activation vectors:
//! each row's dot product with every vector, so that a batch reads the weight once. Rows are
//! split among the thread pool's threads (rayon); several weights that read the same vectors
//! (q, k and v; gate and up) share one parallel region, since waking the threads costs more
//! than a small matrix does in the browser's workers. A type the fast kernels lack takes the
//! reference's way for that tensor: each row dequantised to f32, then an f32 dot product.
use rayon::prelude::*;

use super::dot::{dots_batch, supports, Path};
use super::q8::Q8Vec;
use crate::error::{Error, Result};
use crate::model::dtype::QK;
use crate::model::Weight;

/// out[r] = row r of `w` . x, for `w` [out.len(), x.f.len()].
pub fn matvec(path: Path, out: &mut [f32], w: &Weight, x: &Q8Vec) -> Result<()> {
    let mut outs = [out];
    products(path, &mut outs, &[w], std::slice::from_ref(x))
}

/// out[i, r] = row r of `w` . xs[i] ([xs.len(), rows] row-major); `scratch` holds the
/// products row-major by weight row on the way.
pub fn matmul(
    path: Path,
    out: &mut [f32],
    w: &Weight,
    xs: &[Q8Vec],
    scratch: &mut Vec<f32>,
) -> Result<()> {
    matmuls(path, &mut [out], &[w], xs, &mut [scratch])
}

/// `matmul` of each weight of `ws` into the matching `outs`, in one parallel region.
/// `scratch` holds a buffer for each (used for batches of more than one vector).
pub fn matmuls(
    path: Path,
    outs: &mut [&mut [f32]],
    ws: &[&Weight],
    xs: &[Q8Vec],
    scratch: &mut [&mut Vec<f32>],
) -> Result<()> {
    let n = xs.len();
    if n == 1 {
        return products(path, outs, ws, xs);
    }
    let mut by_row: Vec<&mut [f32]> = Vec::with_capacity(ws.len());
    for (s, o) in scratch.iter_mut().zip(outs.iter()) {
        s.resize(o.len(), 0.0);
        by_row.push(&mut s[..]);
    }
    products(path, &mut by_row, ws, xs)?;
    for ((o, s), w) in outs.iter_mut().zip(by_row).zip(ws) {
        let rows = w.rows();
        for (r, col) in s.chunks_exact(n).enumerate() {
            for (i, &v) in col.iter().enumerate() {
                o[i * rows + r] = v;
            }
        }
    }
    Ok(())
}

/// outs[k][r * n + i] = row r of ws[k] . xs[i].
fn products(path: Path, outs: &mut [&mut [f32]], ws: &[&Weight], xs: &[Q8Vec]) -> Result<()> {
    let n = xs.len();
    if !path.available() {
        return Err(Error::Input(format!(
            "this CPU cannot run the {path:?} kernels"
        )));
    }
    if outs.len() != ws.len() || n == 0 {
        return Err(Error::Input(format!(
            "{} weights into {} outputs for {n} vectors",
            ws.len(),
            outs.len()
        )));
    }
    for (w, out) in ws.iter().zip(outs.iter()) {
        let cols = w.cols();
        let bad = xs.iter().find(|x| x.f.len() != cols);
        if bad.is_some() || out.len() != w.rows() * n {
            return Err(Error::Input(format!(
                "{}: a [{}, {cols}] weight times {n} vectors of {} into {} outputs",
                w.info.name,
                w.rows(),
                bad.unwrap_or(&xs[0]).f.len(),
                out.len()
            )));
        }
    }
    // Tasks of at least 16 rows, about 8 per thread over all the weights: enough to balance,
    // few enough to be cheap; a task's rows stay in cache while every vector of a batch
    // passes over them. (2 per thread in the browser measured no faster.)
    let rows: usize = ws.iter().map(|w| w.rows()).sum();
    let per = (rows / (8 * rayon::current_num_threads())).max(16);
    let mut tasks: Vec<(&Weight, usize, &mut [f32])> = Vec::new();
    for (w, out) in ws.iter().zip(outs.iter_mut()) {
        for (c, part) in out.chunks_mut(per * n).enumerate() {
            tasks.push((w, c * per, part));
        }
    }
    tasks
        .into_par_iter()
        .for_each(|(w, r0, part)| rows_of(path, w, r0, part, xs));
    Ok(())
}

/// part[j * n + i] = row r0 + j of `w` . xs[i], for the rows `part` holds.
fn rows_of(path: Path, w: &Weight, r0: usize, part: &mut [f32], xs: &[Q8Vec]) {
    let (t, n, cols) = (w.dtype(), xs.len(), w.cols());
    let cnt = part.len() / n;
    let stored = w.row_bytes(r0..r0 + cnt);
    let fast = supports(t) && (!t.is_quantized() || xs.iter().all(|x| x.blocks() * QK == cols));
    // Checked by the caller: the path available, the vectors as long as the rows; so for a
    // supported type `dots_batch` runs.
    if fast && dots_batch(path, t, &stored, xs, part) {
        return;
    }
    let mut row = vec![0f32; cols];
    for (j, o) in part.chunks_exact_mut(n).enumerate() {
        w.row_f32(r0 + j, &mut row);
        for (o, x) in o.iter_mut().zip(xs) {
            *o = crate::cpu::ops::dot(&row, &x.f);
        }
    }
}
