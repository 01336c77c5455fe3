//! Every WGSL kernel against the CPU reference (cpu::ops, model::dtype::dequantize), on
//! whatever adapter is present (lavapipe in CI), including sizes that are not multiples of the
//! workgroup. Tolerances are stated per test: f32 sums in a different order differ by ~1e-6
//! relative; we allow 1e-4 * (1 + |sum of |terms||) style bounds as absolute figures below.
mod common;

use common::data::{
    as_f32, cols_for, AttentionCase, EmbedCase, EngramCase, LimeCase, MatmulCase, MemoryRowsCase,
    QkvCase, RouterCase, SampleCase, ALL,
};
use common::fused::{ResidualMemoryCase, StoreCase, SwigluRouterCase};
use common::{assert_close, gpu, run_spec, Rng};

use tide_gpu::decoder::specs::{self, Epilogue, Matmul, Spec};
use tide_gpu::gpu::harness::Data;
use tide_gpu::gpu::{Binding, GpuContext};
use tide_gpu::model::dtype::DType;
use tide_gpu::model::RopeLayout;

fn dispatch(ctx: &GpuContext, s: &Spec, data: Vec<Data>, n_tok: u32) -> Vec<Vec<f32>> {
    let go = |s: &Spec| run_spec(ctx, s, &data, n_tok);
    let out = go(s);
    // Kernels that read weights run a second time with them in a texture (the layout CPU
    // adapters use): same words, same arithmetic, so the results must be bit-identical.
    if ["matmul", "matvec", "matvec_rows", "embed"].contains(&s.shader) {
        let t = s.clone().weights_in_texture();
        assert_eq!(
            (t.bindings[1].index, t.bindings[1].kind),
            (1, Binding::Texture)
        );
        let mut variants = vec![("weights in a texture", t.clone())];
        // The prefill matmul once more with a subgroup's lanes fetching weights for each
        // other (SGW), where the adapter has subgroups of 8 (lavapipe does) and the weights
        // are Q4: the same words reach the same arithmetic, so again bit-identical.
        let sg = t.clone().with_subgroups(ctx.subgroup_size);
        let q4 = matches!(
            s.defs.0.get("QUANT").map(String::as_str),
            Some("quant_q4_0" | "quant_q4_1")
        );
        if s.shader == "matmul" && q4 && ctx.subgroup_size == Some(8) {
            assert!(
                sg.defs.0.contains_key("SGW"),
                "SGW not chosen for {:?}",
                s.defs
            );
            variants.push(("weights shared across a subgroup", sg));
        }
        for (what, v) in variants {
            let out_t = go(&v);
            for (i, (a, b)) in out.iter().zip(&out_t).enumerate() {
                let diff = a.iter().zip(b).position(|(x, y)| x != y);
                assert!(
                    diff.is_none(),
                    "{} {:?}: output {i} differs with {what} at word {:?}",
                    s.shader,
                    s.defs,
                    diff
                );
            }
        }
    }
    out.iter().map(|v| as_f32(v)).collect()
}

/// The kernels that run a batch of `n_tok`: the prefill matmul, or for one token both decode
/// kernels (`decode`, the GPU one, and matvec_rows, the CPU-adapter one).
fn token_specs(m: &Matmul, n_tok: u32, decode: Spec) -> Vec<Spec> {
    if n_tok == 1 {
        vec![
            decode,
            m.decode_rows().block_loop(false),
            m.decode_rows().block_loop(true),
        ]
    } else {
        vec![m.prefill(), m.prefill().x_in_texture()]
    }
}

