//! Engram: a small random Engram model exported by `train/golden.py engram` (Engram at layers
//! 0 and 2 of 3, 2 hash heads per order over tables of 31+ rows, 4-bit rows, a compression
//! table folding ids in pairs) against PyTorch's logits at every position, fed at once and
//! token by token, on the CPU reference and the GPU decoder; the host hashing against the
//! formula; bad Engram files refused with the tensor named.
mod common;

use common::repo;
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
    common::golden::cpu_matches(&m, &g, TOL, "Engram");
    // Engram matters: without it (the plain backbone) the logits are far off.
    let mut plain = m.clone();
    plain.engram = None;
    let off = common::golden::off_without(&plain, &g);
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
    // 19 tokens in batches of 16 and 3: the second batch's convolution reads rows the first
    // wrote; slot 0 ten tokens ahead of slot 1 (past the convolution's reach).
    let m = model::load(&dir()).unwrap();
    common::golden::gpu_matches(&m, &golden(), 16, 10, 3e-4);
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
