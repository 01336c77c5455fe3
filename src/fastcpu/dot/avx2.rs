//! AVX2 + FMA + F16C (x86-64, chosen at run time): the block formats' dot products 32 bytes
//! at a time, rows prefetched ahead, a batch's rows decoded once for four vectors.

use std::arch::x86_64::*;

use super::Q8Vec;
use crate::model::dtype::{k_scale_min, DType, QK};

/// The 32 products of unsigned bytes `a` and signed bytes `b`, summed in pairs and then in
/// fours: 8 i32 lanes (lane i: bytes 4i..4i + 3), as f32. No overflow: here a <= 128
/// (codes, or |q| of Q8_0) and |b| <= 127, so two products fit an i16.
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

/// The 32 bits of `bits` as 32 bytes, 0xff where bit j is set and 0 where not.
#[target_feature(enable = "avx2")]
unsafe fn bit_bytes(bits: u32) -> __m256i {
    let v = _mm256_set1_epi32(bits as i32);
    // Byte j takes the byte of `bits` that holds bit j, then keeps that bit alone.
    let which = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let b = _mm256_and_si256(_mm256_shuffle_epi8(v, which), bit);
    _mm256_cmpeq_epi8(b, bit)
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

const AHEAD: usize = 4;

/// SAFETY: the caller has checked AVX2, FMA and F16C; `rows` holds out.len() / stride
/// (rounded up) rows of `rb` bytes of `t`, each as long as x (and x.qs, x.d, x.sums
/// as many blocks).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dots(t: DType, rows: &[u8], rb: usize, x: &Q8Vec, out: &mut [f32], stride: usize) {
    let end = rows.as_ptr().wrapping_add(rows.len());
    for (j, row) in rows.chunks_exact(rb).enumerate() {
        // Ask for a row AHEAD rows on while this one is summed: the hardware prefetcher
        // alone leaves the loop waiting on memory (decode was far slower without this).
        let mut p = row.as_ptr().wrapping_add(AHEAD * rb);
        let stop = p.wrapping_add(rb).min(end);
        while p < stop {
            _mm_prefetch(p as *const i8, _MM_HINT_T0);
            p = p.add(64);
        }
        *out.get_unchecked_mut(j * stride) = dot(t, row, x);
    }
}

/// The types `dots_batch` decodes once for several vectors.
pub fn batched(t: DType) -> bool {
    matches!(
        t,
        DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1
    )
}

/// SAFETY: as for `dots`, for every vector of `xs`; `t` is `batched`; out holds
/// xs.len() values a row.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dots_batch(t: DType, rows: &[u8], xs: &[Q8Vec], out: &mut [f32]) {
    let n = xs.len();
    let rb = t.row_bytes(xs[0].f.len()).unwrap_or(0);
    for (row, o) in rows.chunks_exact(rb).zip(out.chunks_exact_mut(n)) {
        let mut i = 0;
        while i + 4 <= n {
            let four = [&xs[i], &xs[i + 1], &xs[i + 2], &xs[i + 3]];
            o[i..i + 4].copy_from_slice(&dot4(t, row, four));
            i += 4;
        }
        for (o, x) in o[i..].iter_mut().zip(&xs[i..]) {
            *o = dot(t, row, x);
        }
    }
}

/// One row of a `batched` type against four vectors: each block decoded once.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot4(t: DType, row: &[u8], xs: [&Q8Vec; 4]) -> [f32; 4] {
    let off8 = _mm256_set1_epi8(8);
    match t {
        DType::Q8_0 => blocks4(row, xs, 34, |blk| {
            let w = _mm256_loadu_si256(blk.add(2) as *const __m256i);
            (w, true, None)
        }),
        DType::Q4_0 => blocks4(row, xs, 18, |blk| {
            (_mm256_sub_epi8(nibbles(blk.add(2)), off8), true, None)
        }),
        DType::Q4_1 => blocks4(row, xs, 20, |blk| {
            (nibbles(blk.add(4)), false, Some(f16(blk.add(2))))
        }),
        DType::Q5_0 => blocks4(row, xs, 22, |blk| {
            let hi = bit_bytes(u32::from_le_bytes(*(blk.add(2) as *const [u8; 4])));
            let w = _mm256_or_si256(
                nibbles(blk.add(6)),
                _mm256_andnot_si256(hi, _mm256_set1_epi8(0xf0u8 as i8)),
            );
            (w, true, None)
        }),
        _ => blocks4(row, xs, 24, |blk| {
            let hi = bit_bytes(u32::from_le_bytes(*(blk.add(4) as *const [u8; 4])));
            let w = _mm256_or_si256(
                nibbles(blk.add(8)),
                _mm256_and_si256(hi, _mm256_set1_epi8(16)),
            );
            (w, false, Some(f16(blk.add(2))))
        }),
    }
}

