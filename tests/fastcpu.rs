//! The fast CPU kernels (src/fastcpu/) against formulas, on random blocks (random code bytes,
//! small random scales: tests/common/data.rs `random_weight`) of every stored type and odd
//! sizes (1 to 37 rows; 1 to 17 blocks a row, 1 to 3 super-blocks for K-quants, 7 to 45
//! values for float rows):
//! - a row's dot product with an 8-bit vector equals the exact sum of the dequantised row
//!   (the reference's own `dequantize`) times the dequantised vector (float rows: times the
//!   f32 vector), computed in f64, within f32 rounding (1e-5 of the sum of |terms|), on the
//!   portable path and on AVX2;
//! - against the f32 vector it approximates, the error stays within the bound the 8-bit
//!   quantisation of the vector allows: sum_j |w_j| d_b / 2 (d_b = the block's scale);
//! - the matrix products (one vector, and batches of 1 to 9) equal the rows' dot products
//!   bit for bit, and refuse a shape that does not fit, naming the tensor.
//!
//! The same tests run natively and in headless Chromium (scripts/test-web.sh), where the paths
//! are the portable one and simd128.
mod common;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use common::data::{random_weight, Rng, ALL};
use tide_gpu::fastcpu::dot::{dot, supports, Path};
use tide_gpu::fastcpu::matvec::{matmul, matvec};
use tide_gpu::fastcpu::q8::Q8Vec;
use tide_gpu::model::dtype::{DType, QK, QK_K};
use tide_gpu::model::{Blob, TensorInfo, Weight};

/// Every stored type.
const TYPES: [DType; 11] = ALL;

/// Row lengths to try for `t`: odd numbers of its blocks.
fn lengths(t: DType) -> Vec<usize> {
    match t {
        DType::F32 | DType::F16 | DType::BF16 => vec![7, 33, 45, 64],
        DType::Q4_K | DType::Q5_K | DType::Q6_K => vec![QK_K, 2 * QK_K, 3 * QK_K],
        _ => [1, 2, 3, 5, 17].map(|b| b * QK).to_vec(),
    }
}

fn random_vec(rng: &mut Rng, n: usize) -> Vec<f32> {
    // Some blocks all zero: their scale is 0.
    (0..n)
        .map(|i| {
            if (i / QK) % 5 == 3 {
                0.0
            } else {
                rng.f32() * 3.0
            }
        })
        .collect()
}

