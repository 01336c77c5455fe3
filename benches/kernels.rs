//! Kernel throughput on SmolLM2-135M shapes (random Q4_1 / Q8_0 data): the decode matvec and
//! the prefill matmul of each projection, as GB/s of weights read. Prints one JSON object.
//! Run: cargo bench --bench kernels
//! Env: TIDE_BENCH_MODE=decode|prefill|tokens (tokens: one decode step of 1, 2, 4 and 8
//! tokens through matvec_rows' multi-token entry, CPU adapters), TIDE_BENCH_KERNELS=qkv,ffn_gate_up,tide (a subset),
//! TIDE_BENCH_DTYPE=Q4_K (the layers' type instead of Q4_1; shapes whose rows are not whole
//! blocks of it are skipped: for the K-quants only ffn_down, 1536 wide),
//! TIDE_AB_SHADER_DIR=DIR (A/B: committed shaders against edited copies in DIR, taking turns),
//! TIDE_AB_TILE=GR,TPL,WG (A/B: the default prefill tile against this one).
use tide_gpu::decoder::specs::{Epilogue, Matmul};
use tide_gpu::gpu::harness::{time, time_ab, Data, Variant};
use tide_gpu::gpu::{gpu_words, GpuContext, GpuOptions};
use tide_gpu::model::DType;
use tide_gpu::options::PrefillTile;

