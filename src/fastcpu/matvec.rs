//! The matrix-vector product over a weight in its stored block type: each row's dot product
//! with the 8-bit vector, rows split among threads as the reference splits them.
use super::dot::{dot, supports, Path};
use super::q8::Q8Vec;
use crate::error::{Error, Result};
use crate::model::Weight;

/// out[r] = row r of `w` . x, for `w` [out.len(), 32 x.blocks()] in a type `supports` takes.
pub fn matvec(path: Path, out: &mut [f32], w: &Weight, x: &Q8Vec) -> Result<()> {
    let t = w.dtype();
    if !supports(t) {
        return Err(Error::Input(format!(
            "{}: the fast CPU kernels do not read {t:?}",
            w.info.name
        )));
    }
    if !path.available() {
        return Err(Error::Input(format!(
            "this CPU cannot run the {path:?} kernels"
        )));
    }
    let cols = x.blocks() * t.block_elems();
    if (w.rows(), w.cols()) != (out.len(), cols) {
        return Err(Error::Input(format!(
            "{}: a [{}, {}] weight times a vector of {cols} into {} outputs",
            w.info.name,
            w.rows(),
            w.cols(),
            out.len()
        )));
    }
    let rb = t.row_bytes(cols).unwrap_or(0);
    let bytes = w.bytes();
    crate::cpu::ops::par_rows(out, cols, &|r0, out: &mut [f32]| {
        for (i, o) in out.iter_mut().enumerate() {
            let r = r0 + i;
            // Checked above: the type is supported and the path available.
            *o = dot(path, t, &bytes[r * rb..(r + 1) * rb], x).unwrap_or(f32::NAN);
        }
    });
    Ok(())
}