/// Residual epilogue (h += W x), every dtype, decode (1 token) and prefill (odd batch).
#[test]
fn matmul_residual_all_types() {
    let ctx = gpu();
    let mut rng = Rng(1);
    for dtype in ALL {
        for &(rows, cols, n_tok) in &[
            (37usize, 96usize, 1u32),
            (37, 96, 7),
            (130, 544, 1),
            (130, 544, 5),
            // more tokens than a workgroup's 128: a second workgroup along y with 5 tokens
            // (one subgroup partly filled, the others returning early)
            (130, 544, 133),
        ] {
            // The second workgroup along y is the tile's, not the type's: K-quants skip it
            // (CI time; their rows are 768 wide here).
            if n_tok == 133 && dtype.block_elems() > 32 {
                continue;
            }
            let c = MatmulCase::residual(&mut rng, dtype, rows, cols, n_tok);
            let (m, want) = (&c.m, &c.want);
            for s in token_specs(m, n_tok, m.decode()) {
                let out = dispatch(&ctx, &s, c.data(&s), n_tok);
                // |y| stays below ~10 here; f32 sums over <= 544 terms agree to ~1e-5.
                assert_close(
                    &format!(
                        "residual {} {dtype:?} {rows}x{} T={n_tok}",
                        s.shader, m.cols
                    ),
                    &out[0][..want.len()],
                    want,
                    2e-4,
                );
            }
        }
    }
}

/// matvec_rows' two forms give the same bits (the blocks are summed in the same order), so the
/// decoder may start a model on the quick-to-compile loop form and swap in the unrolled one when
/// its background compile is done without changing a single logit: every type, the residual,
/// SwiGLU and normed-store epilogues.
#[test]
fn matvec_rows_loop_and_unrolled_give_the_same_bits() {
    let ctx = gpu();
    let mut rng = Rng(21);
    for dtype in ALL {
        // (Narrow rows: the unrolled form is slow to compile, which is the point of the swap.)
        let cols = cols_for(dtype, 64);
        let mut cases = vec![MatmulCase::residual(&mut rng, dtype, 40, cols, 1)];
        cases.push(MatmulCase::swiglu(&mut rng, dtype, 24, cols, 1));
        for c in cases {
            let run = |lp: bool| {
                let s = c.m.decode_rows().block_loop(lp);
                run_spec(&ctx, &s, &c.data(&s), 1)
            };
            assert_eq!(run(true), run(false), "{dtype:?} {:?}", c.m.epi);
        }
    }
}

/// TIDE's fused FFN-down epilogue: h += W x + sum_k alpha_k M_k[row], for a batch, for one
/// token, and for one token with the memory rows in a texture and the router's logits as a
/// uniform (softmax taken in the epilogue, alpha written out).
#[test]
fn matmul_residual_memory() {
    let ctx = gpu();
    let mut rng = Rng(11);
    for n_tok in [1u32, 3] {
        let c = ResidualMemoryCase::new(&mut rng, n_tok);
        for s in token_specs(&c.m, n_tok, c.m.decode()) {
            let out = dispatch(&ctx, &s, c.data(&s), n_tok);
            c.check(&s, &out[0]);
        }
        if n_tok > 1 {
            continue;
        }
        for (lp, switch) in [(false, 1.0f32), (false, 0.0), (true, 1.0), (true, 0.0)] {
            let out = dispatch(&ctx, &c.texture_spec(lp), c.texture_data(switch), 1);
            c.check_texture(&format!("loop {lp}"), switch, &out);
        }
    }
}

/// TIDE router logits riding in the SwiGLU matvec of CPU adapters: W_r RMSNorm(x) (gamma
/// applied) for K + 1 rows, next to an unchanged SwiGLU output. Several K, so that router rows
/// land on one lane each or wrap around the lanes.
#[test]
fn matvec_swiglu_with_router() {
    let ctx = gpu();
    let mut rng = Rng(13);
    for (dtype, k) in [(DType::Q4_1, 4usize), (DType::Q8_0, 40)] {
        let c = SwigluRouterCase::new(&mut rng, dtype, k);
        for lp in [false, true] {
            let out = dispatch(&ctx, &c.spec(lp), c.data(), 1);
            c.check(&format!("loop {lp}"), &out);
        }
    }
}

