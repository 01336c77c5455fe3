//! Bad input gets a clear error naming what is wrong, a non-zero exit, and never a panic.
mod common;
#[path = "common/gguf_writer.rs"]
mod gguf_writer;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::smollm2;
use gguf_writer::tiny_llama;
use tide_gpu::model;

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tide-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn load_err(name: &str, bytes: &[u8]) -> String {
    match model::load(&tmp(name, bytes)) {
        Ok(_) => panic!("{name}: loaded without error"),
        Err(e) => e.to_string(),
    }
}

fn has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error {msg:?} should mention {p:?}");
    }
}

#[test]
fn valid_tiny_gguf_loads_and_runs_on_cpu() {
    let p = tmp("ok.gguf", &tiny_llama().bytes());
    let m = model::load(&p).unwrap();
    assert_eq!(m.config.dim, 32);
    let cpu = std::sync::Arc::new(tide_gpu::cpu::CpuModel::new(&m));
    let l = cpu.session(8).feed(&[1, 2, 3]).unwrap().to_vec();
    assert_eq!(l.len(), 40);
    assert!(l.iter().all(|v| v.is_finite()));
}

#[test]
fn wrong_magic() {
    let mut b = tiny_llama().bytes();
    b[..4].copy_from_slice(b"GGUX");
    has(
        &load_err("magic.gguf", &b),
        &["magic.gguf", "not a GGUF file"],
    );
}

#[test]
fn truncated_file() {
    let b = tiny_llama().bytes();
    let e = load_err("trunc.gguf", &b[..b.len() - 100]);
    has(&e, &["trunc.gguf", "truncated", "blk.0.ffn_down.weight"]);
    let e = load_err("trunc-header.gguf", &b[..40]);
    has(&e, &["trunc-header.gguf", "truncated"]);
    let e = load_err("empty.gguf", &[]);
    has(&e, &["empty.gguf"]);
}

#[test]
fn header_claiming_huge_sizes() {
    let mut g = tiny_llama();
    g.claimed_tensors = Some(u64::MAX / 2);
    has(
        &load_err("huge-count.gguf", &g.bytes()),
        &["huge-count.gguf", "claims"],
    );
    let mut g = tiny_llama();
    g.tensors[0].dims = vec![1 << 40, 1 << 40];
    has(
        &load_err("huge-dims.gguf", &g.bytes()),
        &["huge-dims.gguf", "token_embd.weight"],
    );
    let mut g = tiny_llama();
    g.kvs.push((
        "llama.block_count".into(),
        gguf_writer::Kv::U32(4_000_000_000),
    ));
    has(
        &load_err("huge-layers.gguf", &g.bytes()),
        &["huge-layers.gguf", "layer count"],
    );
}

#[test]
fn tensor_shape_mismatch() {
    let mut g = tiny_llama();
    g.tensors[3].dims = vec![32, 16]; // attn_q should be [32, 32]
    g.tensors[3].data.truncate(32 * 16 * 4);
    has(
        &load_err("shape.gguf", &g.bytes()),
        &["shape.gguf", "blk.0.attn_q.weight", "expected [32, 32]"],
    );
}

#[test]
fn unsupported_tensor_type() {
    let mut g = tiny_llama();
    g.tensors[9].ty = 10; // Q2_K
    has(
        &load_err("qk.gguf", &g.bytes()),
        &[
            "qk.gguf",
            "blk.0.ffn_up.weight",
            "unsupported tensor type",
            "Q2_K",
        ],
    );
}

#[test]
fn missing_tensor() {
    let mut g = tiny_llama();
    g.tensors.retain(|t| t.name != "blk.0.ffn_down.weight");
    has(
        &load_err("missing.gguf", &g.bytes()),
        &["missing.gguf", "missing tensor", "blk.0.ffn_down.weight"],
    );
}

#[test]
fn out_of_range_token_ids() {
    let m = model::load(&tmp("ids.gguf", &tiny_llama().bytes())).unwrap();
    let cpu = std::sync::Arc::new(tide_gpu::cpu::CpuModel::new(&m));
    let e = cpu.session(8).feed(&[1, 40]).unwrap_err().to_string();
    has(&e, &["token id 40", "out of range", "vocab 40"]);
    let mut d = tide_gpu::decoder::GpuDecoder::new(common::gpu(), &m, Default::default()).unwrap();
    has(
        &d.feed(&[7, 1000]).unwrap_err().to_string(),
        &["token id 1000", "out of range"],
    );
    has(&d.feed(&[]).unwrap_err().to_string(), &["no tokens"]);
}

