//! A model built from its files' headers alone (what the browser reads by Range before a
//! download) against the same model loaded whole: same configuration, same tensors; no weight
//! bytes read; and `engine::gpu_fit`, which refuses a model the adapter cannot hold, agreeing
//! with what the GPU upload and decoder refuse on a real adapter (lavapipe in CI).
mod common;

use std::path::{Path, PathBuf};

use common::{gpu_with, repo, smollm2};
use tide_gpu::decoder::{DecoderOptions, GpuDecoder};
use tide_gpu::engine::gpu_fit;
use tide_gpu::gpu::GpuOptions;
use tide_gpu::model::gguf::GgufFile;
use tide_gpu::model::header::{header_need, FromHeaders, HeaderFiles, HeaderNeed};
use tide_gpu::model::{self, Blob, Model, ModelFiles};

/// The prefix of `bytes` that holds its header, grown as `header_need` asks from a first read
/// of `first` bytes; also how many reads it took.
fn header_prefix(name: &str, bytes: &[u8], first: usize) -> (usize, usize) {
    let (mut have, mut reads) = (first.min(bytes.len()), 1);
    loop {
        match header_need(name, &bytes[..have], bytes.len()).unwrap() {
            HeaderNeed::Complete(end) => {
                assert!(end <= have, "{name}: complete at {end} with {have} bytes");
                return (end, reads);
            }
            HeaderNeed::More(n) => {
                assert!(
                    n > have && n <= bytes.len(),
                    "{name}: asked {n} with {have}"
                );
                have = n;
                reads += 1;
            }
        }
    }
}

fn files_of(paths: &[PathBuf]) -> Vec<(String, Vec<u8>)> {
    paths
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(p).unwrap())
        })
        .collect()
}

fn whole(source: &str, files: &[(String, Vec<u8>)]) -> Model {
    ModelFiles {
        source: source.into(),
        files: files
            .iter()
            .map(|(n, b)| (n.clone(), Blob::from_vec(b.clone())))
            .collect(),
    }
    .load()
    .unwrap()
}

/// The model from its weights files' headers (other files whole), fetching what the loader
/// asks for as the browser does; also the bytes of weights it asked for.
fn from_headers(source: &str, files: &[(String, Vec<u8>)]) -> (Model, usize) {
    let mut h = HeaderFiles::new(source);
    for (n, b) in files {
        if n.ends_with(".gguf") || n.ends_with(".safetensors") {
            // As the browser reads: past the header. Into the middle of Llama 3's RoPE
            // factors, which the loader reads: a read that starts in what was read and ends
            // past it must still fetch its bytes, not take zeros.
            let (end, _) = header_prefix(n, b, 4096);
            let rope = GgufFile::parse(n, Blob::from_vec(b.clone()))
                .ok()
                .and_then(|g| {
                    g.tensors
                        .into_iter()
                        .find(|t| t.info.name == "rope_freqs.weight")
                });
            let read = match rope {
                Some(t) => t.info.start + 16,
                None => (end + (64 << 10)).min(b.len()),
            };
            h.add_header(n, b[..read].to_vec(), b.len()).unwrap();
        } else {
            h.add_whole(n, Blob::from_vec(b.clone()));
        }
    }
    let mut fetched = 0;
    for _ in 0..4 {
        match h.load(false).unwrap() {
            FromHeaders::Model(m) => return (*m, fetched),
            FromHeaders::Unsized(why) => panic!("{why}"),
            FromHeaders::Needs(needs) => {
                for (n, r) in needs {
                    let b = &files.iter().find(|(f, _)| *f == n).unwrap().1;
                    fetched += r.len();
                    h.add_range(&n, r.start, b[r].to_vec()).unwrap();
                }
            }
        }
    }
    panic!("{source}: the loader kept asking for more weights");
}

