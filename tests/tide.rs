//! TIDE memory end to end: the CPU reference and the GPU decoder against golden logits and
//! router weights from the PyTorch model (train/golden.py, an independent implementation), in
//! every stored form of the tables; the NULL slot and K = 0 reproduce the plain backbone.
mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::st_file::{read_st, tensor, write_st, StFile};
use common::{assert_close, gpu, json_ids as ids, repo};
use tide_gpu::cpu::CpuModel;
use tide_gpu::decoder::{DecoderOptions, GpuDecoder, KernelSet};
use tide_gpu::model::{attach_memory, load, Model};

fn dir() -> PathBuf {
    repo().join("tests/fixtures/tiny_tide")
}

fn golden() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("golden.json")).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    match v {
        serde_json::Value::Array(a) => a.iter().flat_map(floats).collect(),
        x => vec![x.as_f64().unwrap() as f32],
    }
}

/// The fixture with its inline 4-bit memory, or with a separate memory file attached.
fn variant(name: &str) -> Model {
    let mut m = load(&dir()).unwrap();
    match name {
        "model.safetensors" => {}
        "backbone" => m.memory = None,
        file => attach_memory(&mut m, &dir().join(file)).unwrap(),
    }
    m
}

const VARIANTS: [&str; 4] = [
    "model.safetensors",
    "memory_q8_0.safetensors",
    "memory_f16_normalized.safetensors",
    "backbone",
];

/// Both kernel families run on any adapter: the CPU-adapter set (lavapipe's default: the
/// router fused into the decode matvecs) and the GPU set (router kernel, storage reads).
const KERNEL_SETS: [KernelSet; 2] = [KernelSet::CpuAdapter, KernelSet::Gpu];

/// A GPU decoder for the fixture's short sequences.
fn decoder(m: &Model, max_batch: usize, kernels: KernelSet) -> GpuDecoder {
    let opts = DecoderOptions {
        ctx_len: 64,
        max_batch,
        kernels,
        // The prefill kernels, however short the batch.
        token_by_token_upto: 0,
        ..Default::default()
    };
    GpuDecoder::new(gpu(), m, opts).unwrap()
}

/// (all-position logits, router weights [t][l][K+1]) from the CPU reference.
fn cpu_run(m: &Model, seq: &[u32]) -> (Vec<f32>, Vec<f32>) {
    let cm = Arc::new(CpuModel::new(m));
    let mut s = cm.session(64);
    s.keep_all = true;
    s.feed(seq).unwrap();
    (s.all_logits.clone(), s.router.clone())
}

#[test]
fn cpu_reference_matches_pytorch_in_every_table_form() {
    let g = golden();
    for v in VARIANTS {
        let m = variant(v);
        for case in g["seqs"][v].as_array().unwrap() {
            let seq = ids(&case["ids"]);
            let (logits, router) = cpu_run(&m, &seq);
            assert_close(
                &format!("{v} logits"),
                &logits,
                &floats(&case["logits"]),
                1e-4,
            );
            if v != "backbone" {
                assert_close(
                    &format!("{v} router"),
                    &router,
                    &floats(&case["router"]),
                    1e-5,
                );
            } else {
                assert!(router.is_empty());
            }
        }
    }
}

