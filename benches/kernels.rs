//! Kernel throughput on SmolLM2-135M shapes (random Q4_1 / Q8_0 data): the decode matvec and
//! the prefill matmul of each projection, as GB/s of weights read. Prints one JSON object.
//! Run: cargo bench --bench kernels
use tide_gpu::decoder::specs::{Epilogue, Matmul};
use tide_gpu::gpu::harness::{time, Data};
use tide_gpu::gpu::{gpu_words, GpuContext, GpuOptions};
use tide_gpu::model::DType;

fn main() {
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("no GPU adapter");
    let shapes: [(&str, DType, usize, usize, Epilogue, bool); 5] = [
        (
            "qkv",
            DType::Q4_1,
            960,
            576,
            Epilogue::Qkv {
                qd: 576,
                kvd: 192,
                head_dim: 64,
                rope_half: false,
            },
            true,
        ),
        (
            "attn_output",
            DType::Q4_1,
            576,
            576,
            Epilogue::Residual,
            false,
        ),
        (
            "ffn_gate_up",
            DType::Q4_1,
            3072,
            576,
            Epilogue::SwiGlu { ffn: 1536 },
            true,
        ),
        (
            "ffn_down",
            DType::Q4_1,
            576,
            1536,
            Epilogue::Residual,
            false,
        ),
        ("lm_head", DType::Q8_0, 49152, 576, Epilogue::Store, true),
    ];
    let mut rows_out = Vec::new();
    for (name, dtype, rows, cols, epi, norm) in shapes {
        let (wpb, _) = gpu_words(dtype);
        let words = rows * cols / 32 * wpb;
        // Small positive scales so results stay finite.
        let w: Vec<u32> = (0..words as u32)
            .map(|i| (i.wrapping_mul(2654435761) & 0x0fff_0fff) | 0x1000_1000)
            .collect();
        let m = Matmul {
            epi,
            norm: norm.then_some(1e-5),
            dtype,
            cols,
            rows,
            row0: 0,
        };
        let modes: &[(&str, u32)] = match std::env::var("TIDE_BENCH_MODE").as_deref() {
            Ok("decode") => &[("decode", 1)],
            Ok("prefill") => &[("prefill", 128)],
            _ => &[("decode", 1), ("prefill", 128)],
        };
        for &(mode, n_tok) in modes {
            // The LM head only ever runs on the last token (the decode kernel, whatever the batch).
            // The kernels the decoder picks on this adapter: on CPU adapters matvec_rows for
            // one token and x rows in a texture for batches; weights as ctx stores them.
            let cpu = ctx.info.device_type == wgpu::DeviceType::Cpu;
            let s = if n_tok == 1 && cpu {
                m.decode_rows()
            } else if n_tok == 1 || epi == Epilogue::Store {
                m.decode()
            } else if cpu {
                m.prefill().x_in_texture()
            } else {
                m.prefill()
            };
            let s = s.weights_in_texture_if(ctx.weight_textures);
            let mut data = vec![
                Data::Bytes(
                    [0u32, n_tok, 0, 0]
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect(),
                ),
                Data::U32(w.clone()),
                if s.texture_at(2) {
                    // texture rows of the harness's width, every word 0.01
                    Data::F32(vec![0.01; n_tok as usize * tide_gpu::gpu::TEX_WIDTH * 4])
                } else {
                    Data::F32(vec![0.01; n_tok as usize * cols])
                },
            ];
            if norm {
                data.push(Data::F32(vec![1.0; cols]));
            }
            let out_len = match epi {
                Epilogue::Qkv { qd, .. } => qd,
                Epilogue::SwiGlu { ffn } => ffn,
                _ => rows,
            };
            data.push(Data::F32(vec![0.0; n_tok as usize * out_len]));
            if let Epilogue::Qkv { kvd, .. } = epi {
                data.push(Data::F32(vec![0.0; 256 * kvd]));
                data.push(Data::F32(vec![0.0; 256 * kvd]));
                data.push(Data::F32(vec![0.5; 256 * 64]));
            }
            let reps = if n_tok == 1 { 20 } else { 3 };
            let t = time(
                &ctx,
                s.shader,
                s.entry,
                &s.defs,
                &s.bindings,
                &data,
                (s.x, s.y_groups(n_tok), 1),
                reps,
            )
            .expect("kernel failed");
            let bytes = (words * 4) as f64;
            let tokens = if epi == Epilogue::Store { 1 } else { n_tok };
            rows_out.push(serde_json::json!({
                "kernel": name, "mode": mode, "tokens": tokens, "ms": t * 1e3,
                "weight_gb_per_s": bytes / t / 1e9,
                "ms_per_token": t * 1e3 / tokens as f64,
            }));
            eprintln!(
                "{name:>12} {mode:>8}: {:8.3} ms  {:6.2} GB/s  {:7.3} ms/token",
                t * 1e3,
                bytes / t / 1e9,
                t * 1e3 / tokens as f64
            );
        }
    }
    // TIDE per token (decode): the down projection with the memory term fused, the router,
    // and the once-per-token row gather, for K = 8 and 24 (compare with ffn_down above).
    for k in [8usize, 24] {
        let (rows, cols) = (576usize, 1536usize);
        let words = rows * cols / 32 * 5;
        let w: Vec<u32> = (0..words as u32)
            .map(|i| (i.wrapping_mul(2654435761) & 0x0fff_0fff) | 0x1000_1000)
            .collect();
        let step = || {
            Data::Bytes(
                [0u32, 1, 0, 0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            )
        };
        let m = Matmul {
            epi: Epilogue::ResidualMemory { k },
            norm: None,
            dtype: DType::Q4_1,
            cols,
            rows,
            row0: 0,
        };
        let s = if ctx.info.device_type == wgpu::DeviceType::Cpu {
            m.decode_rows()
        } else {
            m.decode()
        };
        let s = s.weights_in_texture_if(ctx.weight_textures);
        let data = vec![
            step(),
            Data::U32(w),
            Data::F32(vec![0.01; cols]),
            Data::F32(vec![0.0; rows]),
            Data::F32(vec![0.1; k * rows]),
            Data::F32(vec![1.0 / (k + 1) as f32; k + 1]),
        ];
        let mut timed: Vec<(String, tide_gpu::decoder::specs::Spec, Vec<Data>)> =
            vec![(format!("ffn_down+memory K={k}"), s, data)];
        let r = tide_gpu::decoder::specs::router(576, k, 1e-5);
        timed.push((
            format!("router K={k}"),
            r,
            vec![
                step(),
                Data::F32(vec![0.01; (k + 1) * 576]),
                Data::F32(vec![0.5; 576]),
                Data::F32(vec![1.0; 576]),
                Data::F32(vec![0.0; k + 1]),
            ],
        ));
        let g = tide_gpu::decoder::specs::memory_rows(DType::Q4_1, 576, k, 1e-5, false);
        timed.push((
            format!("memory rows K={k}"),
            g,
            vec![
                step(),
                Data::U32(vec![0x3c00_3c00; k * 576 / 32 * 5]),
                Data::F32(vec![1.0; k * 576]),
                Data::F32(vec![0.0; k * 576]),
            ],
        ));
        for (name, s, data) in timed {
            let t = time(
                &ctx,
                s.shader,
                s.entry,
                &s.defs,
                &s.bindings,
                &data,
                (s.x, s.y_groups(1), 1),
                20,
            )
            .expect("kernel failed");
            eprintln!("{name:>22} decode: {:8.3} ms", t * 1e3);
            rows_out.push(
                serde_json::json!({"kernel": name, "mode": "decode", "tokens": 1, "ms": t * 1e3}),
            );
        }
    }
    println!(
        "{}",
        serde_json::json!({ "adapter": ctx.describe(), "kernels": rows_out })
    );
}
