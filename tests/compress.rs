//! `tide compress`: re-quantised and SVD-factored memory tables run the same on the GPU as on
//! the CPU reference, SVD at full rank gives the tables back, and bad files or arguments are
//! refused with the tensor or argument named. (scripts/check_compress.py checks the reported
//! errors against numpy's own SVD and decoders.)
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::st_file::{read_st, tensor, write_st};
use common::{assert_close, cpu_logits, json_ids as ids, repo, small_decoder};
use tide_gpu::decoder::KernelSet;
use tide_gpu::memory::compress::{
    compress, write_memory_file, CompressOptions, Compressed, RankRule,
};
use tide_gpu::memory::{block_rows, tide_local};
use tide_gpu::model::{attach_memory, load, DType, Model};

fn tiny() -> PathBuf {
    repo().join("tests/fixtures/tiny_tide")
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tide-compress-{}-{name}", std::process::id()))
}

/// `m`'s memory compressed, written as a memory file and attached to a fresh copy of the
/// model at `dir`, as `--memory` would. SVD bases in f16 (the CLI's default), except with
/// f32 rows, which keep them in f32 too (full precision).
fn compressed(dir: &Path, m: &Model, dtype: DType, svd: Option<RankRule>) -> (Model, Compressed) {
    let mem = m.memory.as_ref().unwrap();
    let opts = CompressOptions {
        dtype,
        svd,
        basis_f16: dtype != DType::F32,
    };
    let c = compress(mem, &opts, &mut |_| {}).unwrap();
    let p = tmp(&format!("{dtype:?}-{svd:?}.safetensors").replace([' ', '(', ')'], ""));
    write_memory_file(mem, &c, dtype, m.token_counts.as_deref(), &p).unwrap();
    let mut out = load(dir).unwrap();
    attach_memory(&mut out, &p).unwrap();
    let _ = std::fs::remove_file(&p);
    (out, c)
}

/// Every encoding and SVD form, raw and pre-normalised tables: the GPU's logits (both kernel
/// families, batched and token by token) equal the CPU reference's on the same compressed
/// tables, within 2e-4 (the tolerance of the uncompressed fixture's GPU test).
#[test]
fn compressed_tables_give_the_same_logits_on_gpu_and_cpu() {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny().join("golden.json")).unwrap())
            .unwrap();
    let seq = ids(&golden["seqs"]["model.safetensors"][0]["ids"]);
    let raw = load(&tiny()).unwrap();
    let mut normalized = load(&tiny()).unwrap();
    attach_memory(
        &mut normalized,
        &tiny().join("memory_f16_normalized.safetensors"),
    )
    .unwrap();
    let cases: [(&Model, DType, Option<RankRule>); 8] = [
        (&raw, DType::Q4_1, None),
        (&raw, DType::Q8_0, None),
        (&raw, DType::F16, None),
        (&raw, DType::Q4_1, Some(RankRule::Rank(20))),
        (&raw, DType::F16, Some(RankRule::Ratio(1.0))),
        (&raw, DType::Q8_0, Some(RankRule::Energy(0.9))),
        (&raw, DType::F32, Some(RankRule::Rank(24))),
        (&normalized, DType::Q4_1, Some(RankRule::Rank(40))),
    ];
    for (src, dtype, svd) in cases {
        let (m, c) = compressed(&tiny(), src, dtype, svd);
        let mem = m.memory.as_ref().unwrap();
        assert_eq!(mem.svd.as_ref().map(|s| s.rank), c.rank);
        let f16 = mem.svd.as_ref().map(|s| s.basis_f16);
        assert_eq!(
            f16,
            svd.map(|_| dtype != DType::F32),
            "the basis type read back"
        );
        assert_eq!(mem.normalized, src.memory.as_ref().unwrap().normalized);
        let want = cpu_logits(&m, &seq);
        let vocab = m.config.vocab;
        for ks in [KernelSet::CpuAdapter, KernelSet::Gpu] {
            let tag = format!("{dtype:?} svd={svd:?} ({ks:?} kernels)");
            let mut dec = small_decoder(&m, ks);
            let got = dec.feed_all(&seq).unwrap();
            assert_close(&format!("{tag} batch"), &got, &want, 2e-4);
            dec.reset();
            for (t, &tok) in seq.iter().enumerate() {
                dec.feed(&[tok]).unwrap();
                let l = dec.logits().unwrap();
                let w = &want[t * vocab..(t + 1) * vocab];
                assert_close(&format!("{tag} decode at {t}"), &l, w, 2e-4);
            }
        }
    }
}