#[test]
fn gpu_matches_pytorch_batched_and_token_by_token() {
    let g = golden();
    for (v, ks) in VARIANTS
        .iter()
        .flat_map(|v| KERNEL_SETS.iter().map(move |k| (*v, *k)))
    {
        let m = variant(v);
        let mut dec = decoder(&m, 16, ks);
        let tag = format!("{v} ({ks:?} kernels)");
        for case in g["seqs"][v].as_array().unwrap() {
            let seq = ids(&case["ids"]);
            let want = floats(&case["logits"]);
            dec.reset();
            let logits = dec.feed_all(&seq).unwrap();
            assert_close(&format!("{tag} GPU batch logits"), &logits, &want, 2e-4);
            if v != "backbone" {
                let r = dec.router_weights().unwrap();
                assert_close(
                    &format!("{tag} GPU router"),
                    &r,
                    &floats(&case["router"]),
                    2e-5,
                );
            }
            // Decode path (matvec kernels), one token per step. On CPU adapters the router
            // runs inside the gate/up matvec and its softmax in the down projection.
            dec.reset();
            let vocab = m.config.vocab;
            let router = if v == "backbone" {
                Vec::new()
            } else {
                floats(&case["router"])
            };
            let per_tok = router.len() / seq.len().max(1);
            for (t, &tok) in seq.iter().enumerate() {
                dec.feed(&[tok]).unwrap();
                let l = dec.logits().unwrap();
                assert_close(
                    &format!("{tag} GPU decode logits at {t}"),
                    &l,
                    &want[t * vocab..(t + 1) * vocab],
                    2e-4,
                );
                if v != "backbone" {
                    assert_close(
                        &format!("{tag} GPU decode router at {t}"),
                        &dec.router_weights().unwrap(),
                        &router[t * per_tok..(t + 1) * per_tok],
                        2e-5,
                    );
                }
            }
        }
    }
}

/// The GPU computes the K memory rows once per token in one kernel and every layer reads them;
/// the CPU reference decodes and normalises them on the host. Both must agree on a long random
/// sequence.
#[test]
fn memory_once_per_token_equals_per_layer() {
    let m = variant("model.safetensors");
    let mut rng = common::Rng(3);
    let seq: Vec<u32> = (0..40)
        .map(|_| (rng.next_u64() % m.config.vocab as u64) as u32)
        .collect();
    let (want, want_r) = cpu_run(&m, &seq);
    let mut dec = decoder(&m, 64, KernelSet::Auto);
    let got = dec.feed_all(&seq).unwrap();
    assert_close("logits", &got, &want, 2e-4);
    assert_close("router", &dec.router_weights().unwrap(), &want_r, 2e-5);
}

/// A router whose NULL logit dominates switches the memory off: the output equals the plain
/// backbone's (the memory term is below f32 rounding), on the CPU and the GPU.
#[test]
fn huge_null_logit_reproduces_the_backbone() {
    let seq = ids(&golden()["seqs"]["backbone"][0]["ids"]);
    let mut m = variant("model.safetensors");
    let (c, k) = (m.config.clone(), m.memory.as_ref().unwrap().k);
    // Direction u_l = mean of the layer's normalised post-attention states over the sequence:
    // NULL row = M u_l, block rows = 0, so NULL beats every block by M (u_l . n) >> 100.
    let cm = Arc::new(CpuModel::new(&m));
    let mut s = cm.session(64);
    s.post_attn = Some(Vec::new());
    s.feed(&seq).unwrap();
    let n = s.post_attn.take().unwrap();
    let d = c.dim;
    let mem = m.memory.as_mut().unwrap();
    for l in 0..c.n_layers {
        let mut u = vec![0f32; d];
        for t in 0..seq.len() {
            let row = &n[(t * c.n_layers + l) * d..(t * c.n_layers + l + 1) * d];
            for (a, b) in u.iter_mut().zip(row) {
                *a += b;
            }
        }
        let min_dot = (0..seq.len())
            .map(|t| {
                let row = &n[(t * c.n_layers + l) * d..(t * c.n_layers + l + 1) * d];
                row.iter().zip(&u).map(|(a, b)| a * b).sum::<f32>()
            })
            .fold(f32::INFINITY, f32::min);
        assert!(
            min_dot > 0.0,
            "precondition: u . n > 0 for every token (layer {l})"
        );
        let scale = 200.0 / min_dot;
        let mut w = vec![0f32; (k + 1) * d];
        for (i, x) in u.iter().enumerate() {
            w[k * d + i] = x * scale;
        }
        mem.routers[l] = Some(w);
    }
    let mut plain = m.clone();
    plain.memory = None;
    let (tide, router) = cpu_run(&m, &seq);
    let (base, _) = cpu_run(&plain, &seq);
    assert!(
        router.chunks(k + 1).all(|a| a[k] == 1.0),
        "NULL weight is 1"
    );
    assert_eq!(
        tide, base,
        "CPU: huge NULL logit gives the backbone's logits exactly"
    );
    let opts = DecoderOptions {
        ctx_len: 64,
        max_batch: 16,
        // The prefill kernels, however short the batch.
        token_by_token_upto: 0,
        ..Default::default()
    };
    let gt = GpuDecoder::new(gpu(), &m, opts.clone())
        .unwrap()
        .feed_all(&seq)
        .unwrap();
    let gb = GpuDecoder::new(gpu(), &plain, opts)
        .unwrap()
        .feed_all(&seq)
        .unwrap();
    assert_eq!(
        gt, gb,
        "GPU: huge NULL logit gives the backbone's logits exactly"
    );
}

