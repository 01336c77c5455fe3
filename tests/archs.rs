//! The GGUF architectures beyond plain LLaMA (Llama 3.1 RoPE scaling, Mistral-style GQA, Qwen2's
//! q/k/v biases, Qwen3's per-head q/k norm), each as a tiny random model written by gguf-py,
//! against llama.cpp's logits at every position of a 16-token sequence and its greedy tokens
//! (tests/fixtures/arch/, made by scripts/arch_reference.py with llama-cpp-python).
mod common;

use std::sync::Arc;

use common::{assert_close, json_ids, json_rows, repo, small_decoder};
use tide_gpu::cpu::CpuModel;
use tide_gpu::decoder::KernelSet;
use tide_gpu::model::Weight;
use tide_gpu::model::{self, Model, RopeLayout};

const CASES: [&str; 4] = ["llama3", "mistral", "qwen2", "qwen3"];

/// llama.cpp computes in f32 in another summation order, and its logits are written with 5
/// decimals (+-5e-6). Measured on lavapipe: the CPU reference and both kernel families are
/// within 1.0e-5 of them (relative to max(1, |logit|)).
const TOL: f32 = 5e-5;

struct Reference {
    tokens: Vec<u32>,
    logits: Vec<Vec<f32>>,
    greedy: Vec<u32>,
}

fn case(name: &str) -> (Model, Reference) {
    let dir = repo().join("tests/fixtures/arch");
    let m = model::load(&dir.join(format!("{name}.gguf"))).unwrap();
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap())
            .unwrap();
    let r = Reference {
        tokens: json_ids(&j["tokens"]),
        logits: json_rows(&j["logits"]),
        greedy: json_ids(&j["greedy"]),
    };
    (m, r)
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn architectures_load_with_their_traits() {
    let traits = |name: &str| {
        let (m, _) = case(name);
        let l = &m.layers[0];
        (
            m.config.rope_layout,
            l.qkv_bias.is_some(),
            l.qk_norm.is_some(),
            m.config.rope_freq_factors.is_some(),
            m.lm_head.is_some(),
        )
    };
    use RopeLayout::*;
    assert_eq!(traits("llama3"), (Adjacent, false, false, true, false));
    assert_eq!(traits("mistral"), (Adjacent, false, false, false, true));
    assert_eq!(traits("qwen2"), (RotateHalf, true, false, false, true));
    assert_eq!(traits("qwen3"), (RotateHalf, false, true, false, false));
}

/// The CPU reference, one token at a time, at every position; then llama.cpp's greedy tokens.
#[test]
fn cpu_reference_matches_llama_cpp_per_architecture() {
    for name in CASES {
        let (m, r) = case(name);
        let cpu = Arc::new(CpuModel::new(&m));
        let mut s = cpu.session(64);
        let mut worst = 0f32;
        for (t, &id) in r.tokens.iter().enumerate() {
            let got = s.feed(&[id]).unwrap().to_vec();
            let w = assert_close(&format!("{name} cpu pos {t}"), &got, &r.logits[t], TOL);
            worst = worst.max(w);
        }
        eprintln!("{name}: cpu reference within {worst:.1e} of llama.cpp");
        let mut greedy = vec![];
        let mut next = argmax(&s.logits);
        for _ in 0..r.greedy.len() {
            greedy.push(next);
            next = argmax(s.feed(&[next]).unwrap());
        }
        assert_eq!(greedy, r.greedy, "{name}: cpu greedy tokens");
    }
}

/// Both kernel families: decode at every position, one prefill batch, and greedy decoding.
#[test]
fn gpu_matches_llama_cpp_per_architecture() {
    for name in CASES {
        let (m, r) = case(name);
        for ks in [KernelSet::CpuAdapter, KernelSet::Gpu] {
            let tag = format!("{name} gpu ({ks:?} kernels)");
            let mut d = small_decoder(&m, ks);
            let mut worst = 0f32;
            for (t, &id) in r.tokens.iter().enumerate() {
                d.feed(&[id]).unwrap();
                let got = d.logits().unwrap();
                let w = assert_close(&format!("{tag} pos {t}"), &got, &r.logits[t], TOL);
                worst = worst.max(w);
            }
            eprintln!("{tag}: decode within {worst:.1e} of llama.cpp");
            d.reset();
            d.feed(&r.tokens).unwrap();
            let got = d.logits().unwrap();
            assert_close(
                &format!("{tag} prefill"),
                &got,
                r.logits.last().unwrap(),
                TOL,
            );
            let mut greedy = vec![];
            let mut next = argmax(&got);
            for _ in 0..r.greedy.len() {
                greedy.push(next);
                d.feed(&[next]).unwrap();
                next = argmax(&d.logits().unwrap());
            }
            assert_eq!(greedy, r.greedy, "{tag}: greedy tokens");
        }
    }
}