/// The default model's tables (4 x 8192 x 192): SVD at full rank in f32 gives every row back
/// (the rows the runtime computes, after the norm, within 1e-4), and at 8 bits it costs what
/// 8-bit rows cost without SVD (the relative error within 0.5-2x of theirs, both ~5e-3).
#[test]
fn svd_at_full_rank_reproduces_the_tables() {
    let dir = repo().join("models/tide-k4");
    let m = load(&dir).unwrap();
    let d = m.config.dim;
    let (full, c) = compressed(&dir, &m, DType::F32, Some(RankRule::Rank(d)));
    for b in &c.blocks {
        assert_eq!(b.rank, d);
        assert!(
            b.rel_error < 1e-5,
            "block {} error {}",
            b.block,
            b.rel_error
        );
        assert!(
            b.svd_rel_error < 1e-5,
            "block {}: {}",
            b.block,
            b.svd_rel_error
        );
    }
    let (orig, back) = (m.memory.as_ref().unwrap(), full.memory.as_ref().unwrap());
    let k = orig.k;
    let (mut a, mut b) = (vec![0f32; k * d], vec![0f32; k * d]);
    let (orig_rows, back_rows) = (tide_local(orig), tide_local(back));
    for v in (0..m.config.vocab as u32).step_by(37) {
        block_rows(orig, &orig_rows, v, &mut a).unwrap();
        block_rows(back, &back_rows, v, &mut b).unwrap();
        assert_close(&format!("row of token {v}"), &b, &a, 1e-4);
    }
    let (_, q8) = compressed(&dir, &m, DType::Q8_0, None);
    let (_, svd8) = compressed(&dir, &m, DType::Q8_0, Some(RankRule::Rank(d)));
    for (p, s) in q8.blocks.iter().zip(&svd8.blocks) {
        assert!(p.rel_error > 1e-3 && p.rel_error < 1e-2, "{p:?}");
        let r = s.rel_error / p.rel_error;
        assert!(
            (0.5..2.0).contains(&r),
            "8-bit {p:?} against SVD + 8-bit {s:?}"
        );
    }
    // A lower rank loses what the singular values say it loses, and never more.
    let (_, half) = compressed(&dir, &m, DType::F32, Some(RankRule::Rank(d / 2)));
    for b in &half.blocks {
        assert!(
            b.svd_rel_error > 0.0 && (b.rel_error - b.svd_rel_error).abs() < 1e-4,
            "{b:?}"
        );
    }
}

/// models/tide-k4/memory-f16.safetensors, which scripts/quality_vs_size.sh compresses, holds
/// the committed model's own tables as trained (train/train.py keeps them): the same gammas
/// and routers bit for bit, and rows that the committed 4-bit rows approximate within Q4_1's
/// error (measured on the rows the runtime computes, after the norm: ~0.08 relative, where
/// another model's tables would be ~1.4 off).
#[test]
fn kept_f16_tables_are_the_committed_models() {
    let dir = repo().join("models/tide-k4");
    let q4 = load(&dir).unwrap();
    let mut f16 = load(&dir).unwrap();
    attach_memory(&mut f16, &dir.join("memory-f16.safetensors")).unwrap();
    let (a, b) = (q4.memory.as_ref().unwrap(), f16.memory.as_ref().unwrap());
    assert_eq!(b.tables[0].dtype(), DType::F16);
    assert_eq!(a.gammas, b.gammas);
    assert_eq!(a.routers, b.routers);
    assert_eq!(q4.token_counts, f16.token_counts);
    let (k, d) = (a.k, q4.config.dim);
    let (mut x, mut y) = (vec![0f32; k * d], vec![0f32; k * d]);
    let (mut err, mut norm) = (0f64, 0f64);
    let (a_rows, b_rows) = (tide_local(a), tide_local(b));
    for v in (0..q4.config.vocab as u32).step_by(7) {
        block_rows(a, &a_rows, v, &mut x).unwrap();
        block_rows(b, &b_rows, v, &mut y).unwrap();
        for (p, q) in x.iter().zip(&y) {
            err += ((p - q) as f64).powi(2);
            norm += (*q as f64).powi(2);
        }
    }
    let rel = (err / norm).sqrt();
    assert!(rel < 0.12, "4-bit rows are {rel} away from the f16 tables");
}

fn attach_err(f: &common::st_file::StFile, name: &str) -> String {
    let p = write_st(f, name);
    let mut m = load(&tiny()).unwrap();
    let e = attach_memory(&mut m, &p).expect_err("a bad SVD memory file must be refused");
    let _ = std::fs::remove_file(&p);
    e.to_string()
}