// ---- bad memory files: each refused with the tensor named ----

fn attach_err(f: &StFile, name: &str) -> String {
    let p = write_st(f, name);
    let mut m = variant("backbone");
    let e = attach_memory(&mut m, &p).expect_err("a bad memory file must be refused");
    let _ = std::fs::remove_file(&p);
    e.to_string()
}

#[test]
fn bad_memory_files_are_refused_with_the_tensor_named() {
    let good = || read_st(&dir().join("memory_q8_0.safetensors"));
    // The unmodified file attaches.
    let p = write_st(&good(), "good");
    attach_memory(&mut variant("backbone"), &p).unwrap();
    let _ = std::fs::remove_file(&p);

    // Memory made for a model with another vocabulary.
    let mut f = good();
    f.meta.insert("tide.vocab".into(), "100".into());
    let e = attach_err(&f, "vocab-meta");
    assert!(e.contains("tide.vocab is 100") && e.contains("96"), "{e}");
    let mut f = good();
    f.meta.remove("tide.vocab");
    let t = tensor(&mut f, "tide.memory.0.rows");
    t.2[0] = 100;
    t.3.resize(100 * t.2[1], 0);
    let e = attach_err(&f, "vocab-shape");
    assert!(e.contains("tide.memory.0.rows") && e.contains("100"), "{e}");

    // Wrong width d in a router.
    let mut f = good();
    let t = tensor(&mut f, "tide.router.0.weight");
    t.2 = vec![4, 32];
    t.3.truncate(4 * 32 * 4);
    let e = attach_err(&f, "width");
    assert!(
        e.contains("tide.router.0.weight") && e.contains("[4, 64]"),
        "{e}"
    );

    // A router for another K (3 slots where K + 1 = 4).
    let mut f = good();
    let t = tensor(&mut f, "tide.router.1.weight");
    t.2 = vec![3, 64];
    t.3.truncate(3 * 64 * 4);
    let e = attach_err(&f, "k");
    assert!(
        e.contains("tide.router.1.weight") && e.contains("[4, 64]"),
        "{e}"
    );
    // ... or a K that disagrees with the tables present.
    let mut f = good();
    f.meta.insert("tide.k".into(), "2".into());
    let e = attach_err(&f, "k-meta");
    assert!(e.contains("block 2") && e.contains("tide.k = 2"), "{e}");

    // NaN in a table (the f16 scale of row 5, block 0, of table 1).
    let mut f = good();
    let t = tensor(&mut f, "tide.memory.1.rows");
    let rb = t.2[1];
    t.3[5 * rb] = 0x00;
    t.3[5 * rb + 1] = 0x7e;
    let e = attach_err(&f, "nan");
    assert!(
        e.contains("tide.memory.1.rows") && e.contains("row 5"),
        "{e}"
    );

    // A truncated file.
    let p = write_st(&good(), "trunc");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let e = attach_memory(&mut variant("backbone"), &p)
        .expect_err("truncated")
        .to_string();
    let _ = std::fs::remove_file(&p);
    assert!(e.contains("truncated") && e.contains("tide."), "{e}");
}

#[path = "common/gguf_writer.rs"]
mod gguf_writer;

