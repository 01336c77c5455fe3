//! Stored rows' dot products with one activation vector, on the rows' blocks as stored.
//! Block formats meet the vector's 8-bit blocks (q8.rs): per 32 values an integer sum of
//! products, times the weight's and the vector's scales; offsets (Q4_0's 8, Q5_0's 16, Q6_K's
//! 32) are in the codes or taken off with the vector block's sum, mins (Q4_1, Q5_1, Q4_K, Q5_K)
//! times that sum. Float rows (F32, F16, BF16) meet the f32 vector. The portable path and the
//! SIMD paths compute the same integer sums; only the order of the f32 additions differs.
//! Here: the choice of path, the checks and the portable path; the SIMD paths are dot/avx2.rs
//! (x86-64, chosen at run time) and dot/simd128.rs (the browser build).
use half::{bf16, f16};

use super::q8::Q8Vec;
use crate::model::dtype::{k_codes, k_scale_min, DType, QK, QK_K};

/// Which code computes the dot products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Plain Rust, any CPU (and wasm32 until its simd128 path exists).
    Portable,
    /// x86-64 AVX2 + FMA (+ F16C for the scales).
    Avx2,
    /// wasm32 built with simd128 (every browser since 2021; the web build turns it on).
    Simd128,
}

impl Path {
    /// The fastest path this CPU has.
    pub fn best() -> Path {
        if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
            return Path::Simd128;
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            return Path::Avx2;
        }
        Path::Portable
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        self == Path::Portable || Path::best() == self
    }

    pub fn name(self) -> &'static str {
        match self {
            Path::Portable => "portable",
            Path::Avx2 => "AVX2",
            Path::Simd128 => "simd128",
        }
    }
}

/// The stored types these kernels read: all that the models store.
pub fn supports(t: DType) -> bool {
    matches!(
        t,
        DType::F32
            | DType::F16
            | DType::BF16
            | DType::Q8_0
            | DType::Q4_0
            | DType::Q4_1
            | DType::Q5_0
            | DType::Q5_1
            | DType::Q4_K
            | DType::Q5_K
            | DType::Q6_K
    )
}

/// The dot product of `row` (stored as `t`, as long as x) with `x`: `dots` for one row.
pub fn dot(path: Path, t: DType, row: &[u8], x: &Q8Vec) -> Option<f32> {
    let mut out = [0f32];
    dots(path, t, row, x, &mut out, 1).then_some(out[0])
}

/// out[j * stride] = row j of `rows` . x, for out.len() / stride rows (rounded up) stored
/// back to back as `t`, each as long as x. False (nothing written) for a type `supports`
/// refuses, a path this CPU lacks, or sizes that do not fit.
pub fn dots(path: Path, t: DType, rows: &[u8], x: &Q8Vec, out: &mut [f32], stride: usize) -> bool {
    let n = out.len().div_ceil(stride.max(1));
    if stride == 0 || !path.available() || !check(t, rows, x, n) {
        return false;
    }
    let rb = t.row_bytes(x.f.len()).unwrap_or(0);
    match path {
        Path::Portable => {
            for (j, row) in rows.chunks_exact(rb).enumerate() {
                out[j * stride] = portable(t, row, x);
            }
        }
        // SAFETY: `available` checked that the CPU has AVX2, FMA and F16C, and the rows'
        // lengths were checked against the vector's.
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => unsafe { avx2::dots(t, rows, rb, x, out, stride) },
        #[cfg(not(target_arch = "x86_64"))]
        Path::Avx2 => unreachable!("AVX2 is never available off x86-64"),
        // SAFETY: the module was built with simd128 (`available`); lengths checked above.
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Path::Simd128 => unsafe { simd128::dots(t, rows, rb, x, out, stride) },
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        Path::Simd128 => unreachable!("simd128 is only available in a wasm32 build with it"),
    }
    true
}