#[test]
fn bad_svd_memory_files_are_refused() {
    let m = load(&tiny()).unwrap();
    let mem = m.memory.as_ref().unwrap();
    let c = compress(
        mem,
        &CompressOptions {
            dtype: DType::Q8_0,
            svd: Some(RankRule::Rank(20)),
            basis_f16: true,
        },
        &mut |_| {},
    )
    .unwrap();
    let p = tmp("good-svd.safetensors");
    write_memory_file(mem, &c, DType::Q8_0, None, &p).unwrap();
    let good = || read_st(&p);
    assert!(attach_memory(&mut load(&tiny()).unwrap(), &p).is_ok());
    for (rank, what) in [("0", "1..=64"), ("65", "1..=64"), ("x", "not an integer")] {
        let mut f = good();
        f.meta.insert("tide.svd_rank".into(), rank.into());
        let e = attach_err(&f, "rank");
        assert!(e.contains("tide.svd_rank") && e.contains(what), "{e}");
    }
    // A rank whose width (64) disagrees with the stored A_k (32 wide).
    let mut f = good();
    f.meta.insert("tide.svd_rank".into(), "40".into());
    let e = attach_err(&f, "width");
    assert!(e.contains("tide.memory.0.rows"), "{e}");
    // A basis of the wrong shape, or missing.
    let mut f = good();
    let t = tensor(&mut f, "tide.memory.1.basis");
    t.2 = vec![64, 32];
    let e = attach_err(&f, "basis-shape");
    assert!(
        e.contains("tide.memory.1.basis") && e.contains("[32, 64]"),
        "{e}"
    );
    let mut f = good();
    f.tensors.retain(|t| t.0 != "tide.memory.2.basis");
    let e = attach_err(&f, "basis-missing");
    assert!(e.contains("tide.memory.2.basis"), "{e}");
    // A basis without the rank would be ignored silently: refused.
    let mut f = good();
    f.meta.remove("tide.svd_rank");
    let e = attach_err(&f, "no-rank");
    assert!(e.contains("basis") && e.contains("tide.svd_rank"), "{e}");
    // NaN in a basis.
    let mut f = good();
    let t = tensor(&mut f, "tide.memory.0.basis");
    t.3[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    let e = attach_err(&f, "basis-nan");
    assert!(
        e.contains("tide.memory.0.basis") && e.contains("non-finite"),
        "{e}"
    );
    let _ = std::fs::remove_file(&p);
}

fn tide(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_tide"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(!text.contains("panicked"), "tide {args:?} panicked: {text}");
    (o.status.success(), text)
}

/// The command writes a model folder --model accepts (backbone without tide.* tensors, the
/// memory beside it, a report), and refuses bad arguments before writing anything.
#[test]
fn compress_command_writes_a_model_and_refuses_bad_arguments() {
    let model = tiny().display().to_string();
    let out = tmp("cli-out");
    let _ = std::fs::remove_dir_all(&out);
    let o = out.display().to_string();
    let (ok, text) = tide(&[
        "compress",
        "--model",
        &model,
        "--bits",
        "8",
        "--svd-rank",
        "40",
        "--out",
        &o,
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("SVD rank 40 of 64") && text.contains("total rel. error"),
        "{text}"
    );
    let m = load(&out).unwrap();
    let mem = m.memory.as_ref().unwrap();
    assert_eq!((mem.k, mem.svd.as_ref().unwrap().rank), (3, 40));
    assert_eq!(mem.tables[0].dtype(), DType::Q8_0);
    let backbone = read_st(&out.join("model.safetensors"));
    assert!(backbone.tensors.iter().all(|t| !t.0.starts_with("tide.")));
    assert!(backbone.meta.keys().all(|k| !k.starts_with("tide.")));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("compress_report.json")).unwrap()).unwrap();
    assert_eq!(report["blocks"].as_array().unwrap().len(), 3);

    // An existing folder with files in it is never written over.
    let (ok, text) = tide(&["compress", "--model", &model, "--out", &o]);
    assert!(!ok && text.contains("already exists"), "{text}");
    assert!(load(&out).unwrap().memory.unwrap().svd.is_some());
    std::fs::remove_dir_all(&out).unwrap();

    let bad: [(&[&str], &str); 4] = [
        (&["--svd-rank", "65"], "--svd-rank 65 must be in 1..=64"),
        (&["--svd-ratio", "1.5"], "--svd-ratio 1.5 must be in (0, 1]"),
        (&["--svd-energy", "0"], "--svd-energy 0 must be in (0, 1]"),
        (&["--bits", "3"], "'3'"),
    ];
    for (args, want) in bad {
        let mut a = vec!["compress", "--model", &model, "--out", &o];
        a.extend_from_slice(args);
        let (ok, text) = tide(&a);
        assert!(!ok && text.contains(want), "{args:?}: {text}");
        assert!(!out.exists(), "{args:?} left {o} behind");
    }
    let k0 = repo().join("models/tide-k0").display().to_string();
    let (ok, text) = tide(&["compress", "--model", &k0, "--out", &o]);
    assert!(!ok && text.contains("no TIDE memory"), "{text}");
}