/// Memory inside a GGUF file (native Q4_1 rows, tide.* keys) reads the same as the same bytes
/// in a separate safetensors memory file, and runs the same on the GPU.
#[test]
fn gguf_memory_equals_the_safetensors_form() {
    use gguf_writer::{tiny_llama, Kv, TensorSpec};
    let (d, v, k) = (32usize, 40usize, 2usize);
    let mut rng = common::Rng(11);
    let rows: Vec<Vec<u8>> = (0..k)
        .map(|_| {
            (0..v * d / 32)
                .flat_map(|_| {
                    let mut b = vec![0x00, 0x2c, 0x00, 0xac]; // d = 0.0625, m = -0.0625 (f16)
                    b.extend(rng.bytes(16));
                    b
                })
                .collect()
        })
        .collect();
    let f32s = |x: Vec<f32>| -> Vec<u8> { x.iter().flat_map(|f| f.to_le_bytes()).collect() };
    let gammas: Vec<Vec<u8>> = (0..k)
        .map(|_| f32s(rng.vec(d, 0.5).iter().map(|x| x + 1.0).collect()))
        .collect();
    let router = f32s(rng.vec((k + 1) * d, 0.5));
    let mut g = tiny_llama();
    let plain = g.bytes();
    for i in 0..k {
        g.tensors.push(TensorSpec {
            name: format!("tide.memory.{i}.rows"),
            dims: vec![d as u64, v as u64],
            ty: 3, // GGML Q4_1
            data: rows[i].clone(),
        });
        g.tensors.push(TensorSpec {
            name: format!("tide.memory.{i}.gamma"),
            dims: vec![d as u64],
            ty: 0,
            data: gammas[i].clone(),
        });
    }
    g.tensors.push(TensorSpec {
        name: "tide.router.0.weight".into(),
        dims: vec![d as u64, (k + 1) as u64],
        ty: 0,
        data: router.clone(),
    });
    g.kvs.push(("tide.k".into(), Kv::U32(k as u32)));
    g.kvs.push(("tide.rows".into(), Kv::Str("q4_1".into())));
    let tmp = std::env::temp_dir().join(format!("tide-gguf-mem-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (with_mem, without) = (tmp.join("with.gguf"), tmp.join("plain.gguf"));
    std::fs::write(&with_mem, g.bytes()).unwrap();
    std::fs::write(&without, plain).unwrap();

    let mut st = StFile {
        tensors: Vec::new(),
        meta: [("tide.k", "2"), ("tide.rows", "q4_1")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    };
    for i in 0..k {
        st.tensors.push((
            format!("tide.memory.{i}.rows"),
            safetensors::Dtype::U8,
            vec![v, d / 32 * 20],
            rows[i].clone(),
        ));
        st.tensors.push((
            format!("tide.memory.{i}.gamma"),
            safetensors::Dtype::F32,
            vec![d],
            gammas[i].clone(),
        ));
    }
    st.tensors.push((
        "tide.router.0.weight".into(),
        safetensors::Dtype::F32,
        vec![k + 1, d],
        router,
    ));
    let st_path = write_st(&st, "gguf-twin.safetensors");

    let a = load(&with_mem).unwrap();
    assert_eq!(a.memory.as_ref().map(|m| m.k), Some(k));
    let mut b = load(&without).unwrap();
    let base = b.clone();
    attach_memory(&mut b, &st_path).unwrap();
    let seq = [3u32, 17, 39, 0, 8, 8, 21];
    let (la, ra) = cpu_run(&a, &seq);
    let (lb, rb) = cpu_run(&b, &seq);
    assert_eq!(la, lb, "GGUF and safetensors memory give the same logits");
    assert_eq!(ra, rb);
    assert_ne!(la, cpu_run(&base, &seq).0, "the memory changes the output");
    let got = GpuDecoder::new(
        gpu(),
        &a,
        DecoderOptions {
            ctx_len: 16,
            max_batch: 8,
            // The prefill kernels, however short the batch.
            token_by_token_upto: 0,
            ..Default::default()
        },
    )
    .unwrap()
    .feed_all(&seq)
    .unwrap();
    assert_close("GGUF memory on the GPU", &got, &la, 2e-4);
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_file(&st_path);
}

/// Layer-wise ablation on the GPU: with one layer's memory switched off, batches and single
/// tokens (the fused router on CPU adapters) give the CPU reference's logits with that layer
/// off, and switching it back on restores the full model.
#[test]
fn switching_a_layer_off_matches_the_cpu_reference() {
    let m = variant("model.safetensors");
    let seq = ids(&golden()["seqs"]["model.safetensors"][0]["ids"]);
    let (vocab, n_layers) = (m.config.vocab, m.config.n_layers);
    let cm = Arc::new(CpuModel::new(&m));
    let (full, _) = cpu_run(&m, &seq);
    for ks in KERNEL_SETS {
        let mut dec = decoder(&m, 16, ks);
        // The CPU-adapter set fuses the router into the decode matvecs, the GPU set does not.
        assert_eq!(dec.router_fused(), ks == KernelSet::CpuAdapter, "{ks:?}");
        // Each layer off alone, then every layer back on.
        for (l, on) in [
            (0, false),
            (0, true),
            (n_layers - 1, false),
            (n_layers - 1, true),
        ] {
            dec.set_layer_memory(l, on).unwrap();
            let mut s = cm.session(64);
            s.keep_all = true;
            s.memory_off[l] = !on;
            s.feed(&seq).unwrap();
            let want = if on {
                full.clone()
            } else {
                s.all_logits.clone()
            };
            assert!(
                on || (0..want.len()).any(|i| (want[i] - full[i]).abs() > 1e-3),
                "layer {l}'s memory changes nothing: the test could not fail"
            );
            dec.reset();
            let batch = dec.feed_all(&seq).unwrap();
            assert_close(
                &format!("{ks:?}: layer {l} on={on} batch"),
                &batch,
                &want,
                2e-4,
            );
            dec.reset();
            for (t, &tok) in seq.iter().enumerate() {
                dec.feed(&[tok]).unwrap();
                assert_close(
                    &format!("{ks:?}: layer {l} on={on} decode at {t}"),
                    &dec.logits().unwrap(),
                    &want[t * vocab..(t + 1) * vocab],
                    2e-4,
                );
            }
            if !on {
                // The switched-off layer reports no weights at all (NULL included).
                let r = dec.router_weights().unwrap();
                let k1 = m.memory.as_ref().unwrap().k + 1;
                assert!(r[l * k1..(l + 1) * k1].iter().all(|&a| a == 0.0));
            }
        }
    }
}

// ---- tables of mixed types, bad tide.eps, tide.k = 0 beside tide.* tensors ----

/// A tiny GGUF backbone with K = 2 float memory tables of GGML types `tys` (0 = F32,
/// 1 = F16), gammas and a router, plus the given tide.* keys.
fn gguf_with_float_memory(tys: [u32; 2], kvs: Vec<(&str, gguf_writer::Kv)>) -> PathBuf {
    use gguf_writer::{tiny_llama, TensorSpec};
    let (d, v, k) = (32usize, 40usize, 2usize);
    let mut rng = common::Rng(5);
    let f32s = |x: Vec<f32>| -> Vec<u8> { x.iter().flat_map(|f| f.to_le_bytes()).collect() };
    let mut g = tiny_llama();
    for (i, ty) in tys.into_iter().enumerate() {
        let vals = rng.vec(v * d, 1.0);
        let data = match ty {
            0 => f32s(vals),
            1 => vals
                .iter()
                .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                .collect(),
            _ => unreachable!("float tables only"),
        };
        g.tensors.push(TensorSpec {
            name: format!("tide.memory.{i}.rows"),
            dims: vec![d as u64, v as u64],
            ty,
            data,
        });
        g.tensors.push(TensorSpec {
            name: format!("tide.memory.{i}.gamma"),
            dims: vec![d as u64],
            ty: 0,
            data: f32s(vec![1.0; d]),
        });
    }
    g.tensors.push(TensorSpec {
        name: "tide.router.0.weight".into(),
        dims: vec![d as u64, (k + 1) as u64],
        ty: 0,
        data: f32s(rng.vec((k + 1) * d, 0.5)),
    });
    g.kvs
        .extend(kvs.into_iter().map(|(key, val)| (key.to_string(), val)));
    // A name of its own per call: tests may run in parallel threads.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!(
        "tide-gguf-float-mem-{}-{n}.gguf",
        std::process::id()
    ));
    std::fs::write(&p, g.bytes()).unwrap();
    p
}

fn load_err(p: &std::path::Path) -> String {
    let e = load(p).expect_err("a bad file must be refused").to_string();
    let _ = std::fs::remove_file(p);
    e
}

/// The GPU gathers and decodes every table with one type and row size: a table whose type is
/// not the one tide.rows names (or, without it, table 0's) is refused on load, naming the
/// tensor, for a safetensors memory file and for a GGUF.
#[test]
fn memory_tables_of_mixed_types_are_refused() {
    use gguf_writer::Kv;
    // The f16 memory file with table 0 re-encoded as f32 (same values), tide.rows = f32.
    let mut f = read_st(&dir().join("memory_f16_normalized.safetensors"));
    f.meta.insert("tide.rows".into(), "f32".into());
    let t = tensor(&mut f, "tide.memory.0.rows");
    t.1 = safetensors::Dtype::F32;
    t.3 =
        t.3.chunks_exact(2)
            .flat_map(|c| {
                half::f16::from_le_bytes([c[0], c[1]])
                    .to_f32()
                    .to_le_bytes()
            })
            .collect();
    let e = attach_err(&f, "mixed.safetensors");
    assert!(
        e.contains("tide-bad-")
            && e.contains("tensor 'tide.memory.1.rows' is F16 but tide.rows says F32"),
        "{e}"
    );
    // Without tide.rows the tables are read as table 0 is stored: the others must match it.
    f.meta.remove("tide.rows");
    let e = attach_err(&f, "mixed-nometa.safetensors");
    assert!(
        e.contains("tensor 'tide.memory.1.rows' is F16 but tide.rows says F32"),
        "{e}"
    );

    let kvs = |rows: &str| vec![("tide.k", Kv::U32(2)), ("tide.rows", Kv::Str(rows.into()))];
    // The same layout in one type loads (the check is not what refuses the GGUFs below).
    let p = gguf_with_float_memory([1, 1], kvs("f16"));
    assert_eq!(load(&p).unwrap().memory.map(|m| m.k), Some(2));
    let _ = std::fs::remove_file(&p);
    let p = gguf_with_float_memory([0, 1], kvs("f32"));
    let e = load_err(&p);
    assert!(
        e.contains(".gguf")
            && e.contains("tensor 'tide.memory.1.rows' is F16 but tide.rows says F32"),
        "{e}"
    );
    // f16 tables under tide.rows = f32 would be gathered with f32's row size (found by
    // fuzz/fuzz_targets/memory.rs): refused.
    let p = gguf_with_float_memory([1, 1], kvs("f32"));
    let e = load_err(&p);
    assert!(
        e.contains("tensor 'tide.memory.0.rows' is F16 but tide.rows says F32"),
        "{e}"
    );
}

/// A memory file without tide.rows is read in the type its tables are stored in, and every
/// token's rows can be gathered (the fuzzer's case: f16 tables and no tide.rows key).
#[test]
fn memory_without_tide_rows_reads_its_stored_type() {
    // Rows 0 and 95 (the last) of a memory file written from `f`, through its row store.
    let rows = |f: &StFile, tag: &str| {
        let p = write_st(f, tag);
        let mut m = variant("backbone");
        attach_memory(&mut m, &p).unwrap();
        let _ = std::fs::remove_file(&p);
        let mut out = Vec::new();
        tide_gpu::memory::tide_local(&m.memory.unwrap())
            .gather(&[0, 95], &mut out)
            .unwrap();
        out
    };
    let mut f = read_st(&dir().join("memory_f16_normalized.safetensors"));
    let want = rows(&f, "rows-meta");
    f.meta.remove("tide.rows");
    let out = rows(&f, "rows-nometa");
    assert_eq!(
        out.len(),
        2 * 3 * 64 * 2,
        "two tokens x K = 3 f16 rows of 64"
    );
    assert_eq!(out, want);
}

/// tide.eps must be a finite number > 0 (RMSNorm divides by sqrt(mean + eps)), and tide.k = 0
/// beside tide.* tensors would drop them silently: both refused, naming the key and the file,
/// in a safetensors memory file and in GGUF metadata.
#[test]
fn bad_tide_metadata_is_refused() {
    use gguf_writer::Kv;
    let good = || read_st(&dir().join("memory_f16_normalized.safetensors"));
    for eps in ["NaN", "-1e-5", "0", "inf"] {
        let mut f = good();
        f.meta.insert("tide.eps".into(), eps.into());
        let e = attach_err(&f, "eps.safetensors");
        assert!(
            e.contains("tide-bad-")
                && e.contains(&format!("tide.eps = '{eps}'"))
                && e.contains("finite number > 0"),
            "{e}"
        );
    }
    let mut f = good();
    f.meta.insert("tide.k".into(), "0".into());
    let e = attach_err(&f, "k0.safetensors");
    assert!(
        e.contains("tide-bad-") && e.contains("tide.k = 0") && e.contains("tide.memory.*"),
        "{e}"
    );

    let base = || vec![("tide.rows", Kv::Str("f16".into()))];
    // The untouched GGUF loads with an ordinary eps.
    let mut kvs = base();
    kvs.extend([("tide.k", Kv::U32(2)), ("tide.eps", Kv::F32(1e-6))]);
    let p = gguf_with_float_memory([1, 1], kvs);
    assert_eq!(load(&p).unwrap().memory.map(|m| m.eps), Some(1e-6));
    let _ = std::fs::remove_file(&p);
    for eps in [f32::NAN, -1e-5] {
        let mut kvs = base();
        kvs.extend([("tide.k", Kv::U32(2)), ("tide.eps", Kv::F32(eps))]);
        let e = load_err(&gguf_with_float_memory([1, 1], kvs));
        assert!(
            e.contains(".gguf") && e.contains("tide.eps") && e.contains("finite number > 0"),
            "{e}"
        );
    }
    let mut kvs = base();
    kvs.push(("tide.k", Kv::U32(0)));
    let e = load_err(&gguf_with_float_memory([1, 1], kvs));
    assert!(e.contains(".gguf") && e.contains("tide.k = 0"), "{e}");
}

/// Row stores of another model (here none: a model without memory's) given to a memory
/// model's backends are refused with an error naming the memory, on the CPU reference at its
/// first step and on the GPU when the decoder is built; never a panic. Likewise for Engram.
#[test]
fn memory_without_its_row_stores_is_refused_by_name() {
    use tide_gpu::memory::MemoryRows;
    let engram = load(&repo().join("tests/fixtures/tiny_engram")).unwrap();
    for m in [variant("model.safetensors"), engram] {
        let none = MemoryRows::default();
        let source = match (&m.memory, &m.engram) {
            (Some(t), _) => t.source.clone(),
            (None, Some(e)) => e.source.clone(),
            _ => unreachable!("both fixtures have memory"),
        };
        let cm = Arc::new(CpuModel::with_rows(&m, none.clone()));
        let e = cm.session(16).feed(&[1, 2]).unwrap_err().to_string();
        assert!(
            e.contains(&source) && e.contains("no row store was given"),
            "{e}"
        );
        let opts = DecoderOptions {
            ctx_len: 16,
            max_batch: 4,
            ..Default::default()
        };
        let e = GpuDecoder::with_rows(gpu(), &m, &none, opts)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&source) && e.contains("no row store was given"),
            "{e}"
        );
        // The memory's own stores work.
        let cm = Arc::new(CpuModel::with_rows(&m, MemoryRows::local(&m)));
        cm.session(16).feed(&[1, 2]).unwrap();
    }
}
