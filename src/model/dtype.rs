//! Tensor element types as stored in model files, and their CPU dequantisation.
//! Block layouts follow GGUF (llama.cpp's ggml-common.h): 32 elements per quant block, 256 per
//! K-quant super-block.
use half::{bf16, f16};

// GGUF's own names (Q4_K, not Q4K).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    /// f16 scale + 32 x i8; value = d * q
    Q8_0,
    /// f16 scale + 16 bytes of nibbles; value = d * (q - 8)
    Q4_0,
    /// f16 scale, f16 min + 16 bytes of nibbles; value = d * q + m
    Q4_1,
    /// f16 scale, 32 high bits, 16 bytes of nibbles; value = d * (q - 16), q 5 bits
    Q5_0,
    /// f16 scale, f16 min, 32 high bits, 16 bytes of nibbles; value = d * q + m
    Q5_1,
    /// 256 elements: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins (8 sub-blocks of 32),
    /// 128 bytes of nibbles; value = d * sc * q - dmin * m
    Q4_K,
    /// Q4_K plus 32 bytes of fifth bits: 176 bytes
    Q5_K,
    /// 256 elements: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 i8 scales (16
    /// sub-blocks of 16), f16 d; value = d * sc * (q - 32), q 6 bits
    Q6_K,
}

/// Every type, in GGUF's order.
pub const ALL_TYPES: [DType; 11] = [
    DType::F32,
    DType::F16,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q8_0,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
    DType::BF16,
];

pub const QK: usize = 32;
/// Elements per K-quant super-block.
pub const QK_K: usize = 256;

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::Q8_0 => "Q8_0",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
            DType::Q5_0 => "Q5_0",
            DType::Q5_1 => "Q5_1",
            DType::Q4_K => "Q4_K",
            DType::Q5_K => "Q5_K",
            DType::Q6_K => "Q6_K",
        }
    }

    /// Elements per storage block (1 for plain floats).
    pub fn block_elems(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q4_K | DType::Q5_K | DType::Q6_K => QK_K,
            _ => QK,
        }
    }

    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q5_0 => 22,
            DType::Q5_1 => 24,
            DType::Q4_K => 144,
            DType::Q5_K => 176,
            DType::Q6_K => 210,
        }
    }

    pub fn is_quantized(self) -> bool {
        self.block_elems() > 1
    }

    /// Bytes of a row of `n` elements, or None when `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        if n % self.block_elems() != 0 {
            return None;
        }
        (n / self.block_elems()).checked_mul(self.block_bytes())
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantise a whole number of blocks of `dtype` from `src` into `dst` (dst.len() elements).
pub fn dequantize(dtype: DType, src: &[u8], dst: &mut [f32]) {
    let n = dst.len();
    debug_assert_eq!(Some(src.len()), dtype.row_bytes(n));
    match dtype {
        DType::F32 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DType::F16 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::BF16 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::Q8_0 => {
            for (out, blk) in dst.chunks_exact_mut(QK).zip(src.chunks_exact(34)) {
                let d = f16_at(blk, 0);
                for (j, o) in out.iter_mut().enumerate() {
                    *o = d * (blk[2 + j] as i8) as f32;
                }
            }
        }
        DType::Q4_0 => {
            for (out, blk) in dst.chunks_exact_mut(QK).zip(src.chunks_exact(18)) {
                let d = f16_at(blk, 0);
                for j in 0..16 {
                    let q = blk[2 + j];
                    out[j] = d * ((q & 0x0f) as i32 - 8) as f32;
                    out[j + 16] = d * ((q >> 4) as i32 - 8) as f32;
                }
            }
        }
        DType::Q4_1 => {
            for (out, blk) in dst.chunks_exact_mut(QK).zip(src.chunks_exact(20)) {
                let d = f16_at(blk, 0);
                let m = f16_at(blk, 2);
                for j in 0..16 {
                    let q = blk[4 + j];
                    out[j] = d * (q & 0x0f) as f32 + m;
                    out[j + 16] = d * (q >> 4) as f32 + m;
                }
            }
        }
        DType::Q5_0 | DType::Q5_1 => {
            // Element j's fifth bit is bit j of qh; its low four bits as in Q4_0 / Q4_1.
            let (bb, off) = if dtype == DType::Q5_0 {
                (22, 2)
            } else {
                (24, 4)
            };
            for (out, blk) in dst.chunks_exact_mut(QK).zip(src.chunks_exact(bb)) {
                let d = f16_at(blk, 0);
                let qh = u32::from_le_bytes([blk[off], blk[off + 1], blk[off + 2], blk[off + 3]]);
                let q = |j: usize| {
                    let b = blk[off + 4 + (j & 15)];
                    let lo = if j < 16 { b & 0x0f } else { b >> 4 };
                    (lo as u32 | ((qh >> j) & 1) << 4) as f32
                };
                if dtype == DType::Q5_0 {
                    for (j, o) in out.iter_mut().enumerate() {
                        *o = d * (q(j) - 16.0);
                    }
                } else {
                    let m = f16_at(blk, 2);
                    for (j, o) in out.iter_mut().enumerate() {
                        *o = d * q(j) + m;
                    }
                }
            }
        }
        DType::Q4_K | DType::Q5_K => {
            let bb = dtype.block_bytes();
            for (out, blk) in dst.chunks_exact_mut(QK_K).zip(src.chunks_exact(bb)) {
                let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
                let scales: &[u8; 12] = blk[4..16].try_into().unwrap();
                for (s, o) in out.chunks_exact_mut(QK).enumerate() {
                    let (sc, m) = k_scale_min(scales, s);
                    let (d1, m1) = (d * sc as f32, dmin * m as f32);
                    for (v, q) in o.iter_mut().zip(k_codes(dtype, blk, s)) {
                        *v = d1 * q as f32 - m1;
                    }
                }
            }
        }
        DType::Q6_K => {
            for (out, blk) in dst.chunks_exact_mut(QK_K).zip(src.chunks_exact(210)) {
                let (sc, d) = (&blk[192..208], f16_at(blk, 208));
                // One i8 scale per 16 elements.
                for (s, o) in out.chunks_exact_mut(QK).enumerate() {
                    for (l, (v, q)) in o.iter_mut().zip(k_codes(dtype, blk, s)).enumerate() {
                        let scale = sc[2 * s + l / 16] as i8;
                        *v = d * scale as f32 * (q as i32 - 32) as f32;
                    }
                }
            }
        }
    }
}