/// The router kernel of batches (and of GPUs for one token): softmax over K blocks and NULL of
/// W_r RMSNorm(h) per token.
#[test]
fn router_softmax_per_token() {
    let ctx = gpu();
    let mut rng = Rng(14);
    let c = RouterCase::new(&mut rng, 96, 6, 3);
    let out = dispatch(&ctx, &c.spec(), c.data(), c.n_tok);
    c.check(&out[0]);
}

/// TIDE memory rows of a batch, both kernels (GPUs: a workgroup per row; CPU adapters: a lane
/// per row), every table form: decoded, RMS-normalised and scaled by the block's gamma, or
/// just decoded when the tables are stored normalised; and SVD tables (A_k rows 32 or 64 wide
/// rebuilt through B_k, f32 or f16, rows beyond the rank zero) in the same dispatch.
#[test]
fn memory_rows_both_kernels() {
    let ctx = gpu();
    let mut rng = Rng(15);
    for dtype in [DType::Q4_1, DType::Q8_0, DType::F16] {
        for normalized in [false, true] {
            for width in [None, Some((32, false)), Some((64, false)), Some((64, true))] {
                let c = match width {
                    None => MemoryRowsCase::new(&mut rng, dtype, normalized),
                    Some((w, f16)) => MemoryRowsCase::svd(&mut rng, dtype, normalized, w, f16),
                };
                for s in c.specs() {
                    let out = dispatch(&ctx, &s, c.data(), c.n_tok);
                    c.check(&s, &out[0]);
                }
            }
        }
    }
}

/// Store epilogue with fused RMSNorm (the LM head): last token only, into a chunk at ROW0;
/// the batch kernel and the one-token kernel of CPU adapters.
#[test]
fn matmul_store_norm_last_token() {
    let ctx = gpu();
    let mut rng = Rng(2);
    for dtype in ALL {
        let c = StoreCase::new(&mut rng, dtype);
        for (s, n_tok) in c.specs() {
            let out = dispatch(&ctx, &s, c.data(n_tok), n_tok);
            c.check(&s, &out[0]);
        }
    }
}

/// SwiGLU epilogue with fused RMSNorm: act = silu(gate x) * (up x); odd FFN width.
#[test]
fn matmul_swiglu() {
    let ctx = gpu();
    let mut rng = Rng(3);
    for dtype in [DType::Q4_1, DType::F16, DType::Q8_0] {
        for n_tok in [1u32, 6] {
            let c = MatmulCase::swiglu(&mut rng, dtype, 45, 128, n_tok);
            let m = &c.m;
            for s in token_specs(m, n_tok, m.decode_tuned(dtype != DType::F16)) {
                let out = dispatch(&ctx, &s, c.data(&s), n_tok);
                assert_close(
                    &format!("swiglu {} {dtype:?} T={n_tok}", s.shader),
                    &out[0],
                    &c.want,
                    2e-4,
                );
            }
        }
    }
}

/// Several tokens in one decode step (matvec_rows' `tokens` entry: each weight block loaded
/// once for every token): the residual and RMSNorm + SwiGLU epilogues for 2, 4 and 8 tokens,
/// rows that leave a 4-row group partly filled, every token against the CPU reference.
#[test]
fn matvec_rows_several_tokens() {
    let ctx = gpu();
    let mut rng = Rng(16);
    for dtype in [DType::Q4_1, DType::Q8_0, DType::F16, DType::Q4_K] {
        for n_tok in [2u32, 4, 8] {
            let c = MatmulCase::residual(&mut rng, dtype, 130, 544, n_tok);
            let s = c.m.decode_rows_tokens(n_tok as usize);
            let out = dispatch(&ctx, &s, c.data(&s), n_tok);
            let tag = format!(
                "residual tokens {dtype:?} {}x{} T={n_tok}",
                c.m.rows, c.m.cols
            );
            assert_close(&tag, &out[0][..c.want.len()], &c.want, 2e-4);
            let c = MatmulCase::swiglu(&mut rng, dtype, 45, 256, n_tok);
            let s = c.m.decode_rows_tokens(n_tok as usize);
            let out = dispatch(&ctx, &s, c.data(&s), n_tok);
            let tag = format!("swiglu tokens {dtype:?} T={n_tok}");
            assert_close(&tag, &out[0], &c.want, 2e-4);
        }
    }
}