fn tensors(m: &Model) -> Vec<(String, Vec<usize>, String)> {
    let mut v: Vec<_> = m
        .matrices()
        .chain([&m.token_embd, &m.output_norm])
        .chain(m.layers.iter().flat_map(|l| [&l.attn_norm, &l.ffn_norm]))
        .map(|w| {
            (
                w.info.name.clone(),
                w.info.shape.clone(),
                w.dtype().name().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn cases() -> Vec<(&'static str, Vec<PathBuf>)> {
    let f = |p: &str| repo().join("tests/fixtures").join(p);
    vec![
        ("SmolLM2 (GGUF, Q4_1)", vec![smollm2()]),
        ("qwen2 (GGUF)", vec![f("arch/qwen2.gguf")]),
        ("llama3 (GGUF)", vec![f("arch/llama3.gguf")]),
        (
            "qwen2 split in 3 (GGUF)",
            (1..=3)
                .map(|i| f(&format!("split/qwen2-0000{i}-of-00003.gguf")))
                .collect(),
        ),
        (
            "tide-k4 (safetensors with its memory)",
            ["config.json", "model.safetensors", "tokenizer.json"]
                .iter()
                .map(|n| repo().join("models/tide-k4").join(n))
                .collect(),
        ),
        (
            "tiny llama (safetensors)",
            ["config.json", "model.safetensors", "tokenizer.json"]
                .iter()
                .map(|n| f(&format!("tiny_llama/{n}")))
                .collect(),
        ),
    ]
}

/// Each model from its headers equals the model loaded whole, in configuration, tensors and
/// what `gpu_fit` reports; the load reads no weights but Llama 3's RoPE factors; the header of a file with a
/// 32k-token vocabulary is found from a 4 KiB first read in a few doublings.
#[test]
fn header_only_models_equal_whole_ones() {
    let dec = DecoderOptions {
        ctx_len: 2048,
        ..Default::default()
    };
    let limits = wgpu::Limits::default();
    for (what, paths) in cases() {
        let files = files_of(&paths);
        let full = whole(what, &files);
        let (m, fetched) = from_headers(what, &files);
        assert_eq!(m.config, full.config, "{what}: configuration");
        assert_eq!(tensors(&m), tensors(&full), "{what}: tensors");
        assert_eq!(
            gpu_fit(&m, &dec, &limits, false).unwrap(),
            gpu_fit(&full, &dec, &limits, false).unwrap(),
            "{what}: gpu_fit"
        );
        let total: usize = files.iter().map(|(_, b)| b.len()).sum();
        println!("{what}: {total} bytes, {fetched} bytes of weights read to load");
        // Llama 3 reads its RoPE frequency factors (head dim / 2 f32), a memory model its
        // memory's tables (4 x 8192 rows of 120 bytes) and router; nothing else may read
        // weights.
        match what {
            w if w.starts_with("llama3") => assert_eq!(fetched, m.config.head_dim / 2 * 4),
            w if w.starts_with("tide-k4") => {
                assert!((4 * 8192 * 120..4 * 8192 * 120 + (100 << 10)).contains(&fetched))
            }
            _ => assert_eq!(fetched, 0, "{what}: weights read to load"),
        }
    }
    let bytes = std::fs::read(smollm2()).unwrap();
    let (end, reads) = header_prefix("smollm2", &bytes, 4096);
    println!("SmolLM2: header {end} bytes, found in {reads} reads from 4 KiB");
    assert!(
        end > 1 << 20 && end < 4 << 20 && reads <= 4,
        "{end} {reads}"
    );
}

/// A header cut short by the end of the file, or not a header at all, is an error naming the
/// file, never a request for more bytes than the file has.
#[test]
fn header_need_refuses_truncated_and_foreign_files() {
    let bytes = std::fs::read(repo().join("tests/fixtures/arch/qwen2.gguf")).unwrap();
    let (end, _) = header_prefix("qwen2.gguf", &bytes, 64);
    let cut = &bytes[..end / 2];
    let e = header_need("cut.gguf", cut, cut.len())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cut.gguf") && e.contains("truncated"), "{e}");
    let e = header_need("x.bin", b"not a model file", 16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("x.bin") && e.contains("neither a GGUF"), "{e}");
    // A safetensors header claiming more than the file.
    let mut st = (1u64 << 20).to_le_bytes().to_vec();
    st.extend_from_slice(b"{}");
    let e = header_need("m.safetensors", &st, st.len())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("m.safetensors") && e.contains("truncated"),
        "{e}"
    );
    // A prefix longer than the file it claims to start.
    assert!(header_need("a.gguf", &bytes[..100], 50).is_err());
}

fn smollm2_model() -> Model {
    model::load(Path::new(&smollm2())).unwrap()
}

/// `gpu_fit` refuses what the adapter refuses: a context whose K/V cache outgrows one binding
/// (and says the longest that fits, which then opens), a layer's fused matrix larger than a
/// binding, and logits wider than one. Limits are lowered on lavapipe with
/// `GpuOptions::max_binding`, and the same limits given to `gpu_fit`.
#[test]
fn gpu_fit_agrees_with_the_adapter() {
    let m = smollm2_model();
    let c = &m.config;
    let adapter = |bind: usize| {
        gpu_with(&GpuOptions {
            max_binding: Some(bind as u64),
            ..Default::default()
        })
    };
    let base = adapter(1 << 30).limits.clone();
    let limits = |bind: usize| wgpu::Limits {
        max_storage_buffer_binding_size: bind as _,
        ..base.clone()
    };
    let dec = |ctx_len| DecoderOptions {
        ctx_len,
        max_batch: 16,
        ..Default::default()
    };
    // SmolLM2's K/V per position: 3 heads x 64 x 4 bytes = 768: 2 MiB hold 2730 positions.
    let bind = 2usize << 20;
    let longest = bind / (c.kv_dim() * 4);
    assert_eq!(longest, 2730);
    let e = gpu_fit(&m, &dec(longest + 1), &limits(bind), false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("context {} is too long", longest + 1))
            && e.contains(&format!("at most {longest} here")),
        "{e}"
    );
    let gpu_err = GpuDecoder::new(adapter(bind), &m, dec(longest + 1))
        .err()
        .expect("the adapter took a context gpu_fit refused")
        .to_string();
    assert_eq!(gpu_err, e);
    let needs = gpu_fit(&m, &dec(longest), &limits(bind), false).unwrap();
    assert_eq!(
        needs.kv_bytes,
        (c.n_layers * 2 * longest * c.kv_dim() * 4) as u64
    );
    GpuDecoder::new(adapter(bind), &m, dec(longest)).expect("the context gpu_fit accepted");

    // Gate|up of a layer: 2 x 1536 rows of 576 Q4_1 weights, 18 blocks of 20 bytes each on
    // the GPU: 1105920 bytes, bound whole. One byte less is refused by both, naming it.
    let gate_up = 2 * 1536 * 18 * 20;
    let e = gpu_fit(&m, &dec(64), &limits(gate_up - 1), false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "blk.0.ffn_gate_up: bound whole, it takes {gate_up} bytes"
        )),
        "{e}"
    );
    let gpu_err = GpuDecoder::new(adapter(gate_up - 1), &m, dec(64))
        .err()
        .expect("the adapter took a layer gpu_fit refused")
        .to_string();
    assert!(
        gpu_err.contains(&format!(
            "blk.0.ffn_gate_up: {gate_up} bytes exceed one storage binding"
        )),
        "{gpu_err}"
    );
    assert!(gpu_fit(&m, &dec(64), &limits(gate_up), false).is_ok());

    // A binding narrower than the logits [vocab] f32, which are bound whole: refused by
    // both, naming the vocabulary.
    let narrow = c.vocab * 4 - 4;
    let e = gpu_fit(&m, &dec(8), &limits(narrow), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("a vocabulary of 49152 tokens"), "{e}");
    let gpu_err = GpuDecoder::new(adapter(narrow), &m, dec(8))
        .err()
        .expect("the adapter took a vocabulary gpu_fit refused")
        .to_string();
    assert_eq!(gpu_err, e);
}

