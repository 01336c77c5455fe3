//! wasm32 simd128: the same integer sums as the other paths, 16 bytes at a time. Byte products
//! widen to i16 (|w q| <= 128 * 127) and pairs to i32; each block's sum goes to f32 times its
//! two scales. simd128 has no FMA: a multiply, then an add.

use core::arch::wasm32::*;

use super::{portable, Q8Vec};
use crate::model::dtype::{k_scale_min, DType, QK};

/// SAFETY: `rows` holds out.len() / stride (rounded up) rows of `rb` bytes of `t`, each as
/// long as x (and x.qs, x.d, x.ds as many blocks).
pub unsafe fn dots(t: DType, rows: &[u8], rb: usize, x: &Q8Vec, out: &mut [f32], stride: usize) {
    for (j, row) in rows.chunks_exact(rb).enumerate() {
        out[j * stride] = match t {
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => {
                blocks(t, row, x)
            }
            DType::Q4_K | DType::Q5_K => k45(t, row, x),
            DType::Q6_K => k6(row, x),
            DType::F32 => f32s(row, &x.f),
            // F16 has no conversion instruction here; BF16 is rare: the portable loop.
            _ => portable(t, row, x),
        };
    }
}

/// The i32x4 sums of the products of 16 signed bytes `a` and `b`, four lanes of four.
#[inline(always)]
fn prod16(a: v128, b: v128) -> v128 {
    i32x4_add(
        i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(a, b)),
        i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(a, b)),
    )
}

#[inline(always)]
fn hsum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v)
        + f32x4_extract_lane::<1>(v)
        + f32x4_extract_lane::<2>(v)
        + f32x4_extract_lane::<3>(v)
}

#[inline(always)]
unsafe fn load(p: *const u8) -> v128 {
    v128_load(p as *const v128)
}

fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the callers point inside a checked block.
    unsafe { half::f16::from_le_bytes([*p, *p.add(1)]).to_f32() }
}

/// 32 bits as 32 bytes of `set` where bit j is set and 0 elsewhere: (bytes 0-15, 16-31).
#[inline(always)]
fn bit_bytes(bits: u32, set: u8) -> (v128, v128) {
    let v = u32x4_splat(bits);
    let bit = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
    let pick = |lo: u8| {
        let which = u8x16(
            lo,
            lo,
            lo,
            lo,
            lo,
            lo,
            lo,
            lo,
            lo + 1,
            lo + 1,
            lo + 1,
            lo + 1,
            lo + 1,
            lo + 1,
            lo + 1,
            lo + 1,
        );
        let b = v128_and(u8x16_swizzle(v, which), bit);
        v128_and(u8x16_eq(b, bit), u8x16_splat(set))
    };
    (pick(0), pick(2))
}

/// Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1: 32-value blocks, codes as two 16-byte halves.
unsafe fn blocks(t: DType, row: &[u8], x: &Q8Vec) -> f32 {
    let bb = t.block_bytes();
    let m4 = u8x16_splat(0x0f);
    let (mut acc, mut off) = (f32x4_splat(0.0), 0f32);
    for (b, blk) in row.chunks_exact(bb).enumerate() {
        let p = blk.as_ptr();
        let nib = |at: usize| {
            let raw = load(p.add(at));
            (v128_and(raw, m4), u8x16_shr(raw, 4))
        };
        let (w0, w1, min) = match t {
            DType::Q8_0 => (load(p.add(2)), load(p.add(18)), None),
            DType::Q4_0 => {
                let (lo, hi) = nib(2);
                let eight = i8x16_splat(8);
                (i8x16_sub(lo, eight), i8x16_sub(hi, eight), None)
            }
            DType::Q4_1 => {
                let (lo, hi) = nib(4);
                (lo, hi, Some(f16_at(p.add(2))))
            }
            DType::Q5_0 => {
                // code - 16: the nibble with 0xf0 set where the fifth bit is clear.
                let (h0, h1) =
                    bit_bytes(u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]), 0xf0);
                let (lo, hi) = nib(6);
                let f0 = u8x16_splat(0xf0);
                (
                    v128_or(lo, v128_xor(h0, f0)),
                    v128_or(hi, v128_xor(h1, f0)),
                    None,
                )
            }
            _ => {
                let (h0, h1) =
                    bit_bytes(u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]]), 0x10);
                let (lo, hi) = nib(8);
                (v128_or(lo, h0), v128_or(hi, h1), Some(f16_at(p.add(2))))
            }
        };
        let q = x.qs.as_ptr().add(b * QK) as *const u8;
        let s = i32x4_add(prod16(w0, load(q)), prod16(w1, load(q.add(16))));
        let dx = x.d[b];
        acc = f32x4_add(
            acc,
            f32x4_mul(f32x4_convert_i32x4(s), f32x4_splat(f16_at(p) * dx)),
        );
        if let Some(m) = min {
            off += m * x.ds[b];
        }
    }
    hsum(acc) + off
}

