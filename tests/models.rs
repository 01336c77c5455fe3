//! Whole-model checks: golden logits from an independent numpy reference (tiny LLaMA in
//! Hugging Face layout, f32/f16/bf16 safetensors), GPU vs CPU on SmolLM2 for prefill and 64
//! decode steps, and the GGUF path vs the same model converted to safetensors.
mod common;

use std::path::Path;

use common::{assert_close, gpu, json_ids, json_rows, repo, small_decoder, smollm2};
use tide_gpu::cpu::CpuModel;
use tide_gpu::decoder::{DecoderOptions, GpuDecoder, KernelSet};
use tide_gpu::model::{self, RopeLayout};

fn golden() -> serde_json::Value {
    let p = repo().join("tests/fixtures/tiny_llama/golden.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The token ids of the golden sequence.
fn golden_ids(g: &serde_json::Value) -> Vec<u32> {
    json_ids(&g["ids"])
}

/// CPU reference and GPU, token by token and as one batch, against numpy golden logits.
#[test]
fn tiny_llama_matches_numpy_reference() {
    let g = golden();
    let ids = golden_ids(&g);
    for (variant, dir) in [("f32", ""), ("f16", "model_f16"), ("bf16", "model_bf16")] {
        let path = repo().join("tests/fixtures/tiny_llama").join(dir);
        let m = model::load(&path).unwrap();
        assert_eq!(m.config.rope_layout, RopeLayout::RotateHalf);
        let want = json_rows(&g["logits"][variant]);
        // CPU, one token at a time: every position.
        let cpu = std::sync::Arc::new(CpuModel::new(&m));
        let mut s = cpu.session(64);
        for (t, &id) in ids.iter().enumerate() {
            let got = s.feed(&[id]).unwrap().to_vec();
            assert_close(&format!("cpu {variant} pos {t}"), &got, &want[t], 1e-4);
        }
        // Both kernel families, whatever the adapter: the CPU-adapter set and the GPU set.
        for ks in [KernelSet::CpuAdapter, KernelSet::Gpu] {
            // The prefill kernels, however short the batch.
            let decoder = || small_decoder(&m, ks);
            let tag = format!("gpu ({ks:?} kernels) {variant}");
            // GPU decode, every position; then the whole sequence as one prefill batch.
            let mut d = decoder();
            for (t, &id) in ids.iter().enumerate() {
                d.feed(&[id]).unwrap();
                let got = d.logits().unwrap();
                assert_close(&format!("{tag} pos {t}"), &got, &want[t], 1e-3);
            }
            d.reset();
            d.feed(&ids).unwrap();
            let got = d.logits().unwrap();
            let last = want.last().unwrap();
            assert_close(&format!("{tag} prefill"), &got, last, 1e-3);
            // A batch, then one decode step over the cache the batch wrote (on CPU adapters,
            // through the texture copies of its rows). A fresh decoder: no earlier step may
            // have left the same rows behind.
            let n = ids.len();
            let mut d = decoder();
            d.feed(&ids[..n - 1]).unwrap();
            d.feed(&ids[n - 1..]).unwrap();
            let got = d.logits().unwrap();
            assert_close(&format!("{tag} prefill then decode"), &got, last, 1e-3);
        }
    }
}

/// A short prompt runs token by token through the decode kernels (so a driver that compiles at
/// first dispatch never compiles the prefill kernels for it); a longer one is one batch. Both
/// give the numpy golden logits.
#[test]
fn short_prompts_run_token_by_token() {
    let g = golden();
    let ids = golden_ids(&g);
    let want = json_rows(&g["logits"]["f32"]);
    let m = model::load(&repo().join("tests/fixtures/tiny_llama")).unwrap();
    let opts = DecoderOptions {
        ctx_len: 64,
        token_by_token_upto: 8,
        ..Default::default()
    };
    assert!(ids.len() > 8, "the fixture needs more than 8 tokens");
    for (n, steps) in [(8, (8, 0)), (ids.len(), (0, 1))] {
        let mut d = GpuDecoder::new(gpu(), &m, opts.clone()).unwrap();
        d.feed(&ids[..n]).unwrap();
        let got = d.logits().unwrap();
        assert_eq!(d.steps, steps, "{n} tokens: (single steps, batches)");
        assert_close(&format!("{n} tokens"), &got, &want[n - 1], 1e-3);
    }
}

/// Largest |a - b|; a NaN on either side counts as infinitely far (f32::max would skip it).
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "logit counts differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (x - y).abs();
            if d.is_nan() {
                f32::INFINITY
            } else {
                d
            }
        })
        .fold(0.0, f32::max)
}