/// Run the CLI; returns (success, stdout, stderr) and checks it never panicked.
fn tide(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tide"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(!err.contains("panicked"), "tide {args:?} panicked: {err}");
    (o.status.success(), out, err)
}

fn model_arg() -> String {
    smollm2().display().to_string()
}

#[test]
fn cli_bad_arguments_and_prompts() {
    let m = model_arg();
    let (ok, _, err) = tide(&["generate", "--model", &m, "--backend", "cpu", ""], &[]);
    assert!(!ok && err.contains("prompt is empty"), "{err}");
    let long = "word ".repeat(40);
    let (ok, _, err) = tide(
        &[
            "generate",
            "--model",
            &m,
            "--backend",
            "cpu",
            "--ctx",
            "16",
            &long,
        ],
        &[],
    );
    assert!(!ok && err.contains("context holds 16"), "{err}");
    let (ok, _, err) = tide(&["generate", "--model", &m, "--top-p", "2", "hi"], &[]);
    assert!(!ok && err.contains("--top-p"), "{err}");
    let (ok, _, err) = tide(
        &["generate", "--model", "/nonexistent/model.gguf", "hi"],
        &[],
    );
    assert!(!ok && err.contains("/nonexistent/model.gguf"), "{err}");
    let bad = tmp("not-a-model.gguf", b"hello world, definitely not gguf");
    let (ok, _, err) = tide(&["generate", "--model", bad.to_str().unwrap(), "hi"], &[]);
    assert!(!ok && err.contains("not a GGUF file"), "{err}");
    // Absurd memory sizes and lengths for the TIDE overhead bench: refused before anything is
    // built (K = 100000 random blocks would be ~1.6 TB).
    let (ok, _, err) = tide(
        &[
            "bench",
            "--model",
            "synthetic:smollm2-135m",
            "--memory-overhead",
            "100000",
        ],
        &[],
    );
    assert!(
        !ok && err.contains("K = 100000") && err.contains("maximum"),
        "{err}"
    );
    let (ok, _, err) = tide(
        &[
            "generate",
            "--model",
            "synthetic:smollm2-135m-k100000",
            "hi",
        ],
        &[],
    );
    assert!(!ok && err.contains("K = 100000"), "{err}");
    let (ok, _, err) = tide(
        &[
            "bench",
            "--model",
            "synthetic:smollm2-135m",
            "--memory-overhead",
            "8",
            "--gen",
            "0",
        ],
        &[],
    );
    assert!(!ok && err.contains("--gen"), "{err}");
}