/// The same models as Hugging Face checkpoints (config.json + model.safetensors), as their
/// converters would have them: q/k rows of the `llama` files back in rotate-half order, Llama
/// 3.1's scaling as config.json's `rope_scaling` (the script's parameters), Qwen's biases and
/// q/k norms under their Hugging Face names. The CPU reference on them gives llama.cpp's logits.
#[test]
fn safetensors_checkpoints_of_each_architecture_match_llama_cpp() {
    for name in CASES {
        let (m, r) = case(name);
        let c = &m.config;
        let dir = std::env::temp_dir().join(format!("tide-arch-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // llama.cpp's converter interleaves each head's rows (i, i + hd/2) as (2i, 2i + 1).
        let unpermute = |w: &Weight, heads: usize| -> Vec<f32> {
            let v = w.to_f32();
            if c.rope_layout == RopeLayout::RotateHalf {
                return v;
            }
            let (hd, cols) = (c.head_dim, c.dim);
            let mut out = vec![0f32; v.len()];
            for h in 0..heads {
                for i in 0..hd / 2 {
                    for (dst, src) in [(i, 2 * i), (i + hd / 2, 2 * i + 1)] {
                        let (d, s) = ((h * hd + dst) * cols, (h * hd + src) * cols);
                        out[d..d + cols].copy_from_slice(&v[s..s + cols]);
                    }
                }
            }
            out
        };
        let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = vec![];
        let mut put =
            |n: &str, w: &Weight, data: Vec<f32>| t.push((n.into(), w.info.shape.clone(), data));
        put(
            "model.embed_tokens.weight",
            &m.token_embd,
            m.token_embd.to_f32(),
        );
        put("model.norm.weight", &m.output_norm, m.output_norm.to_f32());
        if let Some(h) = &m.lm_head {
            put("lm_head.weight", h, h.to_f32());
        }
        for (i, l) in m.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            put(
                &format!("{p}.input_layernorm.weight"),
                &l.attn_norm,
                l.attn_norm.to_f32(),
            );
            put(
                &format!("{p}.self_attn.q_proj.weight"),
                &l.wq,
                unpermute(&l.wq, c.n_heads),
            );
            put(
                &format!("{p}.self_attn.k_proj.weight"),
                &l.wk,
                unpermute(&l.wk, c.n_kv_heads),
            );
            put(
                &format!("{p}.self_attn.v_proj.weight"),
                &l.wv,
                l.wv.to_f32(),
            );
            put(
                &format!("{p}.self_attn.o_proj.weight"),
                &l.wo,
                l.wo.to_f32(),
            );
            put(
                &format!("{p}.post_attention_layernorm.weight"),
                &l.ffn_norm,
                l.ffn_norm.to_f32(),
            );
            put(
                &format!("{p}.mlp.gate_proj.weight"),
                &l.w_gate,
                l.w_gate.to_f32(),
            );
            put(&format!("{p}.mlp.up_proj.weight"), &l.w_up, l.w_up.to_f32());
            put(
                &format!("{p}.mlp.down_proj.weight"),
                &l.w_down,
                l.w_down.to_f32(),
            );
            if let Some(b) = &l.qkv_bias {
                for (w, n) in b.iter().zip(["q", "k", "v"]) {
                    put(&format!("{p}.self_attn.{n}_proj.bias"), w, w.to_f32());
                }
            }
            if let Some(n) = &l.qk_norm {
                for (w, k) in n.iter().zip(["q", "k"]) {
                    put(&format!("{p}.self_attn.{k}_norm.weight"), w, w.to_f32());
                }
            }
        }
        let views: Vec<(String, safetensors::tensor::TensorView)> = t
            .iter()
            .map(|(n, shape, v)| {
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    shape.clone(),
                    bytemuck::cast_slice(v),
                );
                (n.clone(), view.unwrap())
            })
            .collect();
        std::fs::write(
            dir.join("model.safetensors"),
            safetensors::serialize(views, None).unwrap(),
        )
        .unwrap();
        let model_type = if name.starts_with("qwen") {
            name
        } else {
            "llama"
        };
        let mut cfg = serde_json::json!({
            "model_type": model_type,
            "hidden_size": c.dim,
            "num_hidden_layers": c.n_layers,
            "num_attention_heads": c.n_heads,
            "num_key_value_heads": c.n_kv_heads,
            "head_dim": c.head_dim,
            "intermediate_size": c.ffn_dim,
            "vocab_size": c.vocab,
            "rope_theta": c.rope_theta,
            "rms_norm_eps": c.eps,
            "max_position_embeddings": 256,
            "tie_word_embeddings": m.lm_head.is_none(),
        });
        if name == "llama3" {
            cfg["rope_scaling"] = serde_json::json!({
                "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 32
            });
        }
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        let hf = model::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(hf.config.rope_layout, RopeLayout::RotateHalf);
        let cpu = Arc::new(CpuModel::new(&hf));
        let mut s = cpu.session(64);
        for (t, &id) in r.tokens.iter().enumerate() {
            let got = s.feed(&[id]).unwrap().to_vec();
            assert_close(
                &format!("{name} safetensors pos {t}"),
                &got,
                &r.logits[t],
                TOL,
            );
        }
    }
}