/// The Step uniform of `n_tok` tokens from position 0, no penalty, one sequence from K/V row
/// 0, with room for the per-token entries of several-sequence steps (common.wgsl's Step).
fn step_uniform(n_tok: u32) -> Vec<u8> {
    let mut step: Vec<u8> = [0u32, n_tok, 0, 0, 0, 0, 0, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    step.resize(32 + tide_gpu::decoder::MAX_SEQS * 16, 0);
    step
}

fn main() {
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("no GPU adapter");
    // A/B mode: TIDE_AB_SHADER_DIR=<folder of edited shaders> times each kernel built from
    // the committed shaders (A) and from that folder (B), taking turns, and prints B/A.
    // TIDE_AB_TILE=GR,TPL,WG: the same for the prefill matmul's tile (B) against the default.
    let ab_dir = std::env::var("TIDE_AB_SHADER_DIR").ok();
    let ab_tile: Option<PrefillTile> = std::env::var("TIDE_AB_TILE")
        .ok()
        .map(|t| t.parse().expect("TIDE_AB_TILE"));
    let only = std::env::var("TIDE_BENCH_KERNELS").ok();
    let layer_dtype = match std::env::var("TIDE_BENCH_DTYPE") {
        Ok(n) => tide_gpu::model::dtype::ALL_TYPES
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(&n))
            .unwrap_or_else(|| panic!("TIDE_BENCH_DTYPE: unknown type {n}")),
        Err(_) => DType::Q4_1,
    };
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
                kv_tex: false,
                bias: false,
                raw: false,
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
        let dtype = if dtype == DType::Q4_1 {
            layer_dtype
        } else {
            dtype
        };
        if cols % dtype.block_elems() != 0 {
            continue;
        }
        // TIDE_BENCH_KERNELS=qkv,ffn_down: only these projections.
        if only
            .as_ref()
            .is_some_and(|o| !o.split(',').any(|k| k == name))
        {
            continue;
        }
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
            Ok("tokens") => &[("decode", 1), ("tokens", 2), ("tokens", 4), ("tokens", 8)],
            _ => &[("decode", 1), ("prefill", 128)],
        };
        for &(mode, n_tok) in modes {
            // The LM head only ever runs on the last token (the decode kernel, whatever the batch).
            // The kernels the decoder picks on this adapter: on CPU adapters matvec_rows for
            // one token and x rows in a texture for batches; weights as ctx stores them.
            let cpu = ctx.info.device_type == wgpu::DeviceType::Cpu;
            let pick = |tile: PrefillTile| {
                let s = if mode == "tokens" && epi != Epilogue::Store {
                    m.decode_rows_tokens(n_tok as usize)
                } else if n_tok == 1 && cpu {
                    m.decode_rows()
                } else if n_tok == 1 || epi == Epilogue::Store {
                    m.decode_tuned(cpu)
                } else if cpu {
                    m.prefill_tiled(tile).x_in_texture()
                } else {
                    m.prefill_tiled(tile)
                };
                s.weights_in_texture_if(ctx.weight_textures)
                    .with_subgroups(ctx.subgroup_size)
            };
            let s = pick(PrefillTile::default());
            // The B side of an A/B: another prefill tile, or the same spec built from edited
            // shaders.
            let s_b = match ab_tile {
                Some(t) if n_tok > 1 => Some(pick(t)),
                _ => ab_dir.as_ref().map(|_| s.clone()),
            };
            let mut data = vec![
                Data::Bytes(step_uniform(n_tok)),
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
            let reps = if n_tok == 1 || mode == "tokens" {
                20
            } else {
                3
            };
            if let Some(s_b) = &s_b {
                let (a, b) = time_ab(
                    &ctx,
                    s.shader,
                    s.entry,
                    &s.bindings,
                    &data,
                    reps,
                    15,
                    [
                        Variant {
                            defs: &s.defs,
                            groups: (s.x, s.y_groups(n_tok), 1),
                            shader_dir: None,
                        },
                        Variant {
                            defs: &s_b.defs,
                            groups: (s_b.x, s_b.y_groups(n_tok), 1),
                            shader_dir: ab_dir.as_deref(),
                        },
                    ],
                )
                .expect("kernel failed");
                eprintln!(
                    "{name:>12} {mode:>8}: A {:8.3} ms  B {:8.3} ms  B/A {:5.3}",
                    a * 1e3,
                    b * 1e3,
                    b / a
                );
                rows_out.push(serde_json::json!({
                    "kernel": name, "mode": mode, "ms_a": a * 1e3, "ms_b": b * 1e3, "b_over_a": b / a,
                }));
                continue;
            }
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
                "kernel": name, "dtype": dtype.name(), "mode": mode, "tokens": tokens, "ms": t * 1e3,
                "weight_gb_per_s": bytes / t / 1e9,
                "gweights_per_s": (rows * cols) as f64 / t / 1e9,
                "ms_per_token": t * 1e3 / tokens as f64,
            }));
            eprintln!(
                "{name:>12} {} {mode:>8}: {:8.3} ms  {:6.2} GB/s  {:6.2} Gweights/s  {:7.3} ms/token",
                dtype.name(),
                t * 1e3,
                bytes / t / 1e9,
                (rows * cols) as f64 / t / 1e9,
                t * 1e3 / tokens as f64
            );
        }
    }
    // TIDE per token (decode), as the decoder runs it on this adapter, for K = 8 and 24:
    // CPU adapters fuse the router into gate/up and its softmax into the down projection's
    // memory epilogue; GPUs run the router kernel and the storage form of the memory term.
    // Compare with ffn_gate_up and ffn_down above.
    let cpu = ctx.info.device_type == wgpu::DeviceType::Cpu;
    let random_words = |n: usize| -> Vec<u32> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(2654435761) & 0x0fff_0fff) | 0x1000_1000)
            .collect()
    };
    let step = || Data::Bytes(step_uniform(1));
    // Rows of f32 as the decoder's row textures hold them (harness width).
    let tex_rows = |rows: usize, v: f32| Data::F32(vec![v; rows * tide_gpu::gpu::TEX_WIDTH * 4]);
    let tide_ks: &[usize] = match &only {
        Some(o) if !o.split(',').any(|k| k == "tide") => &[],
        _ => &[8, 24],
    };
    for &k in tide_ks {
        let (d, ffn) = (576usize, 1536usize);
        let mm = |epi, norm, rows, cols| Matmul {
            epi,
            norm,
            dtype: DType::Q4_1,
            cols,
            rows,
            row0: 0,
        };
        let mut timed: Vec<(String, tide_gpu::decoder::specs::Spec, Vec<Data>)> = Vec::new();
        let down = mm(Epilogue::ResidualMemory { k }, None, d, ffn);
        let mut down_data = vec![
            step(),
            Data::U32(random_words(d * ffn / 32 * 5)),
            Data::F32(vec![0.01; ffn]),
            Data::F32(vec![0.0; d]),
        ];
        if cpu {
            let gu = mm(Epilogue::SwiGlu { ffn }, Some(1e-5), 2 * ffn, d);
            timed.push((
                format!("ffn_gate_up+router K={k}"),
                gu.decode_rows().with_router(k),
                vec![
                    step(),
                    Data::U32(random_words(2 * ffn * d / 32 * 5)),
                    Data::F32(vec![0.01; d]),
                    Data::F32(vec![1.0; d]),
                    Data::F32(vec![0.0; ffn]),
                    tex_rows(k + 1, 0.01),
                    Data::F32(vec![0.0; k + 1]),
                ],
            ));
            down_data.extend([
                tex_rows(k, 0.1),
                Data::F32(vec![0.0; k + 1]),
                Data::F32(vec![0.0; (k + 2).div_ceil(4) * 4]),
            ]);
            timed.push((
                format!("ffn_down+memory K={k}"),
                down.decode_rows().memory_in_texture(),
                down_data,
            ));
        } else {
            down_data.extend([
                Data::F32(vec![0.1; k * d]),
                Data::F32(vec![1.0 / (k + 1) as f32; k + 1]),
            ]);
            timed.push((
                format!("ffn_down+memory K={k}"),
                down.decode_tuned(false),
                down_data,
            ));
            timed.push((
                format!("router K={k}"),
                tide_gpu::decoder::specs::router(d, k, 1e-5),
                vec![
                    step(),
                    Data::F32(vec![0.01; (k + 1) * d]),
                    Data::F32(vec![0.5; d]),
                    Data::F32(vec![1.0; d]),
                    Data::F32(vec![0.0; k + 1]),
                ],
            ));
        }
        let rows_spec = if cpu {
            tide_gpu::decoder::specs::memory_rows_by_lane(DType::Q4_1, d, k, 1e-5, false)
        } else {
            tide_gpu::decoder::specs::memory_rows(DType::Q4_1, d, k, 1e-5, false)
        };
        timed.push((
            format!("memory rows K={k}"),
            rows_spec,
            vec![
                step(),
                Data::U32(vec![0x3c00_3c00; k * d / 32 * 5]),
                Data::F32(vec![1.0; k * d]),
                Data::F32(vec![0.0; k * d]),
            ],
        ));
        for (name, s, data) in timed {
            // Weights (binding 1) of the matrix kernels only: the router and the row
            // gather read theirs from storage.
            let tex = ctx.weight_textures && s.shader.starts_with("mat");
            let s = s.weights_in_texture_if(tex);
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
            eprintln!("{name:>24} decode: {:8.3} ms", t * 1e3);
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