/// `blocks` for four vectors: `decode` gives a block's 32 codes, whether they are signed,
/// and its min; signed codes meet the vectors as |w| times q with w's sign (what
/// `mul_sum_i8` computes). Each vector's sums run as in `blocks`, even and odd blocks
/// apart, so that a batch's products are bit for bit those of one vector at a time.
#[inline(always)]
unsafe fn blocks4(
    row: &[u8],
    xs: [&Q8Vec; 4],
    bb: usize,
    decode: impl Fn(*const u8) -> (__m256i, bool, Option<f32>),
) -> [f32; 4] {
    let rp = row.as_ptr();
    // Even blocks' sums (a0, o0) apart from odd ones' (a1, o1), per vector.
    let (mut a0, mut a1) = ([_mm256_setzero_ps(); 4], [_mm256_setzero_ps(); 4]);
    let (mut o0, mut o1) = ([0f32; 4], [0f32; 4]);
    // A macro, not a closure: a closure here would not inherit the target features, and
    // its intrinsics would become calls.
    macro_rules! step {
        ($b:expr, $acc:ident, $off:ident) => {{
            let b = $b;
            let blk = rp.add(b * bb);
            let (w, signed, m) = decode(blk);
            let u = if signed { _mm256_sign_epi8(w, w) } else { w };
            let d = f16(blk);
            for i in 0..4 {
                let x = xs[i];
                let mut q = _mm256_loadu_si256(x.qs.as_ptr().add(b * QK) as *const __m256i);
                if signed {
                    q = _mm256_sign_epi8(q, w);
                }
                let dx = *x.d.get_unchecked(b);
                $acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(d * dx), mul_sum_u8_i8(u, q), $acc[i]);
                if let Some(m) = m {
                    $off[i] += m * *x.ds.get_unchecked(b);
                }
            }
        }};
    }
    let n = xs[0].blocks();
    let mut b = 0;
    while b + 1 < n {
        step!(b, a0, o0);
        step!(b + 1, a1, o1);
        b += 2;
    }
    if b < n {
        step!(b, a0, o0);
    }
    [0, 1, 2, 3].map(|i| hsum(_mm256_add_ps(a0[i], a1[i])) + o0[i] + o1[i])
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot(t: DType, row: &[u8], x: &Q8Vec) -> f32 {
    match t {
        DType::Q8_0 => blocks(row, x, 34, |blk, q| {
            (
                mul_sum_i8(_mm256_loadu_si256(blk.add(2) as *const __m256i), q),
                None,
            )
        }),
        // Q4_0's values are the nibbles less 8: signed bytes.
        DType::Q4_0 => blocks(row, x, 18, |blk, q| {
            let w = _mm256_sub_epi8(nibbles(blk.add(2)), _mm256_set1_epi8(8));
            (mul_sum_i8(w, q), None)
        }),
        // Q4_1: the nibbles as they are, plus the min times the vector block's sum.
        DType::Q4_1 => blocks(row, x, 20, |blk, q| {
            (mul_sum_u8_i8(nibbles(blk.add(4)), q), Some(f16(blk.add(2))))
        }),
        // Q5_0: code - 16 is the nibble with 0xf0 set where the fifth bit is clear
        // (two's complement), so the codes arrive signed.
        DType::Q5_0 => blocks(row, x, 22, |blk, q| {
            let hi = bit_bytes(u32::from_le_bytes(*(blk.add(2) as *const [u8; 4])));
            let w = _mm256_or_si256(
                nibbles(blk.add(6)),
                _mm256_andnot_si256(hi, _mm256_set1_epi8(0xf0u8 as i8)),
            );
            (mul_sum_i8(w, q), None)
        }),
        DType::Q5_1 => blocks(row, x, 24, |blk, q| {
            let hi = bit_bytes(u32::from_le_bytes(*(blk.add(4) as *const [u8; 4])));
            let w = _mm256_or_si256(
                nibbles(blk.add(8)),
                _mm256_and_si256(hi, _mm256_set1_epi8(16)),
            );
            (mul_sum_u8_i8(w, q), Some(f16(blk.add(2))))
        }),
        DType::Q4_K | DType::Q5_K => k45(t, row, x),
        DType::Q6_K => k6(row, x),
        _ => floats(t, row, &x.f),
    }
}

