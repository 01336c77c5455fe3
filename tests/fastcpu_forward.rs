//! The fast CPU backend's whole forward (src/fastcpu/forward.rs) against the CPU reference,
//! at every position of a sequence, on each kind of model the runtime runs: TIDE (K = 4, and
//! the deep one), Engram, LIMe, a K = 0 backbone, SmolLM2-135M in Q4_1, llama.cpp's K-quant
//! mixes (tests/fixtures/kquant), and the Qwen2 / Qwen3 / Llama 3.1 / Mistral traits
//! (tests/fixtures/arch). Each runs token by token and as prefill batches (several batches,
//! so later ones attend to earlier ones' cache), on the AVX2 path (where the CPU has it) and
//! the portable one, with 1 and 2 threads.
//!
//! What is compared, and how close it must be:
//! - logits, relative to max(1, |logit|): the reference multiplies in f32; the fast kernels
//!   round each activation block to 8 bits first, as llama.cpp does, so quantised models are
//!   within a tolerance set from what was measured (the tiny K-quant models: 0.15, `Q8_TOL`;
//!   SmolLM2's 30 layers: 1.2, `Q8_DEEP_TOL`; llama.cpp's own 8-bit logits are up to 2.5 from
//!   its f32 ones on SmolLM2, tests/llamacpp.rs); models whose matrices are float (F32/F16)
//!   meet f32 activations and are within `F32_TOL` (measured 8e-6).
//! - router weights (TIDE) and each layer's normalised post-attention state, in the same
//!   tolerances;
//! - the greedy choice where the reference's top two are further apart than the logits may
//!   move (2 x the tolerance);
//! - on one path, batches against token by token and 2 threads against 1: bit for bit equal
//!   (every row's products are summed in the same order however the rows are split and
//!   batched). The two paths are each held to the reference only: their sums differ in the
//!   last bits, which can round an activation to the next 8-bit step at the next layer, and
//!   SmolLM2's 30 layers grow that to 0.5 in a logit.
mod common;

use std::sync::Arc;

use common::{repo, smollm2};
use tide_gpu::cpu::{CpuModel, CpuSession};
use tide_gpu::fastcpu::dot::Path;
use tide_gpu::fastcpu::FastCpu;
use tide_gpu::model::{self, Model};

/// Quantised matrices: 8-bit activations against the reference's f32.
const Q8_TOL: f32 = 0.3;
const Q8_DEEP_TOL: f32 = 2.0;
/// Float matrices, f32 activations on both sides: summation order only.
const F32_TOL: f32 = 1e-4;

struct Run {
    logits: Vec<f32>,
    router: Vec<f32>,
    post: Vec<f32>,
}

fn run(mut s: CpuSession, seq: &[u32], batches: &[usize]) -> Run {
    s.keep_all = true;
    s.post_attn = Some(Vec::new());
    let mut at = 0;
    for &b in batches {
        s.feed(&seq[at..at + b]).unwrap();
        at += b;
    }
    assert_eq!(at, seq.len());
    Run {
        logits: std::mem::take(&mut s.all_logits),
        router: std::mem::take(&mut s.router),
        post: s.post_attn.take().unwrap(),
    }
}

/// max over i of |a_i - b_i| / max(1, |b_i|).
fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}

fn paths() -> Vec<Path> {
    let mut p = vec![Path::Portable];
    if Path::Avx2.available() {
        p.push(Path::Avx2);
    }
    p
}

/// Whether every matrix of `m` is stored as a float type.
fn float_matrices(m: &Model) -> bool {
    m.matrices().all(|w| !w.dtype().is_quantized())
}