/// out[j * xs.len() + i] = row j of `rows` . xs[i], for every row (out.len() / xs.len() of
/// them, stored back to back as `t`, each as long as the vectors): a batch's products, each
/// row decoded once for several vectors where the path can. False (nothing written) as for
/// `dots`.
pub fn dots_batch(path: Path, t: DType, rows: &[u8], xs: &[Q8Vec], out: &mut [f32]) -> bool {
    let n = xs.len();
    let same = xs.iter().all(|x| x.f.len() == xs[0].f.len());
    if n == 0 || !same || out.len() % n != 0 {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if path == Path::Avx2 && n > 1 && avx2::batched(t) {
        // The checks `dots` makes, on the first vector (the others are as long).
        let blocks = xs.iter().all(|x| {
            x.blocks() == xs[0].blocks() && x.sums.len() == x.blocks() && x.ds.len() == x.blocks()
        });
        if !path.available() || !blocks || !check(t, rows, &xs[0], out.len() / n) {
            return false;
        }
        // SAFETY: as for `dots`, checked just above for every vector.
        unsafe { avx2::dots_batch(t, rows, xs, out) };
        return true;
    }
    (0..n).all(|i| dots(path, t, rows, &xs[i], &mut out[i..], n))
}

/// Whether `rows` holds `n` rows of `t` as long as `x`, and `x` has its blocks.
fn check(t: DType, rows: &[u8], x: &Q8Vec, n: usize) -> bool {
    let rb = t.row_bytes(x.f.len());
    let blocks_ok = !t.is_quantized()
        || (x.blocks() * QK == x.f.len() && x.sums.len() == x.blocks() && x.ds.len() == x.blocks());
    supports(t) && rb.is_some_and(|rb| rows.len() == n * rb) && blocks_ok && n > 0
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// One row, plain Rust.
fn portable(t: DType, row: &[u8], x: &Q8Vec) -> f32 {
    match t {
        DType::F32 => row
            .chunks_exact(4)
            .zip(&x.f)
            .map(|(b, v)| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * v)
            .sum(),
        DType::F16 => row
            .chunks_exact(2)
            .zip(&x.f)
            .map(|(b, v)| f16::from_le_bytes([b[0], b[1]]).to_f32() * v)
            .sum(),
        DType::BF16 => row
            .chunks_exact(2)
            .zip(&x.f)
            .map(|(b, v)| bf16::from_le_bytes([b[0], b[1]]).to_f32() * v)
            .sum(),
        DType::Q4_K | DType::Q5_K | DType::Q6_K => {
            let bb = t.block_bytes();
            let per = QK_K / QK;
            row.chunks_exact(bb)
                .enumerate()
                .map(|(sb, blk)| {
                    (0..per)
                        .map(|s| k_sub(t, blk, s, x, sb * per + s))
                        .sum::<f32>()
                })
                .sum()
        }
        _ => row
            .chunks_exact(t.block_bytes())
            .enumerate()
            .map(|(b, blk)| small_block(t, blk, x, b))
            .sum(),
    }
}

/// One 32-value block of Q8_0, Q4_0, Q4_1, Q5_0 or Q5_1 against vector block `b`.
fn small_block(t: DType, blk: &[u8], x: &Q8Vec, b: usize) -> f32 {
    let q = &x.qs[b * QK..(b + 1) * QK];
    let (dx, sum) = (x.d[b], x.sums[b]);
    let prod = |codes: &mut dyn Iterator<Item = i32>| -> i32 {
        codes.zip(q).map(|(c, &v)| c * v as i32).sum()
    };
    let d = f16_at(blk, 0);
    match t {
        DType::Q8_0 => d * dx * prod(&mut blk[2..34].iter().map(|&w| w as i8 as i32)) as f32,
        DType::Q4_0 => d * dx * (prod(&mut nibbles(&blk[2..18])) - 8 * sum) as f32,
        DType::Q4_1 => {
            d * dx * prod(&mut nibbles(&blk[4..20])) as f32 + f16_at(blk, 2) * dx * sum as f32
        }
        DType::Q5_0 => d * dx * (prod(&mut five_bits(&blk[2..22])) - 16 * sum) as f32,
        _ => d * dx * prod(&mut five_bits(&blk[4..24])) as f32 + f16_at(blk, 2) * dx * sum as f32,
    }
}

/// A Q4 block's 16 bytes as its 32 codes in order: low nibbles, then high ones.
fn nibbles(qs: &[u8]) -> impl Iterator<Item = i32> + '_ {
    (0..32).map(|j| (if j < 16 { qs[j] & 15 } else { qs[j - 16] >> 4 }) as i32)
}

/// A Q5 block's 4 bytes of fifth bits (bit j: code j) and 16 bytes of nibbles as its codes.
fn five_bits(b: &[u8]) -> impl Iterator<Item = i32> + '_ {
    let qh = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    nibbles(&b[4..20])
        .enumerate()
        .map(move |(j, c)| c | (((qh >> j) & 1) << 4) as i32)
}

/// Sub-block `s` (32 values) of a K-quant super-block against vector block `b`.
fn k_sub(t: DType, blk: &[u8], s: usize, x: &Q8Vec, b: usize) -> f32 {
    let q = &x.qs[b * QK..(b + 1) * QK];
    let codes = k_codes(t, blk, s);
    let dx = x.d[b];
    if t == DType::Q6_K {
        // Codes less 32, one i8 scale per 16 values.
        let half = |h: usize| -> i32 {
            (16 * h..16 * h + 16)
                .map(|l| (codes[l] as i32 - 32) * q[l] as i32)
                .sum()
        };
        let sc = |i: usize| blk[192 + 2 * s + i] as i8 as i32;
        return f16_at(blk, 208) * dx * (sc(0) * half(0) + sc(1) * half(1)) as f32;
    }
    let (sc, m) = k_scale_min(blk[4..16].try_into().unwrap(), s);
    let p: i32 = codes
        .iter()
        .zip(q)
        .map(|(&c, &v)| c as i32 * v as i32)
        .sum();
    dx * (f16_at(blk, 0) * sc as f32 * p as f32 - f16_at(blk, 2) * m as f32 * x.sums[b] as f32)
}

#[cfg(target_arch = "x86_64")]
mod avx2;

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
