//! Weight blocks as the GPU reads them: each file type repacked into whole 32-bit words per
//! 32 elements, so that every kernel addresses block b of a row at b * words-per-block and one
//! WGSL decoder per type (shaders/quant_*.wgsl) turns a block into a `Blk`.
//!
//! - Q8_0, Q4_0 and Q5_0 pad their 2-byte scale to a word (36 / 20 / 24 bytes a block).
//! - K-quants are unpacked from their 256-element super-blocks into 32-element blocks that
//!   carry their own scales, so that the kernels need no super-block arithmetic. Q4_K and Q5_K
//!   keep one header per pair of blocks (5 and 6 words a block against the file's 4.5 and
//!   5.5); Q6_K takes 7 words a block against the file's 6.56.
use crate::model::dtype::{k_codes, k_scale_min, DType, QK_K};

/// GPU words per 32 elements, and the shader snippet that decodes them.
pub fn gpu_words(dtype: DType) -> (usize, &'static str) {
    match dtype {
        DType::F32 => (32, "quant_f32"),
        DType::F16 => (16, "quant_f16"),
        DType::BF16 => (16, "quant_bf16"),
        DType::Q8_0 => (9, "quant_q8_0"),
        DType::Q4_0 => (5, "quant_q4_0"),
        DType::Q4_1 => (5, "quant_q4_1"),
        DType::Q5_0 => (6, "quant_q5_0"),
        DType::Q5_1 => (6, "quant_q5_1"),
        DType::Q4_K => (5, "quant_q4_k"),
        DType::Q5_K => (6, "quant_q5_k"),
        DType::Q6_K => (7, "quant_q6_k"),
    }
}

fn word(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// 32 small codes as 4 words of nibbles in the Q4_0 / Q4_1 order: byte j holds code j (low
/// nibble) and code j + 16 (high nibble). Only the low 4 bits of each code are kept.
fn nibbles(e: &[u8; 32]) -> [u32; 4] {
    std::array::from_fn(|w| {
        (0..4).fold(0, |acc, i| {
            let j = 4 * w + i;
            acc | (((e[j] & 15) | (e[j + 16] & 15) << 4) as u32) << (8 * i)
        })
    })
}

/// Repack file bytes (whole blocks of `dtype`) into GPU words.
pub fn repack(dtype: DType, src: &[u8], out: &mut Vec<u32>) {
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 | DType::Q4_1 | DType::Q5_1 => {
            out.extend(src.chunks_exact(4).map(word))
        }
        DType::Q8_0 | DType::Q4_0 | DType::Q5_0 => {
            for blk in src.chunks_exact(dtype.block_bytes()) {
                out.push(u16::from_le_bytes([blk[0], blk[1]]) as u32);
                out.extend(blk[2..].chunks_exact(4).map(word));
            }
        }
        DType::Q4_K | DType::Q5_K => {
            // A pair of blocks (sub-blocks 2i and 2i + 1): [d | dmin << 16], [sc, m of 2i,
            // sc, m of 2i + 1, a byte each], Q5_K: the two blocks' fifth bits (bit l:
            // element l), then each block's nibbles.
            for blk in src.chunks_exact(dtype.block_bytes()) {
                let scales: &[u8; 12] = blk[4..16].try_into().unwrap();
                for i in 0..4 {
                    let codes = [2 * i, 2 * i + 1].map(|s| k_codes(dtype, blk, s));
                    out.push(word(&blk[..4]));
                    let (s0, m0) = k_scale_min(scales, 2 * i);
                    let (s1, m1) = k_scale_min(scales, 2 * i + 1);
                    out.push(u32::from_le_bytes([s0, m0, s1, m1]));
                    if dtype == DType::Q5_K {
                        for e in &codes {
                            out.push((0..32).fold(0, |a, l| a | ((e[l] >> 4) as u32) << l));
                        }
                    }
                    for e in &codes {
                        out.extend(nibbles(e));
                    }
                }
            }
        }
        DType::Q6_K => {
            // Each block: [d | sc of elements 0-15 << 16 | sc of 16-31 << 24], the codes'
            // low 4 bits as nibbles, then their top 2 bits (bits 2j, 2j + 1 of word 5: element
            // j; of word 6: element 16 + j).
            for blk in src.chunks_exact(210) {
                let (sc, d) = (
                    &blk[192..208],
                    u16::from_le_bytes([blk[208], blk[209]]) as u32,
                );
                for s in 0..QK_K / 32 {
                    let e = k_codes(dtype, blk, s);
                    out.push(d | (sc[2 * s] as u32) << 16 | (sc[2 * s + 1] as u32) << 24);
                    out.extend(nibbles(&e));
                    for half in [0, 16] {
                        out.push(
                            (0..16).fold(0, |a, j| a | ((e[half + j] >> 4) as u32) << (2 * j)),
                        );
                    }
                }
            }
        }
    }
}