/// The 32 codes of sub-block `s` (0..8) of one K-quant super-block `blk` (Q4_K: 4 bits, Q5_K:
/// 5, Q6_K: 6, unsigned), for the CPU decoder and the GPU repacking alike.
/// - Q4_K / Q5_K: sub-blocks 2i and 2i + 1 are the low and high nibbles of the same 32 bytes;
///   Q5_K's fifth bit of element l of sub-block s is bit s of qh[l].
/// - Q6_K (half n = s / 4, quarter k = s % 4): low 4 bits from ql[64n + 32(k % 2) + l] (the
///   high nibble for k >= 2), top 2 bits from bits 2k, 2k + 1 of qh[32n + l].
pub fn k_codes(dtype: DType, blk: &[u8], s: usize) -> [u8; 32] {
    match dtype {
        DType::Q6_K => {
            let (ql, qh) = (&blk[..128], &blk[128..192]);
            let (n, k) = (s / 4, s % 4);
            std::array::from_fn(|l| {
                let b = ql[64 * n + 32 * (k % 2) + l];
                let lo = if k < 2 { b & 15 } else { b >> 4 };
                lo | ((qh[32 * n + l] >> (2 * k)) & 3) << 4
            })
        }
        DType::Q5_K => {
            let (qh, qs) = (&blk[16..48], &blk[48..176]);
            std::array::from_fn(|l| {
                (qs[s / 2 * 32 + l] >> (4 * (s % 2))) & 15 | ((qh[l] >> s) & 1) << 4
            })
        }
        _ => {
            let qs = &blk[16..144];
            std::array::from_fn(|l| (qs[s / 2 * 32 + l] >> (4 * (s % 2))) & 15)
        }
    }
}

/// Sub-block `j`'s 6-bit scale and min from Q4_K's / Q5_K's 12 packed bytes: bytes 0-3 hold
/// scales 0-3, bytes 4-7 mins 0-3 (low 6 bits each); sub-blocks 4-7 take their low 4 bits
/// from bytes 8-11 and their top 2 bits from the spare top bits of bytes 0-7.
pub fn k_scale_min(q: &[u8; 12], j: usize) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The element types `quantize` writes (what `tide compress --bits` offers, plus f32).
pub const QUANTIZE_TYPES: [DType; 4] = [DType::F32, DType::F16, DType::Q8_0, DType::Q4_1];

/// Quantise `src` (a whole number of blocks) into `dtype`'s layout, appended to `dst`; the
/// inverse of `dequantize`. Q8_0: d = max|x| / 127, q = round(x / d). Q4_1: m = min, d =
/// (max - min) / 15, q = round((x - m) / d) in 0..=15, with d and m rounded to f16 first (as
/// train/export.py does). Returns false for a type it does not write (BF16, Q4_0, Q5_*, K-quants).
pub fn quantize(dtype: DType, src: &[f32], dst: &mut Vec<u8>) -> bool {
    debug_assert_eq!(src.len() % dtype.block_elems(), 0);
    match dtype {
        DType::F32 => dst.extend(src.iter().flat_map(|v| v.to_le_bytes())),
        DType::F16 => dst.extend(src.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes())),
        DType::Q8_0 => {
            for g in src.chunks_exact(QK) {
                let amax = g.iter().fold(0f32, |a, x| a.max(x.abs()));
                let d = f16::from_f32(amax / 127.0);
                let df = d.to_f32();
                let inv = if df > 0.0 { 1.0 / df } else { 0.0 };
                dst.extend(d.to_le_bytes());
                dst.extend(
                    g.iter()
                        .map(|x| (x * inv).round().clamp(-127.0, 127.0) as i8 as u8),
                );
            }
        }
        DType::Q4_1 => {
            for g in src.chunks_exact(QK) {
                let lo = g.iter().fold(f32::INFINITY, |a, x| a.min(*x));
                let hi = g.iter().fold(f32::NEG_INFINITY, |a, x| a.max(*x));
                let d = f16::from_f32((hi - lo) / 15.0);
                let m = f16::from_f32(lo);
                let (df, mf) = (d.to_f32(), m.to_f32());
                let inv = if df > 0.0 { 1.0 / df } else { 0.0 };
                let q = |x: f32| ((x - mf) * inv).round().clamp(0.0, 15.0) as u8;
                dst.extend(d.to_le_bytes());
                dst.extend(m.to_le_bytes());
                dst.extend((0..16).map(|j| q(g[j]) | (q(g[j + 16]) << 4)));
            }
        }
        DType::BF16
        | DType::Q4_0
        | DType::Q5_0
        | DType::Q5_1
        | DType::Q4_K
        | DType::Q5_K
        | DType::Q6_K => return false,
    }
    true
}