/// A sharded model (an index and three shards; the memory tables split between the second
/// and third, the third holding only memory) compresses like the same model in one file: the
/// same memory file, shards without tide.* tensors, an index without their
/// entries nor the memory-only shard, and the same logits. A shard name that leaves the
/// folder is refused.
#[test]
fn compress_command_takes_a_sharded_model() {
    let src = read_st(&tiny().join("model.safetensors"));
    let (memory, backbone): (Vec<_>, Vec<_>) =
        src.tensors.iter().partition(|t| t.0.starts_with("tide."));
    assert!(
        memory.len() > 2,
        "the fixture keeps its memory inside the model"
    );
    let half = backbone.len() / 2;
    let shards = [
        backbone[..half].to_vec(),
        [&backbone[half..], &memory[..1]].concat(),
        memory[1..].to_vec(),
    ];
    let dir = tmp("sharded");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(tiny().join("config.json"), dir.join("config.json")).unwrap();
    let mut map = serde_json::Map::new();
    for (i, tensors) in shards.iter().enumerate() {
        let name = format!("model-{:05}-of-00003.safetensors", i + 1);
        let f = common::st_file::StFile {
            tensors: tensors.iter().map(|&t| t.clone()).collect(),
            meta: src.meta.clone(),
        };
        std::fs::rename(write_st(&f, &name), dir.join(&name)).unwrap();
        for t in tensors {
            map.insert(t.0.clone(), name.clone().into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    let index_path = dir.join("model.safetensors.index.json");
    std::fs::write(&index_path, index.to_string()).unwrap();

    let (one, sharded) = (tmp("one-out"), tmp("sharded-out"));
    for (model, out) in [(tiny(), &one), (dir.clone(), &sharded)] {
        let _ = std::fs::remove_dir_all(out);
        let (m, o) = (model.display().to_string(), out.display().to_string());
        let (ok, text) = tide(&["compress", "--model", &m, "--bits", "8", "--out", &o]);
        assert!(ok, "{text}");
    }
    let file = |d: &Path, n: &str| std::fs::read(d.join(n)).unwrap();
    // The same tensors and metadata (the header's key order varies from run to run).
    let (a, b) = (
        read_st(&one.join("memory.safetensors")),
        read_st(&sharded.join("memory.safetensors")),
    );
    assert!(a.tensors == b.tensors && a.meta == b.meta);
    assert!(!sharded.join("model-00003-of-00003.safetensors").exists());
    for n in 1..=2 {
        let shard = read_st(&sharded.join(format!("model-0000{n}-of-00003.safetensors")));
        assert!(!shard.tensors.is_empty());
        assert!(shard.tensors.iter().all(|t| !t.0.starts_with("tide.")));
    }
    let index: serde_json::Value =
        serde_json::from_slice(&file(&sharded, "model.safetensors.index.json")).unwrap();
    let map = index["weight_map"].as_object().unwrap();
    assert_eq!(map.len(), backbone.len());
    assert!(map
        .values()
        .all(|f| f != "model-00003-of-00003.safetensors"));

    let seq = ids(
        &serde_json::from_slice::<serde_json::Value>(&file(&tiny(), "golden.json")).unwrap()
            ["seqs"]["model.safetensors"][0]["ids"],
    );
    let (a, b) = (load(&one).unwrap(), load(&sharded).unwrap());
    assert_eq!(b.memory.as_ref().unwrap().tables[0].dtype(), DType::Q8_0);
    assert_eq!(cpu_logits(&a, &seq), cpu_logits(&b, &seq));

    // A weight_map entry that points outside the folder.
    let mut bad = index.clone();
    bad["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors".into();
    std::fs::write(&index_path, bad.to_string()).unwrap();
    let o = tmp("bad-out").display().to_string();
    let (ok, text) = tide(&[
        "compress",
        "--model",
        &dir.display().to_string(),
        "--out",
        &o,
    ]);
    assert!(
        !ok && text.contains("not a file in the model's folder"),
        "{text}"
    );
    for d in [dir, one, sharded] {
        std::fs::remove_dir_all(d).unwrap();
    }
}
