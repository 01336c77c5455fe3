//! Q4_0, Q5_0, Q5_1 and the K-quants Q4_K, Q5_K, Q6_K against an independent oracle: gguf-py
//! (llama.cpp's Python package) dequantising blocks that it quantised (Q4_0, Q5_*) or random
//! valid super-blocks (K-quants, which gguf-py does not quantise), tests/fixtures/TYPE/ made by
//! scripts/make_quant_fixtures.py. The runtime's CPU decoder must give gguf-py's floats
//! exactly, and the GPU matmuls reading those blocks (repacked by src/gpu/blocks.rs) must give
//! the product with gguf-py's floats. (The runtime has no quantiser for these types, so there
//! are no bytes of ours to compare with gguf-py's.)
mod common;

use common::{assert_close, gpu, repo, run_spec, step, x_data, Rng};
use tide_gpu::cpu::ops;
use tide_gpu::decoder::specs::{Epilogue, Matmul, Spec};
use tide_gpu::gpu::harness::Data;
use tide_gpu::gpu::repack;
use tide_gpu::model::dtype::{dequantize, DType};

const TYPES: [DType; 6] = [
    DType::Q4_0,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

struct Fixture {
    dtype: DType,
    rows: usize,
    cols: usize,
    /// What gguf-py quantised (none for the K-quants: their blocks are random).
    input: Option<Vec<f32>>,
    blocks: Vec<u8>,
    dequant: Vec<f32>,
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn fixture(dtype: DType) -> Fixture {
    let name = dtype.name().to_lowercase();
    let dir = repo().join("tests/fixtures").join(&name);
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let meta: serde_json::Value = serde_json::from_slice(&read("meta.json")).unwrap();
    let rows = meta["rows"].as_u64().unwrap() as usize;
    let cols = meta["cols"].as_u64().unwrap() as usize;
    assert_eq!(meta["type"].as_str().unwrap_or("Q4_0"), dtype.name());
    let fx = Fixture {
        dtype,
        rows,
        cols,
        input: dtype
            .block_elems()
            .eq(&32)
            .then(|| f32s(&read("input.f32"))),
        blocks: read(&format!("{name}.bin")),
        dequant: f32s(&read("dequant.f32")),
    };
    assert!(fx.input.as_ref().is_none_or(|x| x.len() == rows * cols));
    assert_eq!(fx.dequant.len(), rows * cols);
    assert_eq!(Some(fx.blocks.len()), dtype.row_bytes(rows * cols));
    fx
}

/// The CPU decoder (model::dtype::dequantize, the oracle of every GPU kernel test) gives
/// gguf-py's floats bit for bit: scale times a small integer (plus the min) is exact in f32.
#[test]
fn cpu_dequant_equals_gguf_py() {
    for dtype in TYPES {
        let fx = fixture(dtype);
        let mut got = vec![f32::NAN; fx.rows * fx.cols];
        dequantize(dtype, &fx.blocks, &mut got);
        for (i, (g, w)) in got.iter().zip(&fx.dequant).enumerate() {
            assert!(
                g == w,
                "{dtype:?} element {i} (row {}, block {}): ours {g}, gguf-py {w}",
                i / fx.cols,
                i % fx.cols / 32
            );
        }
        let Some(input) = &fx.input else { continue };
        // The fixture is what it says: each float within one scale step of its input (the
        // top code is clipped, so the end opposite the block's largest |x| can be a full step
        // off), plus the rounding of a scale that is an f16 subnormal (half its 2^-24 step)
        // times the largest code.
        let bb = dtype.block_bytes();
        for (b, (x, y)) in input.chunks(32).zip(fx.dequant.chunks(32)).enumerate() {
            let blk = &fx.blocks[b * bb..b * bb + 2];
            let d = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32().abs();
            for (a, c) in x.iter().zip(y) {
                assert!(
                    (a - c).abs() <= d * 1.0001 + 32.0 * 2f32.powi(-25),
                    "{dtype:?} block {b}: {a} -> {c}"
                );
            }
        }
    }
}

/// Every matmul kernel that reads these types (decode: both matvec tunings and
/// matvec_rows;
/// prefill: matmul with x in a buffer or a texture; each with weights in a buffer and in a
/// texture, and with subgroup fetch sharing where the adapter has it), run on gguf-py's blocks:
/// h + W x must equal the same with gguf-py's dequantised W.
#[test]
fn gpu_matmuls_on_gguf_py_blocks() {
    let ctx = gpu();
    let (mut checked, mut worst) = (0, 0.0f32);
    for dtype in TYPES {
        let (c, w) = matmuls_on(&ctx, &fixture(dtype));
        checked += c;
        worst = worst.max(w);
    }
    eprintln!("{checked} kernel variants, largest relative difference {worst:e}");
    assert!(checked >= 60, "{checked} kernel variants run");
}

/// The kernel variants run on one fixture's blocks, and the largest relative difference.
fn matmuls_on(ctx: &tide_gpu::gpu::GpuContext, fx: &Fixture) -> (usize, f32) {
    let mut rng = Rng(7);
    let mut words = Vec::new();
    repack(fx.dtype, &fx.blocks, &mut words);
    let m = Matmul {
        epi: Epilogue::Residual,
        norm: None,
        dtype: fx.dtype,
        cols: fx.cols,
        rows: fx.rows,
        row0: 0,
    };
    // |y| reaches ~1e4 (row 1 holds +-1000): relative to max(1, |y|), f32 sums of 96 terms in
    // another order agree to ~1e-6. The K-quant rows are 512 wide with values up to ~40 (row 3:
    // ~800), where terms cancel: the sums' rounding reached 2.5e-5 of max(1, |y|); a wrong
    // scale, min or code bit is off by far more.
    let tol = if fx.dtype.block_elems() == 32 {
        2e-5
    } else {
        1e-4
    };
    let (mut checked, mut worst) = (0, 0.0f32);
    for n_tok in [1u32, 5] {
        let x = rng.vec(n_tok as usize * fx.cols, 1.0);
        let h0 = rng.vec(n_tok as usize * fx.rows, 1.0);
        let mut want = Vec::new();
        for (xt, ht) in x.chunks(fx.cols).zip(h0.chunks(fx.rows)) {
            let mut y = vec![0.0; fx.rows];
            ops::matvec(&mut y, &fx.dequant, xt);
            want.extend(y.iter().zip(ht).map(|(y, h)| y + h));
        }
        let base: Vec<Spec> = if n_tok == 1 {
            vec![m.decode_tuned(true), m.decode_tuned(false), m.decode_rows()]
        } else {
            vec![m.prefill(), m.prefill().x_in_texture()]
        };
        let mut specs = Vec::new();
        for s in base {
            let t = s.clone().weights_in_texture();
            specs.push(s);
            let sg = t.clone().with_subgroups(ctx.subgroup_size);
            if sg.defs.0.contains_key("SGW") {
                specs.push(sg);
            }
            specs.push(t);
        }
        for s in &specs {
            let data = vec![
                Data::Bytes(step(0, n_tok, 0, 1.0)),
                Data::U32(words.clone()),
                x_data(s, &x, fx.cols),
                Data::F32(h0.clone()),
            ];
            let out = run_spec(ctx, s, &data, n_tok);
            let got: Vec<f32> = out[0][..want.len()]
                .iter()
                .map(|&w| f32::from_bits(w))
                .collect();
            worst = worst.max(assert_close(
                &format!(
                    "{:?} (gguf-py) {} {:?} T={n_tok}",
                    fx.dtype, s.shader, s.defs
                ),
                &got,
                &want,
                tol,
            ));
            checked += 1;
        }
    }
    (checked, worst)
}