/// Q4_K and Q5_K (layouts as in the AVX2 path).
unsafe fn k45(t: DType, row: &[u8], x: &Q8Vec) -> f32 {
    let five = t == DType::Q5_K;
    let (bb, qs_at) = if five { (176, 48) } else { (144, 16) };
    let m4 = u8x16_splat(0x0f);
    let (mut acc, mut off) = (f32x4_splat(0.0), 0f32);
    for (sb, blk) in row.chunks_exact(bb).enumerate() {
        let p = blk.as_ptr();
        let (d, dmin) = (f16_at(p), f16_at(p.add(2)));
        let scales: &[u8; 12] = blk[4..16].try_into().unwrap();
        let qh = (load(p.add(16)), load(p.add(32)));
        for s in 0..8 {
            let (i, h) = (s / 2, s % 2);
            let half = |k: usize| {
                let raw = load(p.add(qs_at + 32 * i + 16 * k));
                let mut w = v128_and(if h == 0 { raw } else { u8x16_shr(raw, 4) }, m4);
                if five {
                    let bit = u8x16_splat(1 << s);
                    let hk = if k == 0 { qh.0 } else { qh.1 };
                    let set = u8x16_eq(v128_and(hk, bit), bit);
                    w = v128_or(w, v128_and(set, u8x16_splat(16)));
                }
                w
            };
            let b = sb * 8 + s;
            let q = x.qs.as_ptr().add(b * QK) as *const u8;
            let sum = i32x4_add(prod16(half(0), load(q)), prod16(half(1), load(q.add(16))));
            let (sc, m) = k_scale_min(scales, s);
            let dx = x.d[b];
            acc = f32x4_add(
                acc,
                f32x4_mul(f32x4_convert_i32x4(sum), f32x4_splat(d * sc as f32 * dx)),
            );
            off += dmin * m as f32 * x.ds[b];
        }
    }
    hsum(acc) - off
}

/// Q6_K: codes less 32 as signed bytes, one scale per 16 (layout as in the AVX2 path).
unsafe fn k6(row: &[u8], x: &Q8Vec) -> f32 {
    let (m4, m2, c32) = (u8x16_splat(0x0f), u8x16_splat(3), i8x16_splat(32));
    let mut acc = f32x4_splat(0.0);
    for (sb, blk) in row.chunks_exact(210).enumerate() {
        let p = blk.as_ptr();
        let d = f16_at(p.add(208));
        for s in 0..8 {
            let (n, k) = (s / 4, s % 4);
            let b = sb * 8 + s;
            let q = x.qs.as_ptr().add(b * QK) as *const u8;
            let dx = d * x.d[b];
            for l in 0..2 {
                let ql = load(p.add(64 * n + 32 * (k % 2) + 16 * l));
                let lo = v128_and(if k < 2 { ql } else { u8x16_shr(ql, 4) }, m4);
                let qh = load(p.add(128 + 32 * n + 16 * l));
                let top = v128_and(u8x16_shr(qh, 2 * k as u32), m2);
                let w = i8x16_sub(v128_or(lo, i8x16_shl(top, 4)), c32);
                let sc = *p.add(192 + 2 * s + l) as i8 as f32;
                let sum = f32x4_convert_i32x4(prod16(w, load(q.add(16 * l))));
                acc = f32x4_add(acc, f32x4_mul(sum, f32x4_splat(sc * dx)));
            }
        }
    }
    hsum(acc)
}

/// F32 rows, four values a step, two running sums.
unsafe fn f32s(row: &[u8], x: &[f32]) -> f32 {
    let (p, xp, n) = (row.as_ptr(), x.as_ptr() as *const u8, x.len());
    let (mut a0, mut a1) = (f32x4_splat(0.0), f32x4_splat(0.0));
    let mut i = 0;
    while i + 8 <= n {
        a0 = f32x4_add(a0, f32x4_mul(load(p.add(4 * i)), load(xp.add(4 * i))));
        a1 = f32x4_add(
            a1,
            f32x4_mul(load(p.add(4 * i + 16)), load(xp.add(4 * i + 16))),
        );
        i += 8;
    }
    let mut sum = hsum(f32x4_add(a0, a1));
    for j in i..n {
        let b = &row[4 * j..4 * j + 4];
        sum += f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * x[j];
    }
    sum
}