/// QKV epilogue: q out, k and v appended at pos0 + t, RoPE in both pair layouts; the cache
/// in buffers (every kernel form), and in storage textures (q and k in slot order) through
/// the CPU adapters' forms: matvec_rows and the prefill matmul with x and weights in textures.
#[test]
fn matmul_qkv_rope_both_layouts() {
    let ctx = gpu();
    let mut rng = Rng(4);
    for layout in [RopeLayout::Adjacent, RopeLayout::RotateHalf] {
        for (n_tok, pos0) in [(1u32, 9u32), (5, 3)] {
            let c = QkvCase::new(&mut rng, layout, n_tok, pos0, false);
            let m = &c.m;
            for s in token_specs(m, n_tok, m.decode_tuned(layout == RopeLayout::Adjacent)) {
                let out = dispatch(&ctx, &s, c.data(&s), n_tok);
                c.check(&s, &out);
            }
            let c = QkvCase::new(&mut rng, layout, n_tok, pos0, true);
            let m = &c.m;
            let s = if n_tok == 1 {
                m.decode_rows().weights_in_texture()
            } else {
                m.prefill().x_in_texture().weights_in_texture()
            };
            let out = dispatch(&ctx, &s, c.data(&s), n_tok);
            c.check(&s, &out);
        }
    }
}

/// Tokens of several sequences in one step (continuous batching): the QKV epilogue and
/// Qwen3's head_norm rotate each token at its own position and write its k and v into its
/// own sequence's slot of the cache; K/V in buffers through the batch matmul and in textures
/// through matvec_rows' `tokens` form, as the decoder runs them.
#[test]
fn qkv_in_slots() {
    let ctx = gpu();
    let mut rng = Rng(16);
    let run = |s: &Spec, data: Vec<Data>, n_tok| -> Vec<Vec<f32>> {
        run_spec(&ctx, s, &data, n_tok)
            .iter()
            .map(|v| as_f32(v))
            .collect()
    };
    // (slot, position): the last position of a slot, slots out of order.
    let toks = [(2u32, 0u32), (0, 15), (1, 7)];
    let n = toks.len() as u32;
    for (layout, kv_tex) in [
        (RopeLayout::Adjacent, false),
        (RopeLayout::RotateHalf, true),
    ] {
        let c = QkvCase::seqs(&mut rng, layout, kv_tex, false, &toks, 3);
        let s = if kv_tex {
            c.m.decode_rows_tokens(toks.len()).weights_in_texture()
        } else {
            c.m.prefill()
        };
        c.check(&s, &run(&s, c.data(&s), n));
        let c = QkvCase::seqs(&mut rng, layout, kv_tex, true, &toks, 3);
        let s = c.m.prefill();
        let raw = run(&s, c.data(&s), n).remove(0);
        let hn = c.head_norm_spec();
        c.check(&hn, &run(&hn, c.head_norm_data(&raw), n));
    }
}