/// The loop over a row's blocks of `bb` bytes: `block` gives the 8 lanes of a block's
/// integer products and its min (0 but for Q4_1 and Q5_1). Two running sums each, even
/// and odd blocks, in registers: one would be a chain of dependent adds, the loop's
/// bottleneck.
#[inline(always)]
unsafe fn blocks(
    row: &[u8],
    x: &Q8Vec,
    bb: usize,
    block: impl Fn(*const u8, __m256i) -> (__m256, Option<f32>),
) -> f32 {
    let (rp, qp) = (row.as_ptr(), x.qs.as_ptr());
    let step = |b: usize, acc: &mut __m256, off: &mut f32| {
        let blk = rp.add(b * bb);
        let q = _mm256_loadu_si256(qp.add(b * QK) as *const __m256i);
        let dx = *x.d.get_unchecked(b);
        let (p, m) = block(blk, q);
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(blk) * dx), p, *acc);
        if let Some(m) = m {
            *off += m * *x.ds.get_unchecked(b);
        }
    };
    let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (mut o0, mut o1) = (0f32, 0f32);
    let n = x.blocks();
    let mut b = 0;
    while b + 1 < n {
        step(b, &mut a0, &mut o0);
        step(b + 1, &mut a1, &mut o1);
        b += 2;
    }
    if b < n {
        step(b, &mut a0, &mut o0);
    }
    hsum(_mm256_add_ps(a0, a1)) + o0 + o1
}

/// Q4_K and Q5_K: per super-block of 256, eight sub-blocks of 32 with 6-bit scales and
/// mins; sub-blocks 2i and 2i + 1 are the low and high nibbles of the same 32 bytes, and
/// Q5_K's fifth bit of sub-block s is bit s of each of 32 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k45(t: DType, row: &[u8], x: &Q8Vec) -> f32 {
    let five = t == DType::Q5_K;
    let (bb, qs_at) = if five { (176, 48) } else { (144, 16) };
    let (mut acc, mut off) = ([_mm256_setzero_ps(); 2], 0f32);
    let m4 = _mm256_set1_epi8(0x0f);
    for (sb, blk) in row.chunks_exact(bb).enumerate() {
        let p = blk.as_ptr();
        let (d, dmin) = (f16(p), f16(p.add(2)));
        let scales: &[u8; 12] = &*(p.add(4) as *const [u8; 12]);
        let qh = _mm256_loadu_si256(p.add(16) as *const __m256i);
        for i in 0..4 {
            let raw = _mm256_loadu_si256(p.add(qs_at + 32 * i) as *const __m256i);
            for (h, acc_h) in acc.iter_mut().enumerate() {
                let s = 2 * i + h;
                let b = sb * 8 + s;
                let mut w = _mm256_and_si256(
                    if h == 0 {
                        raw
                    } else {
                        _mm256_srli_epi16(raw, 4)
                    },
                    m4,
                );
                if five {
                    let bit = _mm256_set1_epi8(1 << s);
                    let set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
                    w = _mm256_or_si256(w, _mm256_and_si256(set, _mm256_set1_epi8(16)));
                }
                let q = _mm256_loadu_si256(x.qs.as_ptr().add(b * QK) as *const __m256i);
                let (sc, m) = k_scale_min(scales, s);
                let dx = *x.d.get_unchecked(b);
                let prod = mul_sum_u8_i8(w, q);
                *acc_h = _mm256_fmadd_ps(_mm256_set1_ps(d * sc as f32 * dx), prod, *acc_h);
                off += dmin * m as f32 * *x.ds.get_unchecked(b);
            }
        }
    }
    hsum(_mm256_add_ps(acc[0], acc[1])) - off
}

