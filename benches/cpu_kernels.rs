//! The fast CPU kernels (src/fastcpu/) against the reference's matvec (cpu/ops.rs
//! `matvec_weight`: each row dequantised to f32, then an f32 dot) on SmolLM2-135M's shapes
//! (width 576, FFN 1536, vocabulary 49152), random blocks: time per product (median of the
//! repetitions), the activation's 8-bit quantisation included in the fast figures. Both split
//! rows among threads the same way (one thread below 1M weights, all cores above). Prints one
//! JSON line per (type, shape). Run: cargo bench --bench cpu_kernels
use std::time::Instant;

use tide_gpu::cpu::ops::matvec_weight;
use tide_gpu::fastcpu::dot::Path;
use tide_gpu::fastcpu::matvec::matvec;
use tide_gpu::fastcpu::q8::Q8Vec;
use tide_gpu::model::dtype::DType;
use tide_gpu::model::{Blob, TensorInfo, Weight};

fn median_us(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn main() {
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut byte = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    };
    let shapes = [
        ("ffn_up 1536 x 576", 1536, 576),
        ("ffn_down 576 x 1536", 576, 1536),
        ("output 49152 x 576", 49152, 576),
    ];
    for t in [DType::Q4_0, DType::Q4_1, DType::Q8_0] {
        for (name, rows, cols) in shapes {
            let n = rows * cols / 32;
            let mut bytes = Vec::with_capacity(n * t.block_bytes());
            for _ in 0..n {
                let scales = if t == DType::Q4_1 { 2 } else { 1 };
                for _ in 0..scales {
                    bytes.extend(
                        half::f16::from_f32((byte() as f32 - 128.0) / 4096.0).to_le_bytes(),
                    );
                }
                for _ in 0..t.block_bytes() - 2 * scales {
                    bytes.push(byte());
                }
            }
            let w = Weight {
                info: TensorInfo {
                    name: name.into(),
                    dtype: t,
                    shape: vec![rows, cols],
                    start: 0,
                    end: bytes.len(),
                },
                blob: Blob::from_vec(bytes),
            };
            let x: Vec<f32> = (0..cols).map(|_| (byte() as f32 - 128.0) / 64.0).collect();
            let mut out = vec![0f32; rows];
            let reps = if rows > 10_000 { 15 } else { 101 };
            let reference = median_us(reps, || matvec_weight(&mut out, &w, &x));
            let mut q = Q8Vec::default();
            let mut fast = |p: Path| {
                p.available().then(|| {
                    median_us(reps, || {
                        q.set(&x);
                        matvec(p, &mut out, &w, &q).unwrap();
                    })
                })
            };
            let portable = fast(Path::Portable).unwrap_or(f64::NAN);
            let avx2 = fast(Path::Avx2);
            println!(
                "{}",
                serde_json::json!({
                    "type": t.name(), "shape": name, "reference_us": reference,
                    "portable_us": portable, "avx2_us": avx2,
                    "portable_speedup": reference / portable,
                    "avx2_speedup": avx2.map(|a| reference / a),
                })
            );
        }
    }
}
