//! Native-only helpers: a blocking GPU context, files of the repo, one blocking dispatch.
use std::path::PathBuf;

use tide_gpu::decoder::specs::Spec;
use tide_gpu::gpu::harness::{run, Data};
use tide_gpu::gpu::{GpuContext, GpuOptions};

pub fn gpu() -> GpuContext {
    gpu_with(&GpuOptions::default())
}

pub fn gpu_with(opts: &GpuOptions) -> GpuContext {
    pollster::block_on(GpuContext::new(opts))
        .expect("no GPU adapter: install mesa-vulkan-drivers (lavapipe) to run the GPU tests")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The SmolLM2 GGUF fetched by scripts/fetch-smollm2.sh (CI runs it before the tests).
/// A vocab-only GGUF of llama.cpp's (scripts/fetch-vocabs.sh), e.g. "llama-bpe".
pub fn vocab(name: &str) -> PathBuf {
    let cache = std::env::var("TIDE_CACHE")
        .map(PathBuf::from)
        .unwrap_or(repo().join(".cache"));
    let p = cache.join(format!("vocabs/ggml-vocab-{name}.gguf"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-vocabs.sh first",
        p.display()
    );
    p
}

pub fn smollm2() -> PathBuf {
    let cache = std::env::var("TIDE_CACHE")
        .map(PathBuf::from)
        .unwrap_or(repo().join(".cache"));
    let p = cache.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-smollm2.sh first",
        p.display()
    );
    p
}

/// A JSON array of token ids.
pub fn json_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// A JSON array of arrays of numbers (logits per position).
pub fn json_rows(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

/// Dispatch spec `s` once for a step of `n_tok` tokens over `data` (one entry per binding);
/// the final words of each ReadWrite binding.
pub fn run_spec(ctx: &GpuContext, s: &Spec, data: &[Data], n_tok: u32) -> Vec<Vec<u32>> {
    run(
        ctx,
        s.shader,
        s.entry,
        &s.defs,
        &s.bindings,
        data,
        (s.x, s.y_groups(n_tok), 1),
    )
    .unwrap_or_else(|e| panic!("{} failed: {e}", s.shader))
}

/// A GPU decoder for the small test models with kernel family `ks`: context 64, batches of up
/// to 16, and every prompt of more than one token through the prefill kernels.
pub fn small_decoder(
    m: &tide_gpu::model::Model,
    ks: tide_gpu::decoder::KernelSet,
) -> tide_gpu::decoder::GpuDecoder {
    let opts = tide_gpu::decoder::DecoderOptions {
        ctx_len: 64,
        max_batch: 16,
        kernels: ks,
        token_by_token_upto: 0,
        ..Default::default()
    };
    tide_gpu::decoder::GpuDecoder::new(gpu(), m, opts).unwrap()
}

/// All-position logits of `seq` from the CPU reference (context 64).
pub fn cpu_logits(m: &tide_gpu::model::Model, seq: &[u32]) -> Vec<f32> {
    cpu_logits_with(m, tide_gpu::memory::MemoryRows::local(m), seq)
}

/// `cpu_logits` with the memory's rows read through `rows`.
pub fn cpu_logits_with(
    m: &tide_gpu::model::Model,
    rows: tide_gpu::memory::MemoryRows,
    seq: &[u32],
) -> Vec<f32> {
    let cm = std::sync::Arc::new(tide_gpu::cpu::CpuModel::with_rows(m, rows));
    let mut s = cm.session(64);
    s.keep_all = true;
    s.feed(seq).unwrap();
    s.all_logits.clone()
}

/// Whether `ctx` is lavapipe (Mesa's Vulkan on the CPU) on a CPU with AVX2, the adapter some
/// tests mean something on only. Elsewhere the test is skipped, loudly: the reason goes to
/// target/test-skips.txt, which scripts/test.sh prints at its end. Where that adapter is
/// expected (TIDE_TEST_EXPECT_LAVAPIPE=1, set by .ci/run), its absence fails the test instead.
pub fn lavapipe_or_skip(ctx: &GpuContext, test: &str) -> bool {
    let lavapipe = ctx.info.name.contains("llvmpipe")
        && ctx.info.backend == wgpu::Backend::Vulkan
        && ctx.info.device_type == wgpu::DeviceType::Cpu;
    #[cfg(target_arch = "x86_64")]
    let lavapipe = lavapipe && std::arch::is_x86_feature_detected!("avx2");
    if lavapipe {
        return true;
    }
    let why = format!(
        "{test}: needs lavapipe on AVX2, the adapter is {}",
        ctx.describe()
    );
    if std::env::var("TIDE_TEST_EXPECT_LAVAPIPE").is_ok_and(|v| v == "1") {
        panic!("{why} (TIDE_TEST_EXPECT_LAVAPIPE=1)");
    }
    skip(&why);
    false
}

/// Record a skipped test where scripts/test.sh shows it, and on stderr.
pub fn skip(why: &str) {
    use std::io::Write;
    eprintln!("SKIPPED {why}");
    let path = repo().join("target/test-skips.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{why}");
    }
}
