//! A stored row's dot product with an 8-bit vector, on the row's blocks as stored: per block an
//! integer sum of products, times the weight's and the vector's scales (plus, for Q4_1, its
//! min times the vector block's sum; Q4_0's offset of 8 is taken off the same way). The
//! portable path and the AVX2 path compute the same integer sums; only the order of the final
//! f32 additions differs.
use half::f16;

use super::q8::Q8Vec;
use crate::model::dtype::{DType, QK};

/// Which code computes the dot products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Plain Rust, any CPU (and wasm32 until its simd128 path exists).
    Portable,
    /// x86-64 AVX2 + FMA (+ F16C for the scales).
    Avx2,
}

impl Path {
    /// The fastest path this CPU has.
    pub fn best() -> Path {
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
        self == Path::Portable || Path::best() == Path::Avx2
    }
}

/// The stored types these kernels read.
pub fn supports(t: DType) -> bool {
    matches!(t, DType::Q4_0 | DType::Q4_1 | DType::Q8_0)
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// The dot product of `row` (stored as `t`, x.blocks() blocks) with `x`. None for a type
/// `supports` refuses, a path this CPU lacks, or a row that is not x.blocks() blocks long.
pub fn dot(path: Path, t: DType, row: &[u8], x: &Q8Vec) -> Option<f32> {
    let n = x.blocks();
    let whole = row.len() == n * t.block_bytes() && x.qs.len() == n * QK && x.sums.len() == n;
    if !supports(t) || !path.available() || !whole {
        return None;
    }
    Some(match path {
        Path::Portable => portable(t, row, x),
        // SAFETY: `available` checked that the CPU has AVX2, FMA and F16C, and the row's
        // length was checked against the vector's blocks.
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => unsafe { avx2::dot(t, row, x) },
        #[cfg(not(target_arch = "x86_64"))]
        Path::Avx2 => unreachable!("AVX2 is never available off x86-64"),
    })
}

/// Per block: the integer sum of the values' products (Q4 values 0..15, before any offset).
fn portable(t: DType, row: &[u8], x: &Q8Vec) -> f32 {
    let bb = t.block_bytes();
    let mut acc = 0f32;
    for (b, blk) in row.chunks_exact(bb).enumerate() {
        let q = &x.qs[b * QK..(b + 1) * QK];
        let dx = x.d[b];
        acc += match t {
            DType::Q8_0 => {
                let s: i32 = blk[2..]
                    .iter()
                    .zip(q)
                    .map(|(&w, &v)| w as i8 as i32 * v as i32)
                    .sum();
                f16_at(blk, 0) * dx * s as f32
            }
            DType::Q4_0 => {
                let s = nibble_sum(&blk[2..18], q) - 8 * x.sums[b];
                f16_at(blk, 0) * dx * s as f32
            }
            _ => {
                let s = nibble_sum(&blk[4..20], q);
                f16_at(blk, 0) * dx * s as f32 + f16_at(blk, 2) * dx * x.sums[b] as f32
            }
        };
    }
    acc
}

/// Byte j holds value j in its low nibble and value j + 16 in its high one.
fn nibble_sum(qs: &[u8], q: &[i8]) -> i32 {
    qs.iter()
        .enumerate()
        .map(|(j, &b)| (b & 0x0f) as i32 * q[j] as i32 + (b >> 4) as i32 * q[j + 16] as i32)
        .sum()
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::Q8Vec;
    use crate::model::dtype::{DType, QK};

    /// The 32 products of unsigned bytes `a` and signed bytes `b`, summed in pairs and then in
    /// fours: 8 i32 lanes, as f32. No overflow: |a b| <= 128 * 127, two of them fit an i16.
    #[target_feature(enable = "avx2")]
    unsafe fn mul_sum_u8_i8(a: __m256i, b: __m256i) -> __m256 {
        let pairs = _mm256_maddubs_epi16(a, b);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// The 32 products of signed bytes: |a| times b with a's sign moved onto b.
    #[target_feature(enable = "avx2")]
    unsafe fn mul_sum_i8(a: __m256i, b: __m256i) -> __m256 {
        mul_sum_u8_i8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a))
    }

    /// A Q4 block's 16 bytes as 32 values 0..15, in order (low nibbles first).
    #[target_feature(enable = "avx2")]
    unsafe fn nibbles(p: *const u8) -> __m256i {
        let raw = _mm_loadu_si128(p as *const __m128i);
        let m = _mm_set1_epi8(0x0f);
        let lo = _mm_and_si128(raw, m);
        let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m);
        _mm256_set_m128i(hi, lo)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// The f16 at `p` (unaligned) as f32, by the CPU's F16C.
    #[target_feature(enable = "f16c")]
    unsafe fn f16(p: *const u8) -> f32 {
        let h = u16::from_le_bytes([*p, *p.add(1)]);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
    }

    /// SAFETY: the caller has checked AVX2, FMA and F16C; `row` holds x.blocks() blocks of
    /// `t` (and x.qs, x.d, x.sums as many blocks).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot(t: DType, row: &[u8], x: &Q8Vec) -> f32 {
        match t {
            DType::Q8_0 => blocks(row, x, 34, |blk, q| {
                (
                    mul_sum_i8(_mm256_loadu_si256(blk.add(2) as *const __m256i), q),
                    0.0,
                )
            }),
            // Q4_0's values are the nibbles less 8: signed bytes.
            DType::Q4_0 => blocks(row, x, 18, |blk, q| {
                let w = _mm256_sub_epi8(nibbles(blk.add(2)), _mm256_set1_epi8(8));
                (mul_sum_i8(w, q), 0.0)
            }),
            // Q4_1: the nibbles as they are, plus the min times the vector block's sum.
            _ => blocks(row, x, 20, |blk, q| {
                (mul_sum_u8_i8(nibbles(blk.add(4)), q), f16(blk.add(2)))
            }),
        }
    }

    /// The loop over a row's blocks of `bb` bytes: `block` gives the 8 lanes of a block's
    /// integer products and its min (0 but for Q4_1). Two running sums each, even and odd
    /// blocks: one would be a chain of dependent adds, the loop's bottleneck.
    #[inline(always)]
    unsafe fn blocks(
        row: &[u8],
        x: &Q8Vec,
        bb: usize,
        block: impl Fn(*const u8, __m256i) -> (__m256, f32),
    ) -> f32 {
        let (rp, qp) = (row.as_ptr(), x.qs.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut off = [0f32; 2];
        for b in 0..x.blocks() {
            let blk = rp.add(b * bb);
            let q = _mm256_loadu_si256(qp.add(b * QK) as *const __m256i);
            let dx = *x.d.get_unchecked(b);
            let (p, m) = block(blk, q);
            acc[b & 1] = _mm256_fmadd_ps(_mm256_set1_ps(f16(blk) * dx), p, acc[b & 1]);
            off[b & 1] += m * dx * *x.sums.get_unchecked(b) as f32;
        }
        hsum(_mm256_add_ps(acc[0], acc[1])) + off[0] + off[1]
    }
}
