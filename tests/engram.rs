//! Engram: a small random Engram model exported by `train/golden.py engram` (Engram at layers
//! 0 and 2 of 3, 2 hash heads per order over tables of 31+ rows, 4-bit rows, a compression
//! table folding ids in pairs) against PyTorch's logits at every position, fed at once and
//! token by token, on the CPU reference and the GPU decoder; the host hashing against the
//! formula; bad Engram files refused with the tensor named.
mod common;

use std::sync::Arc;

use common::{assert_close, repo};
use tide_gpu::cpu::CpuModel;
use tide_gpu::model;

fn dir() -> std::path::PathBuf {
    repo().join("tests/fixtures/tiny_engram")
}

fn golden() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("golden.json")).unwrap()).unwrap()
}

/// PyTorch computes in float64 (its RMSNorm in f32); the CPU reference in f32.
const TOL: f32 = 1e-4;

#[test]
fn cpu_reference_matches_pytorch() {
    let m = model::load(&dir()).unwrap();
    let e = m.engram.as_ref().expect("an Engram model");
    assert_eq!(e.layers.iter().map(|l| l.layer).collect::<Vec<_>>(), [0, 2]);
    assert_eq!((e.heads, e.head_dim, e.d_mem()), (2, 32, 128));
    let g = golden();
    let cm = Arc::new(CpuModel::new(&m));
    let v = m.config.vocab;
    for case in g["seqs"].as_array().unwrap() {
        let ids = common::json_ids(&case["ids"]);
        let want: Vec<f32> = common::json_rows(&case["logits"]).concat();
        let mut s = cm.session(64);
        s.keep_all = true;
        s.feed(&ids).unwrap();
        assert_close("Engram, all at once", &s.all_logits, &want, TOL);
        let mut s = cm.session(64);
        for (t, &id) in ids.iter().enumerate() {
            let l = s.feed(&[id]).unwrap();
            assert_close(
                &format!("Engram, token {t}"),
                l,
                &want[t * v..(t + 1) * v],
                TOL,
            );
        }
    }
    // Engram matters: without it (the plain backbone) the logits are far off.
    let mut plain = m.clone();
    plain.engram = None;
    let ids = common::json_ids(&g["seqs"][0]["ids"]);
    let mut s = Arc::new(CpuModel::new(&plain)).session(64);
    let l = s.feed(&ids).unwrap().to_vec();
    let want = &common::json_rows(&g["seqs"][0]["logits"])[ids.len() - 1];
    let off = l
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(off > 0.1, "the backbone alone is within {off} of Engram");
}

/// The host hash against the formula written out with 128-bit integers: s_2 = x'_t r_0 XOR
/// x'_{t-1} r_1, s_3 = s_2 XOR x'_{t-2} r_2, row = s mod p.
#[test]
fn hash_follows_the_formula() {
    let m = model::load(&dir()).unwrap();
    let e = m.engram.as_ref().unwrap();
    for el in &e.layers {
        for last in [[3u64, 7, 96], [0, 0, 0], [47, 96, 96], [12, 12, 40]] {
            let mut got = Vec::new();
            e.hash(el, last, &mut got);
            let r = el.multipliers.map(|x| x as u128);
            let s2 = (last[0] as u128 * r[0]) ^ (last[1] as u128 * r[1]);
            let s3 = s2 ^ (last[2] as u128 * r[2]);
            let mut want = Vec::new();
            for (o, s) in [s2, s3].into_iter().enumerate() {
                want.extend(el.primes[o].iter().map(|&p| (s % p as u128) as u32));
            }
            assert_eq!(got, want, "layer {} ids {last:?}", el.layer);
            assert!(got
                .iter()
                .zip(el.primes.concat())
                .all(|(&g, p)| (g as u64) < p));
        }
    }
}