fn paths() -> Vec<Path> {
    let mut p = vec![Path::Portable];
    for fast in [Path::Avx2, Path::Simd128] {
        if fast.available() {
            p.push(fast);
        }
    }
    p
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn dot_products_equal_the_exact_sum_of_the_dequantised_values() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut checked = 0;
    for t in TYPES {
        for n in lengths(t) {
            // Random blocks and the row as the reference dequantises it.
            let (row, w) = random_weight(&mut rng, t, 1, n);
            let xf = random_vec(&mut rng, n);
            let x = Q8Vec::quantize(&xf);
            // The vector as the kernels see it: its 8-bit blocks, or itself for float rows.
            let xq: Vec<f64> = match t.is_quantized() {
                true => (0..n)
                    .map(|j| x.d[j / QK] as f64 * x.qs[j] as f64)
                    .collect(),
                false => xf.iter().map(|&v| v as f64).collect(),
            };
            let exact: f64 = w.iter().zip(&xq).map(|(&a, &b)| a as f64 * b).sum();
            let mag: f64 = w.iter().zip(&xq).map(|(&a, &b)| (a as f64 * b).abs()).sum();
            // What quantising the vector may cost against the f32 vector.
            let bound: f64 = match t.is_quantized() {
                true => (0..n)
                    .map(|j| (w[j] as f64).abs() * x.d[j / QK] as f64 / 2.0)
                    .sum(),
                false => 0.0,
            };
            let truth: f64 = w.iter().zip(&xf).map(|(&a, &b)| a as f64 * b as f64).sum();
            for p in paths() {
                let got = dot(p, t, &row, &x).unwrap() as f64;
                assert!(
                    (got - exact).abs() <= 1e-5 * mag + 1e-9,
                    "{t:?} {n} values {p:?}: {got} against {exact} (sum |terms| {mag})"
                );
                assert!(
                    (got - truth).abs() <= bound + 1e-5 * mag + 1e-9,
                    "{t:?} {n} values {p:?}: {got} against the f32 vector's {truth}, \
                     beyond the 8-bit bound {bound}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, (3 * 4 + 3 * 3 + 5 * 5) * paths().len());
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn every_type_is_read_and_bad_sizes_and_paths_are_refused() {
    for t in TYPES {
        assert!(supports(t), "{t:?}");
    }
    let x = Q8Vec::quantize(&[1.0; 32]);
    // A row of another length than the vector's.
    assert_eq!(dot(Path::Portable, DType::Q8_0, &[0; 68], &x), None);
    assert_eq!(dot(Path::Portable, DType::F32, &[0; 64], &x), None);
    // A K-quant row needs whole super-blocks of 256.
    assert_eq!(dot(Path::Portable, DType::Q4_K, &[0; 144], &x), None);
    // A path this CPU (or build) lacks says so rather than running; the best is the one
    // there is (simd128 in the browser build, AVX2 on this machine's CPU).
    for p in [Path::Avx2, Path::Simd128] {
        if !p.available() {
            assert_eq!(dot(p, DType::Q8_0, &[0; 34], &x), None, "{p:?}");
        }
    }
    let want = if cfg!(target_arch = "wasm32") {
        Path::Simd128
    } else if Path::Avx2.available() {
        Path::Avx2
    } else {
        Path::Portable
    };
    assert_eq!(Path::best(), want);
}

fn weight(name: &str, t: DType, rows: usize, cols: usize, bytes: Vec<u8>) -> Weight {
    let end = bytes.len();
    Weight {
        info: TensorInfo {
            name: name.into(),
            dtype: t,
            shape: vec![rows, cols],
            start: 0,
            end,
        },
        blob: Blob::from_vec(bytes),
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn matrix_products_equal_the_rows_dot_products_and_refuse_bad_shapes() {
    let mut rng = Rng(42);
    for t in TYPES {
        let cols = *lengths(t).last().unwrap();
        for rows in [1, 7, 37] {
            let (bytes, _) = random_weight(&mut rng, t, rows, cols);
            let w = weight("blk.0.ffn_up.weight", t, rows, cols, bytes);
            let rb = t.row_bytes(cols).unwrap();
            for batch in [1, 2, 5, 9] {
                let xs: Vec<Q8Vec> = (0..batch)
                    .map(|_| Q8Vec::quantize(&random_vec(&mut rng, cols)))
                    .collect();
                for p in paths() {
                    let mut out = vec![0f32; rows * batch];
                    let mut scratch = Vec::new();
                    matmul(p, &mut out, &w, &xs, &mut scratch).unwrap();
                    for (i, x) in xs.iter().enumerate() {
                        let mut one = vec![0f32; rows];
                        matvec(p, &mut one, &w, x).unwrap();
                        for r in 0..rows {
                            let want = dot(p, t, &w.bytes()[r * rb..(r + 1) * rb], x).unwrap();
                            let what =
                                format!("{t:?} row {r} of {rows}, vector {i} of {batch}, {p:?}");
                            assert_eq!(one[r], want, "{what}");
                            // A batch decodes a row once for several vectors, summing each
                            // in the same order as alone: bit for bit equal.
                            assert_eq!(out[i * rows + r], want, "{what}");
                        }
                    }
                }
            }
        }
    }
    let x = Q8Vec::quantize(&[0.5; 64]);
    let w = weight("blk.3.attn_q.weight", DType::Q8_0, 2, 32, vec![0; 2 * 34]);
    let e = matvec(Path::Portable, &mut [0.0; 2], &w, &x)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("blk.3.attn_q.weight") && e.contains("[2, 32]") && e.contains("64"),
        "{e}"
    );
    let w = weight("output.weight", DType::F16, 3, 64, vec![0; 3 * 64 * 2]);
    let e = matvec(Path::Portable, &mut [0.0; 2], &w, &x)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("output.weight") && e.contains("into 2 outputs"),
        "{e}"
    );
}