/// A decoder warmed from SmolLM2's headers alone (`decoder::warm`: kernels compiled on
/// placeholders, no weights) and then given the real model compiles nothing more and gives
/// exactly the logits of a decoder opened the usual way, on the same adapter; a different
/// context length compiles what differs.
#[test]
fn a_decoder_warmed_from_headers_needs_no_more_kernels() {
    let bytes = std::fs::read(smollm2()).unwrap();
    let files = vec![("smollm2.gguf".to_string(), bytes)];
    let (head, _) = from_headers("smollm2", &files);
    let full = smollm2_model();
    let opts = DecoderOptions {
        ctx_len: 256,
        max_batch: 16,
        ..Default::default()
    };
    let gpu = || gpu_with(&GpuOptions::default());
    let rows = |m: &Model| tide_gpu::memory::MemoryRows::local(m);
    let w = tide_gpu::decoder::warm(gpu(), &head, &rows(&head), opts.clone()).unwrap();
    let warmed = w.pipelines_compiled();
    assert!(warmed > 10, "{warmed} pipelines");
    let mut d = GpuDecoder::from_warm(w, &full, &rows(&full), opts.clone()).unwrap();
    assert_eq!(
        d.pipelines_compiled(),
        warmed,
        "the real decoder compiled kernels of its own"
    );
    let mut plain = GpuDecoder::new(gpu(), &full, opts.clone()).unwrap();
    let prompt = full
        .tokenizer
        .encode("Kernels compiled before the weights.", true)
        .unwrap();
    d.feed(&prompt).unwrap();
    plain.feed(&prompt).unwrap();
    assert_eq!(d.logits().unwrap(), plain.logits().unwrap());
    for t in [42, 7] {
        d.feed(&[t]).unwrap();
        plain.feed(&[t]).unwrap();
        assert_eq!(d.logits().unwrap(), plain.logits().unwrap());
    }
    // Another context length is another attention kernel.
    let w = tide_gpu::decoder::warm(gpu(), &head, &rows(&head), opts.clone()).unwrap();
    let warmed = w.pipelines_compiled();
    let longer = DecoderOptions {
        ctx_len: 512,
        ..opts
    };
    let d = GpuDecoder::from_warm(w, &full, &rows(&full), longer).unwrap();
    assert!(d.pipelines_compiled() > warmed);
}
