//! A token's memory rows: M_k(v) = RMSNorm(E_k[v]) * gamma_k on the host (the CPU reference),
//! and the raw stored rows the GPU gather kernel decodes (streamed per step, so the tables stay
//! in host memory, the memory-mapped file or a remote one). Both read through the row store.
use super::store::RowStore;
use crate::error::Result;
use crate::model::dtype::dequantize;
use crate::model::TideMemory;

/// The K block outputs of token `v`, [K * dim], f32. With SVD tables the row is first rebuilt
/// as A_k[v] B_k, in f32 as the kernel does.
pub fn block_rows(m: &TideMemory, rows: &RowStore, v: u32, out: &mut [f32]) -> Result<()> {
    let d = m.gammas[0].len();
    let dtype = m.tables[0].dtype();
    let mut raw = Vec::new();
    rows.gather(&[v], &mut raw)?;
    let rb = raw.len() / m.k;
    let mut a = Vec::new();
    for (k, (stored, g)) in raw.chunks_exact(rb).zip(&m.gammas).enumerate() {
        let o = &mut out[k * d..(k + 1) * d];
        match &m.svd {
            None => dequantize(dtype, stored, o),
            Some(s) => {
                a.resize(s.width, 0.0);
                dequantize(dtype, stored, &mut a);
                rebuild(&a, &s.basis[k], o);
            }
        }
        if m.normalized {
            continue;
        }
        let ms = o.iter().map(|x| x * x).sum::<f32>() / d as f32;
        let r = 1.0 / (ms + m.eps).sqrt();
        for (x, gi) in o.iter_mut().zip(g) {
            *x *= r * gi;
        }
    }
    Ok(())
}

/// An SVD block's row from its coefficients: out = a B, with B [a.len(), out.len()] row-major,
/// summed in f32 in the kernel's order.
pub fn rebuild(a: &[f32], basis: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for (ai, b) in a.iter().zip(basis.chunks_exact(out.len())) {
        for (x, bj) in out.iter_mut().zip(b) {
            *x += ai * bj;
        }
    }
}