/// How far SmolLM2's GPU logits may be from the f32 CPU reference's (sums in another order):
/// on lavapipe they differ by up to 1.0e-4.
const GPU_CPU_LOGITS: f32 = 1e-3;

/// SmolLM2 Q4_1: GPU logits vs the f32 CPU reference after a prefill and over 64 decode steps
/// (greedy on the CPU's choice so both see the same tokens).
#[test]
fn smollm2_gpu_matches_cpu_reference() {
    let m = model::load(&smollm2()).unwrap();
    let prompt = m
        .tokenizer
        .encode(
            "The quick brown fox jumps over the lazy dog. In 1905, Albert Einstein",
            true,
        )
        .unwrap();
    let cpu = std::sync::Arc::new(CpuModel::new(&m));
    let mut s = cpu.session(256);
    let mut d = GpuDecoder::new(
        gpu(),
        &m,
        DecoderOptions {
            ctx_len: 256,
            max_batch: 128,
            // The prefill kernels, however short the batch.
            token_by_token_upto: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let want = s.feed(&prompt).unwrap().to_vec();
    d.feed(&prompt).unwrap();
    let got = d.logits().unwrap();
    let pre = max_diff(&got, &want);
    println!(
        "prefill ({} tokens): max |gpu - cpu| logit = {pre:.2e}",
        prompt.len()
    );
    assert!(pre < GPU_CPU_LOGITS, "prefill logits differ by {pre}");
    let mut worst = 0.0f32;
    let mut tok = tide_gpu::sample::top_k_of(&want, 1)[0].0;
    for step in 0..64 {
        let want = s.feed(&[tok]).unwrap().to_vec();
        d.feed(&[tok]).unwrap();
        let got = d.logits().unwrap();
        let diff = max_diff(&got, &want);
        worst = worst.max(diff);
        assert!(
            diff < GPU_CPU_LOGITS,
            "decode step {step}: logits differ by {diff}"
        );
        // The GPU's own greedy choice (top-k kernel) must be the CPU's unless it is a near-tie
        // (with every logit within the tolerance, a gap under twice it).
        let g1 = d.top_k(1, 1.0, &[]).unwrap()[0];
        let c2 = tide_gpu::sample::top_k_of(&want, 2);
        if g1.0 != c2[0].0 {
            assert!(
                (c2[0].1 - c2[1].1).abs() < 2.0 * GPU_CPU_LOGITS,
                "step {step}: GPU argmax {} vs CPU {}",
                g1.0,
                c2[0].0
            );
        }
        tok = c2[0].0;
    }
    println!("64 decode steps: max |gpu - cpu| logit = {worst:.2e}");
}

/// A decoder of 128 positions, batches of up to 64 through the prefill kernels however short.
fn decoder_128(ctx: tide_gpu::gpu::GpuContext, m: &model::Model) -> GpuDecoder {
    let opts = DecoderOptions {
        ctx_len: 128,
        max_batch: 64,
        token_by_token_upto: 0,
        ..Default::default()
    };
    GpuDecoder::new(ctx, m, opts).unwrap()
}

/// An adapter without shader-f16 and without subgroups, forced by GpuOptions' switches (the
/// portable kernels: f32 arithmetic, no subgroup variants): the device opens without them and
/// SmolLM2's logits after a prefill batch and over decode steps still equal the CPU's.
#[test]
fn smollm2_without_f16_or_subgroups_matches_cpu() {
    let m = model::load(&smollm2()).unwrap();
    let ctx = common::gpu_with(&tide_gpu::gpu::GpuOptions {
        no_f16: true,
        subgroups: false,
        ..Default::default()
    });
    assert!(
        !ctx.f16 && ctx.subgroup_size.is_none(),
        "{}",
        ctx.describe()
    );
    let mut d = decoder_128(ctx, &m);
    let prompt = m
        .tokenizer
        .encode("Portable kernels, same logits:", true)
        .unwrap();
    let mut s = std::sync::Arc::new(CpuModel::new(&m)).session(128);
    let mut want = s.feed(&prompt).unwrap().to_vec();
    d.feed(&prompt).unwrap();
    for step in 0..8 {
        let diff = max_diff(&d.logits().unwrap(), &want);
        assert!(
            diff < GPU_CPU_LOGITS,
            "step {step}: logits differ by {diff}"
        );
        let tok = tide_gpu::sample::top_k_of(&want, 1)[0].0;
        want = s.feed(&[tok]).unwrap().to_vec();
        d.feed(&[tok]).unwrap();
    }
}

/// The GGUF model and the same weights converted to Hugging Face safetensors (rotate-half
/// RoPE, un-permuted Q/K rows, by scripts/gguf_to_safetensors.py) give the same logits.
#[test]
fn smollm2_safetensors_matches_gguf() {
    let hf = smollm2().parent().unwrap().join("hf-f32");
    assert!(
        Path::new(&hf).join("model.safetensors").exists(),
        "{} is missing: run scripts/test.sh (it converts the GGUF with scripts/gguf_to_safetensors.py)",
        hf.display()
    );
    let a = model::load(&smollm2()).unwrap();
    let b = model::load(&hf).unwrap();
    assert_eq!(b.config.rope_layout, RopeLayout::RotateHalf);
    let text = "Safetensors and GGUF should agree: 3 + 4 = 7.";
    let ia = a.tokenizer.encode(text, true).unwrap();
    let ib = b.tokenizer.encode(text, true).unwrap();
    assert_eq!(ia, ib, "tokenizer.json and the GGUF vocabulary disagree");
    let la = std::sync::Arc::new(CpuModel::new(&a))
        .session(64)
        .feed(&ia)
        .unwrap()
        .to_vec();
    let lb = std::sync::Arc::new(CpuModel::new(&b))
        .session(64)
        .feed(&ib)
        .unwrap()
        .to_vec();
    let cpu_diff = max_diff(&la, &lb);
    println!("cpu gguf vs safetensors: {cpu_diff:.2e}");
    // The same f32 weights; Q/K rows permuted, so some sums run in another order (2.9e-5).
    assert!(cpu_diff < 2e-4, "CPU logits differ by {cpu_diff}");
    let mut d = GpuDecoder::new(
        gpu(),
        &b,
        DecoderOptions {
            ctx_len: 64,
            max_batch: 64,
            // The prefill kernels, however short the batch.
            token_by_token_upto: 0,
            ..Default::default()
        },
    )
    .unwrap();
    d.feed(&ib).unwrap();
    let gpu_diff = max_diff(&d.logits().unwrap(), &la);
    println!("gpu safetensors vs cpu gguf: {gpu_diff:.2e}");
    assert!(
        gpu_diff < GPU_CPU_LOGITS,
        "GPU safetensors logits differ by {gpu_diff}"
    );
}

/// Tensors larger than a storage binding are split by rows (embedding lookup and LM head run
/// per chunk): with bindings capped at 8 MiB the 31 MiB embedding takes 4 chunks, and the
/// logits still equal the CPU reference's. Weights are also written in slabs of whole rows up to
/// 100000 bytes (as the browser writes them, 4 MiB), which end inside texture rows: the part
/// of a texture row left over is carried to the next slab.
#[test]
fn smollm2_split_bindings_match_cpu() {
    let m = model::load(&smollm2()).unwrap();
    // Weights in storage buffers and in textures (the default on CPU adapters) alike.
    for tex in [false, true] {
        let ctx = common::gpu_with(&tide_gpu::gpu::GpuOptions {
            max_binding: Some(8 << 20),
            weight_textures: Some(tex),
            upload_slab_bytes: Some(100_000),
            ..Default::default()
        });
        let mut d = decoder_128(ctx, &m);
        assert_eq!(d.split_tensors, vec![("token_embd".to_string(), 4)]);
        let prompt = m
            .tokenizer
            .encode("Split tensors must not change a single logit.", true)
            .unwrap();
        let want = std::sync::Arc::new(CpuModel::new(&m))
            .session(128)
            .feed(&prompt)
            .unwrap()
            .to_vec();
        d.feed(&prompt).unwrap();
        let diff = max_diff(&d.logits().unwrap(), &want);
        println!("split bindings, weights in textures {tex}: max |gpu - cpu| logit = {diff:.2e}");
        assert!(
            diff < GPU_CPU_LOGITS,
            "split-binding logits differ by {diff} (weights in textures: {tex})"
        );
    }
    // A context whose KV cache cannot fit one binding is refused with a clear message.
    let ctx = common::gpu_with(&tide_gpu::gpu::GpuOptions {
        max_binding: Some(1 << 20),
        ..Default::default()
    });
    let e = GpuDecoder::new(
        ctx,
        &m,
        DecoderOptions {
            ctx_len: 4096,
            max_batch: 64,
            // The prefill kernels, however short the batch.
            token_by_token_upto: 0,
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("context 4096 is too long"), "{e}");
}

/// A model stored in K-quants (synthetic weights, model/synthetic.rs): `tiny-k`, every matrix
/// Q4_K / Q5_K / Q6_K. GPU logits in both kernel families, after a prefill batch and over
/// decode steps, against the CPU reference (whose K-quant decoding tests/quant_oracle.rs holds
/// to gguf-py's). Real files mixing K-quants with Q5_0 and Q8_0 are llamacpp.rs's (ignored)
/// and `llama_1b_shapes_split_for_real`'s.
#[test]
fn k_quant_models_gpu_match_cpu_reference() {
    for (name, sets) in [("tiny-k", &[KernelSet::CpuAdapter, KernelSet::Gpu][..])] {
        let m = model::load(Path::new(&format!("synthetic:{name}"))).unwrap();
        let vocab = m.config.vocab as u32;
        let prompt: Vec<u32> = (0..19u32).map(|i| (i * 7919 + 13) % vocab).collect();
        let cpu = std::sync::Arc::new(CpuModel::new(&m));
        for &ks in sets {
            let mut s = cpu.session(64);
            let mut d = GpuDecoder::new(
                gpu(),
                &m,
                DecoderOptions {
                    ctx_len: 64,
                    max_batch: 32,
                    kernels: ks,
                    token_by_token_upto: 0,
                    ..Default::default()
                },
            )
            .unwrap();
            let want = s.feed(&prompt).unwrap().to_vec();
            d.feed(&prompt).unwrap();
            let mut worst = max_diff(&d.logits().unwrap(), &want);
            let scale = want.iter().fold(0f32, |a, x| a.max(x.abs()));
            for step in 0..6u32 {
                let tok = (step * 104729 + 5) % vocab;
                let want = s.feed(&[tok]).unwrap().to_vec();
                d.feed(&[tok]).unwrap();
                worst = worst.max(max_diff(&d.logits().unwrap(), &want));
            }
            println!("{name} ({ks:?} kernels): max |gpu - cpu| logit = {worst:.2e}, |logits| up to {scale:.2}");
            assert!(
                worst < GPU_CPU_LOGITS * scale.max(1.0),
                "{name} ({ks:?}): logits differ by {worst} (|logits| up to {scale})"
            );
        }
    }
}

/// A 1B-class shape with the adapter's own binding limit: Llama-3.2-1B's tied 128256 x 2048
/// embedding (Q6_K, 7 GPU words per 32 elements: 230 MiB) exceeds lavapipe's 128 MiB storage
/// binding, so the embedding lookup and the LM head run over row chunks. Two of its 16 layers
/// (synthetic weights), batched and token by token, against the CPU reference.
#[test]
fn llama_1b_shapes_split_for_real() {
    let m = model::load(Path::new("synthetic:llama-3.2-1b-l2")).unwrap();
    let ctx = gpu();
    let limit = ctx.limits.max_storage_buffer_binding_size as usize;
    let mut d = GpuDecoder::new(
        ctx,
        &m,
        DecoderOptions {
            ctx_len: 64,
            max_batch: 16,
            token_by_token_upto: 0,
            ..Default::default()
        },
    )
    .unwrap();
    println!(
        "binding limit {} MiB, split: {:?}",
        limit >> 20,
        d.split_tensors
    );
    assert!(
        d.split_tensors
            .iter()
            .any(|(n, c)| n == "token_embd" && *c >= 2),
        "the embedding ({} MiB on the GPU) was not split under a {} MiB binding: {:?}",
        (128256 * 2048 / 32 * 7 * 4) >> 20,
        limit >> 20,
        d.split_tensors
    );
    let prompt: Vec<u32> = vec![128000, 791, 6864, 315, 9822, 374, 127999, 5, 64000];
    let cpu = std::sync::Arc::new(CpuModel::new(&m));
    let mut s = cpu.session(64);
    let want = s.feed(&prompt).unwrap().to_vec();
    d.feed(&prompt).unwrap();
    let scale = want.iter().fold(0f32, |a, x| a.max(x.abs())).max(1.0);
    let mut worst = max_diff(&d.logits().unwrap(), &want);
    for tok in [127000u32, 3, 90000] {
        let want = s.feed(&[tok]).unwrap().to_vec();
        d.feed(&[tok]).unwrap();
        worst = worst.max(max_diff(&d.logits().unwrap(), &want));
    }
    println!(
        "llama-3.2-1b (2 layers): max |gpu - cpu| logit = {worst:.2e}, |logits| up to {scale:.2}"
    );
    assert!(worst < GPU_CPU_LOGITS * scale, "logits differ by {worst}");
}