fn check(name: &str, m: &Model, seq: &[u32], q8_tol: f32) {
    let cpu = Arc::new(CpuModel::new(m));
    let ctx = seq.len() + 4;
    let want = run(cpu.session(ctx), seq, &[seq.len()]);
    let tol = if float_matrices(m) { F32_TOL } else { q8_tol };
    let vocab = m.config.vocab;
    let n = seq.len();
    // Token by token, and batches of 1, 5 and the rest.
    let split = [1, 5, n - 6];
    let singles = vec![1; n];
    for path in paths() {
        let mut first: Option<Run> = None;
        for threads in [1, 2] {
            let f = Arc::new(FastCpu::new(path, threads).unwrap());
            for batches in [&singles[..], &split[..]] {
                let what = format!(
                    "{name} {path:?} {threads} threads, batches {:?}",
                    &batches[..3]
                );
                let got = run(f.session(&cpu, ctx), seq, batches);
                let lw = worst(&got.logits, &want.logits);
                let rw = worst(&got.router, &want.router);
                let pw = worst(&got.post, &want.post);
                println!(
                    "{what}: logits within {lw:.1e}, router {rw:.1e}, post-attention {pw:.1e}"
                );
                assert!(
                    lw <= tol,
                    "{what}: logits {lw} from the reference's (tolerance {tol})"
                );
                assert!(
                    rw <= tol,
                    "{what}: router weights {rw} from the reference's"
                );
                assert!(
                    pw <= tol,
                    "{what}: post-attention states {pw} from the reference's"
                );
                for (p, (g, w)) in got
                    .logits
                    .chunks(vocab)
                    .zip(want.logits.chunks(vocab))
                    .enumerate()
                {
                    let mut order: Vec<usize> = (0..vocab).collect();
                    order.sort_by(|&a, &b| w[b].total_cmp(&w[a]));
                    let clear = w[order[0]] - w[order[1]] > 2.0 * tol * w[order[0]].abs().max(1.0);
                    let top = (0..vocab).max_by(|&a, &b| g[a].total_cmp(&g[b])).unwrap();
                    assert!(
                        !clear || top == order[0],
                        "{what}: position {p}: greedy {top}, reference {}",
                        order[0]
                    );
                }
                match &first {
                    None => first = Some(got),
                    Some(f) => {
                        assert!(
                            got.logits == f.logits,
                            "{what}: logits not those of the path's first run"
                        );
                        assert!(
                            got.router == f.router,
                            "{what}: router weights not the first run's"
                        );
                        assert!(
                            got.post == f.post,
                            "{what}: post-attention states not the first run's"
                        );
                    }
                }
            }
        }
    }
}

fn sequence(vocab: usize, n: usize) -> Vec<u32> {
    (0..n as u64)
        .map(|i| ((i * 2654435761 + 17) % vocab as u64) as u32)
        .collect()
}

#[test]
fn tide_engram_lime_and_backbone_models_match_the_reference() {
    for name in [
        "tide-k4",
        "tide-k4-deep",
        "tide-engram",
        "tide-lime",
        "tide-k0-wide",
    ] {
        let m = model::load(&repo().join("models").join(name)).unwrap();
        check(name, &m, &sequence(m.config.vocab, 24), Q8_TOL);
    }
}

#[test]
fn smollm2_q4_1_matches_the_reference() {
    let m = model::load(&smollm2()).unwrap();
    check(
        "SmolLM2 Q4_1",
        &m,
        &sequence(m.config.vocab, 16),
        Q8_DEEP_TOL,
    );
}

#[test]
fn k_quant_mixes_and_architectures_match_the_reference() {
    let kq = repo().join("tests/fixtures/kquant");
    for t in ["q4_k_m", "q5_k_m", "q6_k"] {
        let m = model::load(&kq.join(format!("tiny.{t}.gguf"))).unwrap();
        check(t, &m, &sequence(m.config.vocab, 16), Q8_TOL);
    }
    let arch = repo().join("tests/fixtures/arch");
    for name in ["llama3", "mistral", "qwen2", "qwen3"] {
        let m = model::load(&arch.join(format!("{name}.gguf"))).unwrap();
        check(name, &m, &sequence(m.config.vocab, 16), Q8_TOL);
    }
}