/// Qwen2's q/k/v biases in the QKV epilogue, and Qwen3's per-head q/k norm: the raw QKV
/// matmul (rows as they are, bias added) and then head_norm, against the CPU reference's
/// bias, head_rmsnorm and rope; K/V in buffers and in textures (slot order), both layouts.
#[test]
fn qkv_bias_and_head_norm() {
    let ctx = gpu();
    let mut rng = Rng(12);
    // (One run per spec, no weight-layout variants: matmul_qkv_rope_both_layouts has those.)
    let run = |s: &Spec, data: Vec<Data>, n_tok| -> Vec<Vec<f32>> {
        run_spec(&ctx, s, &data, n_tok)
            .iter()
            .map(|v| as_f32(v))
            .collect()
    };
    use RopeLayout::*;
    for (layout, n_tok, pos0, kv_tex) in [
        (Adjacent, 1u32, 9u32, false),
        (Adjacent, 5, 3, true),
        (RotateHalf, 5, 3, false),
        (RotateHalf, 1, 9, true),
    ] {
        let c = QkvCase::with(&mut rng, layout, n_tok, pos0, kv_tex, true, false);
        let s = match (kv_tex, n_tok) {
            (false, 1) => c.m.decode_tuned(false),
            (false, _) => c.m.prefill(),
            (true, 1) => c.m.decode_rows().weights_in_texture(),
            (true, _) => c.m.prefill().x_in_texture().weights_in_texture(),
        };
        c.check(&s, &run(&s, c.data(&s), n_tok));
        let c = QkvCase::with(&mut rng, layout, n_tok, pos0, kv_tex, true, true);
        let s = if n_tok == 1 {
            c.m.decode_tuned(false)
        } else {
            c.m.prefill()
        };
        let raw = run(&s, c.data(&s), n_tok).remove(0);
        assert_close("raw qkv with bias", &raw, &c.raw.concat(), 2e-4);
        let hn = c.head_norm_spec();
        c.check(&hn, &run(&hn, c.head_norm_data(&raw), n_tok));
    }
}

/// The subgroup variants of the prefill kernels (SGW, SGKV) are tested only where the adapter
/// has subgroups of 8. Lavapipe on an AVX2 machine (CI's adapter) does: make sure the tests
/// never skip them silently there.
#[test]
fn lavapipe_takes_the_subgroup_variants() {
    let ctx = gpu();
    // The library reads no environment: TIDE_SUBGROUPS cannot turn them off here.
    if common::lavapipe_or_skip(&ctx, "lavapipe_takes_the_subgroup_variants") {
        assert_eq!(
            ctx.subgroup_size,
            Some(8),
            "lavapipe on AVX2 should offer subgroups of 8: {}",
            ctx.describe()
        );
    }
}

/// Causal GQA attention over a filled cache, decode and a batch, at odd lengths.
#[test]
fn attention_gqa_causal() {
    let ctx = gpu();
    let mut rng = Rng(5);
    // head_dim 64 (SmolLM2's) is the one the subgroup variant of prefill takes.
    for (hd, n_tok, pos0) in [
        (16usize, 1u32, 0u32),
        (16, 1, 70),
        (16, 7, 33),
        // 70 tokens from position 3: two tiles of 64 lanes, the second partly empty.
        (16, 70, 3),
        (64, 1, 70),
        (64, 7, 33),
        (64, 70, 3),
    ] {
        // Llama-3.2-1B's 32 query heads over 8 KV heads as well as 6 over 2.
        let c = if hd == 64 && n_tok == 7 {
            AttentionCase::with_heads(&mut rng, hd, 32, 8, n_tok, pos0)
        } else {
            AttentionCase::new(&mut rng, hd, n_tok, pos0)
        };
        // The GPU kernel, the CPU-adapter one and, on adapters with subgroups of 8 (lavapipe),
        // prefill with a subgroup's lanes fetching K/V chunks for each other: head_dim 64 must
        // take it.
        let [gpu_spec, cpu_spec] = c.specs();
        let sg = cpu_spec.clone().with_subgroups(ctx.subgroup_size);
        let mut variants = vec![gpu_spec, cpu_spec];
        if n_tok > 1 && hd == 64 && ctx.subgroup_size == Some(8) {
            assert!(
                sg.defs.0.contains_key("SGKV"),
                "SGKV not chosen: {:?}",
                sg.defs
            );
            variants.push(sg);
        }
        for s in variants {
            let out = dispatch(&ctx, &s, c.data(&s), n_tok);
            c.check(&s, &out);
        }
    }
}

