//! Products of a weight in its stored block type with one or several activation vectors: each
//! row's dot product with every vector, so that a batch reads the weight once. Rows are split
//! among the thread pool's threads (rayon). A type the fast kernels lack takes the reference's
//! way for that tensor: each row dequantised to f32, then an f32 dot product.
use rayon::prelude::*;

use super::dot::{dots_batch, supports, Path};
use super::q8::Q8Vec;
use crate::error::{Error, Result};
use crate::model::dtype::QK;
use crate::model::Weight;

/// out[r] = row r of `w` . x, for `w` [out.len(), x.f.len()].
pub fn matvec(path: Path, out: &mut [f32], w: &Weight, x: &Q8Vec) -> Result<()> {
    products(path, out, w, std::slice::from_ref(x))
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
    let n = xs.len();
    if n == 1 {
        return products(path, out, w, xs);
    }
    scratch.resize(out.len(), 0.0);
    products(path, scratch, w, xs)?;
    let rows = w.rows();
    for (r, col) in scratch.chunks_exact(n).enumerate() {
        for (i, &v) in col.iter().enumerate() {
            out[i * rows + r] = v;
        }
    }
    Ok(())
}

/// out[r * n + i] = row r . xs[i].
fn products(path: Path, out: &mut [f32], w: &Weight, xs: &[Q8Vec]) -> Result<()> {
    let t = w.dtype();
    let n = xs.len();
    if !path.available() {
        return Err(Error::Input(format!(
            "this CPU cannot run the {path:?} kernels"
        )));
    }
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
    let rb = t.row_bytes(cols).unwrap_or(0);
    let bytes = w.bytes();
    let fast = supports(t) && (!t.is_quantized() || xs.iter().all(|x| x.blocks() * QK == cols));
    // Tasks of at least 16 rows, about 8 per thread: enough to balance, few enough to be
    // cheap; a task's rows stay in cache while every vector of a batch passes over them.
    let per = (w.rows() / (8 * rayon::current_num_threads())).max(16);
    out.par_chunks_mut(per * n)
        .enumerate()
        .for_each(|(c, part)| {
            let (r0, cnt) = (c * per, part.len() / n);
            let stored = &bytes[r0 * rb..(r0 + cnt) * rb];
            // Checked above: the type is supported, the path available, the vectors whole
            // blocks of the rows' length; so `dots` runs.
            if fast && dots_batch(path, t, stored, xs, part) {
                return;
            }
            let mut row = vec![0f32; cols];
            for (j, o) in part.chunks_exact_mut(n).enumerate() {
                w.row_f32(r0 + j, &mut row);
                for (o, x) in o.iter_mut().zip(xs) {
                    *o = crate::cpu::ops::dot(&row, &x.f);
                }
            }
        });
    Ok(())
}