/// Q6_K: per super-block of 256, sixteen i8 scales of 16 values; sub-block s (half
/// n = s / 4, quarter k = s % 4) takes its low 4 bits from ql[64n + 32(k % 2)..] (high
/// nibbles for k >= 2) and its top 2 from bits 2k, 2k + 1 of qh[32n..]. Codes less 32 are
/// signed bytes.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k6(row: &[u8], x: &Q8Vec) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 2];
    let (m4, m2) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(3));
    for (sb, blk) in row.chunks_exact(210).enumerate() {
        let p = blk.as_ptr();
        let d = f16(p.add(208));
        for s in 0..8 {
            let (n, k) = (s / 4, s % 4);
            let ql = _mm256_loadu_si256(p.add(64 * n + 32 * (k % 2)) as *const __m256i);
            let lo = _mm256_and_si256(if k < 2 { ql } else { _mm256_srli_epi16(ql, 4) }, m4);
            let qh = _mm256_loadu_si256(p.add(128 + 32 * n) as *const __m256i);
            let top = _mm256_and_si256(shift_right(qh, 2 * k as i32), m2);
            let codes = _mm256_or_si256(lo, _mm256_slli_epi16(top, 4));
            let w = _mm256_sub_epi8(codes, _mm256_set1_epi8(32));
            let b = sb * 8 + s;
            let q = _mm256_loadu_si256(x.qs.as_ptr().add(b * QK) as *const __m256i);
            let (s0, s1) = (
                *p.add(192 + 2 * s) as i8 as f32,
                *p.add(193 + 2 * s) as i8 as f32,
            );
            let dx = d * *x.d.get_unchecked(b);
            // Lanes 0-3 hold values 0-15 (scale s0), lanes 4-7 values 16-31 (scale s1).
            let scale = _mm256_set_m128(_mm_set1_ps(s1 * dx), _mm_set1_ps(s0 * dx));
            acc[s & 1] = _mm256_fmadd_ps(scale, mul_sum_i8(w, q), acc[s & 1]);
        }
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

/// Every 16-bit lane of `v` shifted right by `n` (0, 2, 4 or 6) bits.
#[target_feature(enable = "avx2")]
unsafe fn shift_right(v: __m256i, n: i32) -> __m256i {
    _mm256_srl_epi16(v, _mm_cvtsi32_si128(n))
}

/// F32, F16 and BF16 rows against the f32 vector, 8 values a step, two running sums.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn floats(t: DType, row: &[u8], x: &[f32]) -> f32 {
    let p = row.as_ptr();
    let load = |i: usize| -> __m256 {
        match t {
            DType::F32 => _mm256_loadu_ps(p.add(4 * i) as *const f32),
            DType::F16 => _mm256_cvtph_ps(_mm_loadu_si128(p.add(2 * i) as *const __m128i)),
            // BF16: the top half of an f32.
            _ => {
                let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.add(2 * i) as *const __m128i));
                _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
            }
        }
    };
    let n = x.len();
    let xp = x.as_ptr();
    let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 16 <= n {
        a0 = _mm256_fmadd_ps(load(i), _mm256_loadu_ps(xp.add(i)), a0);
        a1 = _mm256_fmadd_ps(load(i + 8), _mm256_loadu_ps(xp.add(i + 8)), a1);
        i += 16;
    }
    if i + 8 <= n {
        a0 = _mm256_fmadd_ps(load(i), _mm256_loadu_ps(xp.add(i)), a0);
        i += 8;
    }
    let mut sum = hsum(_mm256_add_ps(a0, a1));
    let bytes = row.len() / n.max(1);
    for (j, &v) in x.iter().enumerate().skip(i) {
        let b = &row[j * bytes..(j + 1) * bytes];
        sum += v * match t {
            DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            DType::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            _ => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        };
    }
    sum
}