/// Attention in a K/V cache of several sequences: one sequence in a later slot (decode and a
/// batch), and tokens that each continue their own sequence, at their own positions
/// (continuous batching), against the CPU over each sequence's own rows.
#[test]
fn attention_in_slots() {
    let ctx = gpu();
    let mut rng = Rng(15);
    for (hd, n_tok, pos0) in [(16usize, 1u32, 41u32), (16, 7, 20), (64, 7, 20)] {
        let c = AttentionCase::in_slot(&mut rng, hd, 6, 2, n_tok, pos0, 3, 2);
        let [gpu_spec, cpu_spec] = c.specs();
        let sg = cpu_spec.clone().with_subgroups(ctx.subgroup_size);
        for s in [gpu_spec, cpu_spec, sg] {
            let out = dispatch(&ctx, &s, c.data(&s), n_tok);
            c.check(&s, &out);
        }
    }
    // Slot, position per token: lengths from 1 to the whole context, slots out of order.
    for (hd, toks) in [
        (16usize, vec![(2u32, 0u32), (0, 79), (3, 5)]),
        (64, vec![(1, 33), (0, 2), (3, 60), (2, 11), (4, 0)]),
    ] {
        let c = AttentionCase::seqs(&mut rng, hd, 5, &toks);
        for s in c.seqs_specs() {
            let out = dispatch(&ctx, &s, c.data(&s), toks.len() as u32);
            c.check(&s, &out);
        }
    }
}

/// Embedding lookup from every storage type, with a chunk offset (ids outside are skipped).
#[test]
fn embed_rows() {
    let ctx = gpu();
    let mut rng = Rng(6);
    for dtype in ALL {
        let c = EmbedCase::new(&mut rng, dtype);
        let s = specs::embed(dtype, c.cols, c.row0, c.rows);
        let out = dispatch(&ctx, &s, c.data(), c.ids.len() as u32);
        c.check(&out[0]);
    }
}

/// Top-k on the GPU equals a CPU sort (value desc, id asc on ties), with the penalty applied.
#[test]
fn top_k_and_penalty() {
    let ctx = gpu();
    let mut rng = Rng(7);
    let c = SampleCase::new(&mut rng);
    for k in [1usize, 7, 40, 64] {
        let out = run_spec(&ctx, &c.top_k_spec(k), &c.top_k_data(k), 1);
        c.check_top_k(k, &out[3]);
    }
    // Penalty: positive logits divided, negative multiplied, other ids untouched.
    let out = run_spec(&ctx, &c.penalty_spec(), &c.penalty_data(), 1);
    c.check_penalty(&as_f32(&out[0]));
}