#[test]
fn no_gpu_adapter() {
    let m = model_arg();
    // No Vulkan driver visible and only the Vulkan backend allowed: no adapter at all.
    let env = [
        ("VK_ICD_FILENAMES", "/nonexistent.json"),
        ("VK_DRIVER_FILES", "/nonexistent.json"),
        ("WGPU_BACKEND", "vulkan"),
    ];
    let (ok, _, err) = tide(
        &[
            "generate",
            "--model",
            &m,
            "--backend",
            "gpu",
            "--max-tokens",
            "2",
            "Hello",
        ],
        &env,
    );
    assert!(!ok && err.contains("no GPU adapter"), "{err}");
    let (ok, out, err) = tide(
        &[
            "generate",
            "--model",
            &m,
            "--backend",
            "auto",
            "--max-tokens",
            "2",
            "--json",
            "Hello",
        ],
        &env,
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("running the fast CPU backend instead"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["tokens"].as_array().unwrap().len(), 2);
    assert!(
        v["adapter"].as_str().unwrap().starts_with("cpu ("),
        "{}",
        v["adapter"]
    );
    assert!(
        !v["adapter"].as_str().unwrap().contains("reference"),
        "{}",
        v["adapter"]
    );
}

#[test]
fn missing_config_for_safetensors_dir() {
    let dir = std::env::temp_dir().join(format!("tide-bad-st-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let e = model::load(Path::new(&dir)).unwrap_err().to_string();
    has(&e, &["config.json"]);
}

/// A K-quant tensor whose rows are not whole 256-element super-blocks is refused by name.
#[test]
fn k_quant_rows_not_whole_super_blocks() {
    let mut g = tiny_llama();
    g.tensors[9].ty = 12; // Q4_K, on a row of 32 elements
    has(
        &load_err("qk.gguf", &g.bytes()),
        &["qk.gguf", "blk.0.ffn_up.weight", "Q4_K", "256"],
    );
}

/// Architectures and their extra tensors: what is not supported, or missing, is named.
#[test]
fn unsupported_architecture_or_missing_arch_tensor() {
    let with_arch = |arch: &str| {
        let mut g = tiny_llama();
        for (k, v) in g.kvs.iter_mut() {
            if let Some(rest) = k.strip_prefix("llama.") {
                *k = format!("{arch}.{rest}");
            }
            if k == "general.architecture" {
                *v = gguf_writer::Kv::Str(arch.into());
            }
        }
        g
    };
    has(
        &load_err("gemma.gguf", &with_arch("gemma").bytes()),
        &[
            "gemma.gguf",
            "architecture 'gemma' is not supported",
            "qwen2",
        ],
    );
    has(
        &load_err("qwen2.gguf", &with_arch("qwen2").bytes()),
        &["qwen2.gguf", "missing tensor", "blk.0.attn_q.bias"],
    );
    has(
        &load_err("qwen3.gguf", &with_arch("qwen3").bytes()),
        &["qwen3.gguf", "missing tensor", "blk.0.attn_q_norm.weight"],
    );
    // head_dim 16: rope_freqs needs 8 values.
    let mut g = tiny_llama();
    g.tensors.push(gguf_writer::TensorSpec {
        name: "rope_freqs.weight".into(),
        dims: vec![5],
        ty: 0,
        data: [1f32; 5].iter().flat_map(|x| x.to_le_bytes()).collect(),
    });
    has(
        &load_err("freqs.gguf", &g.bytes()),
        &["freqs.gguf", "rope_freqs.weight", "expected [8]"],
    );
    let mut g = tiny_llama();
    g.kvs.push((
        "llama.rope.scaling.type".into(),
        gguf_writer::Kv::Str("yarn".into()),
    ));
    has(
        &load_err("yarn.gguf", &g.bytes()),
        &["yarn.gguf", "RoPE scaling 'yarn'", "not supported"],
    );
    let mut g = tiny_llama();
    g.kvs
        .push(("llama.rope.dimension_count".into(), gguf_writer::Kv::U32(8)));
    has(
        &load_err("partial.gguf", &g.bytes()),
        &["partial.gguf", "partial RoPE"],
    );
}

/// A tokenizer model or pre-tokenizer tide cannot build is named, with the way out.
#[test]
fn unsupported_tokenizer() {
    let mut g = tiny_llama();
    g.kvs.push((
        "tokenizer.ggml.model".into(),
        gguf_writer::Kv::Str("bert".into()),
    ));
    has(
        &load_err("bert.gguf", &g.bytes()),
        &[
            "bert.gguf",
            "tokenizer model 'bert' is not supported",
            "tokenizer.json",
        ],
    );
}

/// A tensor held by two of a model's files (a stray .safetensors among the shards, a memory
/// file beside a model whose memory is inline) is refused with the tensor and file named,
/// never one file's tensor silently replacing the other's.
#[test]
fn a_tensor_in_two_files_is_refused() {
    let dir = common::repo().join("models/tide-k4");
    let read = |n: &str| model::Blob::from_vec(std::fs::read(dir.join(n)).unwrap());
    let files = |second: &str| model::ModelFiles {
        source: "models/tide-k4".into(),
        files: vec![
            ("config.json".into(), read("config.json")),
            ("model.safetensors".into(), read("model.safetensors")),
            (second.into(), read("memory-f16.safetensors")),
        ],
    };
    for second in ["model-00002-of-00002.safetensors", model::MEMORY_FILE] {
        let e = files(second).load().expect_err(second).to_string();
        has(
            &e,
            &[second, "model.safetensors", "tensor 'tide.", "is also in"],
        );
    }
}

/// An absurd thread count is refused by name, by the CLI and by the library (where asking
/// for 100,000 threads used to hang while they started), never attempted.
#[test]
fn absurd_cpu_thread_counts_are_refused() {
    for n in ["0", "100000"] {
        let (ok, _, err) = tide(&["generate", "--backend", "cpu", "--threads", n, "Hi"], &[]);
        assert!(
            !ok && err.contains("--threads") && err.contains("1..=1024"),
            "{n}: {err}"
        );
    }
    let path = tide_gpu::fastcpu::dot::Path::Portable;
    let e = tide_gpu::fastcpu::FastCpu::new(path, 100_000)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("100000 CPU threads") && e.contains("at most 1024"),
        "{e}"
    );
}