/// The GPU decoder (hashed rows streamed per step, memory.wgsl's gather, engram.wgsl's
/// projection, gate and convolution) in both kernel families: a batch, token by token, and
/// two sequences sharing steps in their own slots (continuous batching), against PyTorch.
#[test]
fn gpu_matches_pytorch() {
    use tide_gpu::decoder::{DecoderOptions, GpuDecoder, KernelSet};
    let m = model::load(&dir()).unwrap();
    let g = golden();
    let case = &g["seqs"][0];
    let ids = common::json_ids(&case["ids"]);
    let want: Vec<Vec<f32>> = common::json_rows(&case["logits"]);
    for ks in [KernelSet::CpuAdapter, KernelSet::Gpu] {
        let opts = DecoderOptions {
            ctx_len: 64,
            slots: 2,
            max_batch: 16,
            kernels: ks,
            token_by_token_upto: 0,
            ..Default::default()
        };
        let mut dec = GpuDecoder::new(common::gpu(), &m, opts).unwrap();
        // 19 tokens in batches of at most 16: the second batch's convolution reads rows
        // the first wrote.
        let all = dec.feed_all(&ids[..16]).unwrap();
        assert_close(
            &format!("Engram GPU batch ({ks:?})"),
            &all,
            &want[..16].concat(),
            3e-4,
        );
        dec.feed(&ids[16..]).unwrap();
        let l = dec.logits().unwrap();
        let what = format!("Engram GPU second batch ({ks:?})");
        assert_close(&what, &l, &want[ids.len() - 1], 3e-4);
        dec.reset();
        for (t, &id) in ids.iter().enumerate() {
            dec.feed(&[id]).unwrap();
            let l = dec.logits().unwrap();
            assert_close(
                &format!("Engram GPU token {t} ({ks:?})"),
                &l,
                &want[t],
                3e-4,
            );
        }
        // Slot 0 ten tokens ahead of slot 1, then both step together.
        for (slot, n) in [(0, 10usize), (1, 1)] {
            dec.use_slot(slot).unwrap();
            dec.reset();
            dec.feed(&ids[..n]).unwrap();
        }
        let mut pos = [10usize, 1];
        while pos[0] < ids.len() {
            let out = dec
                .step_seqs(&[(0, ids[pos[0]]), (1, ids[pos[1]])])
                .unwrap();
            for s in 0..2 {
                let what = format!("Engram GPU slot {s} at {} ({ks:?})", pos[s]);
                assert_close(&what, &out[s], &want[pos[s]], 3e-4);
                pos[s] += 1;
            }
        }
    }
}

/// A model directory holding `config` and `st` (a broken copy of the fixture), loaded.
fn load_err(config: &serde_json::Value, st: &common::st_file::StFile, name: &str) -> String {
    let tmp = std::env::temp_dir().join(format!("tide_engram_{}_{name}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let p = common::st_file::write_st(st, name);
    std::fs::rename(&p, tmp.join("model.safetensors")).unwrap();
    std::fs::write(tmp.join("config.json"), config.to_string()).unwrap();
    let e = model::load(&tmp).err().map(|e| e.to_string());
    std::fs::remove_dir_all(&tmp).ok();
    e.unwrap_or_else(|| panic!("{name}: loaded"))
}

/// Bad Engram files are refused with the tensor or setting named: tensors without the config
/// entry, a missing table, an even multiplier, a compressed id beyond the vocabulary, a table
/// whose rows do not match its prime.
#[test]
fn bad_engram_files_are_refused() {
    use common::st_file::{read_st, tensor};
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("config.json")).unwrap()).unwrap();
    let good = || read_st(&dir().join("model.safetensors"));
    let mut plain = cfg.clone();
    plain.as_object_mut().unwrap().remove("engram");
    let e = load_err(&plain, &good(), "no-entry");
    assert!(
        e.contains("Engram tensor") && e.contains("\"engram\""),
        "{e}"
    );

    let mut f = good();
    f.tensors.retain(|t| t.0 != "engram.2.table.1.1");
    let e = load_err(&cfg, &f, "no-table");
    assert!(e.contains("engram.2.table.1.1"), "{e}");

    let mut f = good();
    tensor(&mut f, "model.layers.0.engram.multipliers").3[0..8]
        .copy_from_slice(&2i64.to_le_bytes());
    let e = load_err(&cfg, &f, "even");
    assert!(
        e.contains("model.layers.0.engram.multipliers") && e.contains("odd"),
        "{e}"
    );

    let mut f = good();
    tensor(&mut f, "engram.compress").3[8..16].copy_from_slice(&500i64.to_le_bytes());
    let e = load_err(&cfg, &f, "compress");
    assert!(e.contains("engram.compress") && e.contains("500"), "{e}");

    let mut f = good();
    let t = tensor(&mut f, "model.layers.2.engram.primes");
    let p = u64::from_le_bytes(t.3[0..8].try_into().unwrap());
    t.3[0..8].copy_from_slice(&(p + 2).to_le_bytes());
    let e = load_err(&cfg, &f, "prime");
    assert!(e.contains("engram.2.table.0.0"), "{e}");

    let mut bad = cfg.clone();
    bad["engram"]["layers"] = serde_json::json!([0, 7]);
    let e = load_err(&bad, &good(), "layer");
    assert!(e.contains("layer 7"), "{e}");
}