/// Bindings are named: a spec whose binding names or kinds disagree with the variables the
/// expanded WGSL declares, or that leaves out one its entry point uses, is refused when the
/// kernel is built, with both sides named; and a bind group is refused when a named resource
/// is missing or unknown.
#[test]
fn binding_names_are_checked_against_the_shader() {
    use tide_gpu::gpu::{slot, Kernel};
    let s = specs::router(64, 4, 1e-5);
    let build = |b: &[tide_gpu::gpu::Slot]| Kernel::source(s.shader, s.entry, &s.defs, b, None);
    build(&s.bindings).expect("the router's own spec matches its shader");
    // A wrong name.
    let mut b = s.bindings.clone();
    b[2] = slot(2, "H", Binding::Read);
    let e = build(&b).unwrap_err().to_string();
    assert!(
        e.contains("declared as X") && e.contains("spec says H"),
        "{e}"
    );
    // A wrong kind.
    let mut b = s.bindings.clone();
    b[4] = slot(4, "A", Binding::Read);
    let e = build(&b).unwrap_err().to_string();
    assert!(e.contains("ReadWrite") && e.contains("A (Read)"), "{e}");
    // One left out, one too many.
    let e = build(&s.bindings[..4]).unwrap_err().to_string();
    assert!(
        e.contains("uses A at binding 4") && e.contains("does not bind it"),
        "{e}"
    );
    let mut b = s.bindings.clone();
    b.push(slot(5, "EXTRA", Binding::Read));
    let e = build(&b).unwrap_err().to_string();
    assert!(e.contains("declares nothing there"), "{e}");
    // Every spec the decoder uses on lavapipe passes the check for every dtype.
    for dtype in ALL {
        let m = Matmul {
            epi: Epilogue::ResidualMemory { k: 4 },
            norm: None,
            dtype,
            cols: 64,
            rows: 64,
            row0: 0,
        };
        for s in [
            m.decode_rows().memory_in_texture(),
            m.prefill().x_in_texture().weights_in_texture(),
            m.decode(),
        ] {
            Kernel::source(s.shader, s.entry, &s.defs, &s.bindings, None)
                .unwrap_or_else(|e| panic!("{dtype:?} {}:{}: {e}", s.shader, s.entry));
        }
    }
    // Binding by name: a missing or unknown name is an error, not a wrong bind group.
    let ctx = gpu();
    let layout = Kernel::layout_for(&ctx.device, &s.bindings);
    let k = Kernel::build(
        &ctx.device,
        s.shader,
        s.entry,
        &s.defs,
        &layout,
        &s.bindings,
        None,
    )
    .unwrap();
    let buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 4096,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
        mapped_at_creation: false,
    });
    let all: Vec<(&str, wgpu::BindingResource)> = s
        .bindings
        .iter()
        .map(|b| (b.name, buf.as_entire_binding()))
        .collect();
    assert!(k.bind(&ctx.device, &all).is_ok());
    let e = k.bind(&ctx.device, &all[..4]).unwrap_err().to_string();
    assert!(e.contains("no resource for binding A"), "{e}");
    let mut extra = all.clone();
    extra.push(("Z", buf.as_entire_binding()));
    let e = k.bind(&ctx.device, &extra).unwrap_err().to_string();
    assert!(e.contains("no binding named Z"), "{e}");
}

/// matvec_rows where lanes own many 4-row groups, as in a 1B model's LM head (128256 rows):
/// lavapipe read wrong texels once a lane had looped over 169 groups with its weights in a
/// texture (storage buffers were right), so `decode_rows` spreads the groups over more
/// workgroups, at most MAX_GROUPS_PER_LANE a lane. `dispatch` also checks the texture form
/// against the buffer form word for word.
#[test]
fn matvec_rows_many_groups_per_lane() {
    let ctx = gpu();
    let mut rng = Rng(12);
    for dtype in [DType::Q8_0, DType::Q6_K] {
        let c = MatmulCase::residual(&mut rng, dtype, 40000, 2048, 1);
        let s = c.m.decode_rows();
        let lanes: usize = s.defs.0["LANES"].parse().unwrap();
        assert!(10000usize.div_ceil(lanes) <= tide_gpu::decoder::specs::MAX_GROUPS_PER_LANE);
        let out = dispatch(&ctx, &s, c.data(&s), 1);
        // |y| reaches ~100 over 2048 terms; relative to max(1, |y|) the sums agree to ~1e-5.
        assert_close(
            &format!("{dtype:?} 40000x2048, {lanes} lanes"),
            &out[0][..c.want.len()],
            &c.want,
            2e-4,
        );
    }
}

/// LIMe's mix (lime.wgsl) at layer 2 of a batch of 3 tokens (tests/common/data.rs, LimeCase).
#[test]
fn lime_mix_of_earlier_layers() {
    let ctx = gpu();
    let c = LimeCase::new(&mut Rng(17));
    let out = dispatch(&ctx, &c.spec(), c.data(), c.n_tok);
    c.check(&out);
}

/// Engram's gate (4-bit rows decoded, k | v projected, v gated, the history row written) and
/// convolution (engram.wgsl) for tokens of three sequences at their own positions and slots
/// (tests/common/data.rs, EngramCase).
#[test]
fn engram_gate_and_conv() {
    let ctx = gpu();
    let c = EngramCase::new(&mut Rng(19));
    for s in c.specs() {
        let out = dispatch(&ctx, &s, c.data(&s), c.toks.len() as u32);
        c.check(&s, &out);
    }
}
