//! Continuous batching: sequences in separate K/V cache slots, their next tokens sharing one
//! step (`GpuDecoder::step_seqs`), against the golden logits of each sequence run alone: the
//! PyTorch model for the TIDE fixture (train/golden.py) and llama.cpp for the GGUF
//! architectures (scripts/arch_reference.py). Both kernel families.
mod common;

use common::{assert_close, gpu, json_ids, json_rows, repo};
use tide_gpu::decoder::{DecoderOptions, GpuDecoder, KernelSet};
use tide_gpu::model::{self, Model};

const KERNEL_SETS: [KernelSet; 2] = [KernelSet::CpuAdapter, KernelSet::Gpu];

fn decoder(m: &Model, slots: usize, kernels: KernelSet) -> GpuDecoder {
    let opts = DecoderOptions {
        ctx_len: 64,
        slots,
        max_batch: 16,
        kernels,
        token_by_token_upto: 0,
        ..Default::default()
    };
    GpuDecoder::new(gpu(), m, opts).unwrap()
}

/// Run `seq` in every slot of `starts`: slot i is prefilled with its first `starts[i]` tokens
/// (one batch, or one token), then all slots step together, one token each per step, until
/// each has fed the whole sequence; every logit row is checked against `want[position]`.
/// Slots whose sequence is done drop out, so the steps shrink down to one token.
fn run_slots(
    tag: &str,
    dec: &mut GpuDecoder,
    seq: &[u32],
    starts: &[usize],
    want: &[Vec<f32>],
    tol: f32,
) {
    for (slot, &n) in starts.iter().enumerate() {
        dec.use_slot(slot).unwrap();
        dec.reset();
        dec.feed(&seq[..n]).unwrap();
        let l = dec.logits().unwrap();
        assert_close(
            &format!("{tag} slot {slot} prefill of {n}"),
            &l,
            &want[n - 1],
            tol,
        );
    }
    let mut pos: Vec<usize> = starts.to_vec();
    let mut sizes = Vec::new();
    loop {
        let toks: Vec<(usize, u32)> = pos
            .iter()
            .enumerate()
            .filter(|(_, &p)| p < seq.len())
            .map(|(s, &p)| (s, seq[p]))
            .collect();
        if toks.is_empty() {
            break;
        }
        sizes.push(toks.len());
        let out = dec.step_seqs(&toks).unwrap();
        assert_eq!(out.len(), toks.len());
        for (&(slot, _), l) in toks.iter().zip(&out) {
            let p = pos[slot];
            assert_close(
                &format!("{tag} slot {slot} at {p} in a step of {}", toks.len()),
                l,
                &want[p],
                tol,
            );
            pos[slot] += 1;
            assert_eq!(dec.slot_pos(slot), p + 1);
        }
    }
    assert!(
        sizes.iter().any(|&n| n >= 3),
        "{tag}: no step of 3 or more: {sizes:?}"
    );
}

/// The K = 3 TIDE fixture, its golden sequence and PyTorch's logits at each position.
fn tiny_tide() -> (Model, Vec<u32>, Vec<Vec<f32>>) {
    let dir = repo().join("tests/fixtures/tiny_tide");
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    let m = model::load(&dir).unwrap();
    let case = &g["seqs"]["model.safetensors"][0];
    let seq = json_ids(&case["ids"]);
    let flat: Vec<f32> = json_rows(&case["logits"]).concat();
    let want: Vec<Vec<f32>> = flat.chunks(m.config.vocab).map(|r| r.to_vec()).collect();
    assert_eq!(want.len(), seq.len());
    (m, seq, want)
}

/// The K = 3 TIDE fixture (memory router and rows per token) in all four slots at different
/// positions, against PyTorch.
#[test]
fn tide_sequences_share_steps() {
    let (m, seq, want) = tiny_tide();
    for ks in KERNEL_SETS {
        let mut dec = decoder(&m, 4, ks);
        run_slots(
            &format!("tiny TIDE ({ks:?})"),
            &mut dec,
            &seq,
            &[1, 4, 7, 2],
            &want,
            2e-4,
        );
    }
}

/// Qwen3 (per-head q/k norm after the QKV matmul) and Llama 3 (plain QKV epilogue), against
/// llama.cpp: the same 16-token sequence in three slots, each at its own position.
#[test]
fn gguf_sequences_share_steps() {
    for name in ["qwen3", "llama3"] {
        let dir = repo().join("tests/fixtures/arch");
        let m = model::load(&dir.join(format!("{name}.gguf"))).unwrap();
        let j: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        let (seq, want) = (json_ids(&j["tokens"]), json_rows(&j["logits"]));
        for ks in KERNEL_SETS {
            let mut dec = decoder(&m, 3, ks);
            run_slots(
                &format!("{name} ({ks:?})"),
                &mut dec,
                &seq,
                &[5, 1, 9],
                &want,
                5e-5,
            );
        }
    }
}

/// Several tokens of one slot in one `step_seqs` call (a prompt riding in the shared steps),
/// mixed with other slots' tokens: three slots, so steps of at most three tokens, and a slot's
/// tokens both within one step and across two. Each logit row against the golden row of its
/// position: the later tokens see the earlier ones of the same step. Then the same with
/// logits asked for some tokens only (`step_seqs_some`): a step with one wanted token not
/// first in it, a step with none (its work still reaches the next step's attention), a step
/// with all; the others get None.
fn run_riding(tag: &str, m: &Model, seq: &[u32], want: &[Vec<f32>], tol: f32) {
    // Slot 0: positions 2, 3, 4; slot 1: 1..=4; slot 2: 5. Steps: [0 0 1] [1 1 2] [0 1].
    let plan = [
        (0, 2),
        (0, 3),
        (1, 1),
        (1, 2),
        (1, 3),
        (2, 5),
        (0, 4),
        (1, 4),
    ];
    let some = [false, true, false, false, false, false, true, true];
    for ks in KERNEL_SETS {
        for wanted in [[true; 8], some] {
            let mut dec = decoder(m, 3, ks);
            assert_eq!(dec.seq_group(), 3);
            for (slot, n) in [(0, 2), (1, 1), (2, 5)] {
                dec.use_slot(slot).unwrap();
                dec.reset();
                dec.feed(&seq[..n]).unwrap();
            }
            let toks: Vec<(usize, u32)> = plan.iter().map(|&(s, p)| (s, seq[p])).collect();
            let out = dec.step_seqs_some(&toks, &wanted).unwrap();
            assert_eq!(out.len(), toks.len());
            for ((&(slot, p), l), w) in plan.iter().zip(&out).zip(wanted) {
                let at = format!("{tag} ({ks:?}) slot {slot} at {p}, wanted {w}");
                assert_eq!(l.is_some(), w, "{at}");
                if let Some(l) = l {
                    assert_close(&at, l, &want[p], tol);
                }
            }
            assert_eq!(
                (0..3).map(|s| dec.slot_pos(s)).collect::<Vec<_>>(),
                [5, 5, 6]
            );
        }
    }
}

#[test]
fn prompt_tokens_ride_in_shared_steps() {
    let (m, seq, want) = tiny_tide();
    run_riding("tiny TIDE", &m, &seq, &want, 2e-4);
    let dir = repo().join("tests/fixtures/arch");
    let m = model::load(&dir.join("llama3.gguf")).unwrap();
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("llama3.json")).unwrap()).unwrap();
    run_riding(
        "llama3",
        &m,
        &json_ids(&j["tokens"]),
        &json_rows(&j["logits"]),
        5e-5,
    );
}

/// A slot's sequence goes on through `feed` after shared steps, and bad requests are refused
/// with what is wrong named: a slot that does not exist, a token out of range, a full context
/// (also when a slot's tokens in one call would run past it).
#[test]
fn slots_are_checked() {
    let dir = repo().join("tests/fixtures/arch");
    let m = model::load(&dir.join("llama3.gguf")).unwrap();
    let mut dec = decoder(&m, 2, KernelSet::Auto);
    let err = |r: tide_gpu::Result<Vec<Vec<f32>>>| r.unwrap_err().to_string();
    dec.use_slot(0).unwrap();
    dec.feed(&[1, 2]).unwrap();
    dec.use_slot(1).unwrap();
    dec.feed(&[3]).unwrap();
    assert!(err(dec.step_seqs(&[(2, 1)])).contains("slot 2 does not exist"));
    assert!(err(dec.step_seqs(&[])).contains("no tokens"));
    assert!(dec
        .use_slot(5)
        .unwrap_err()
        .to_string()
        .contains("slot 5 does not exist"));
    let vocab = m.config.vocab as u32;
    assert!(err(dec.step_seqs(&[(0, vocab)])).contains("out of range"));
    // Fill slot 1's context; slot 0 is untouched by it.
    dec.use_slot(1).unwrap();
    dec.feed(&vec![1; 63]).unwrap();
    assert!(err(dec.step_seqs(&[(0, 1), (1, 1)])).contains("context full: slot 1"));
    assert_eq!(dec.slot_pos(0), 2);
    assert_eq!(dec.slot_pos(1), 64);
    // Slot 0 has 62 positions left: 63 of its tokens in one call are refused whole.
    let many: Vec<(usize, u32)> = (0..63).map(|_| (0, 1)).collect();
    let e = err(dec.step_seqs(&many));
    assert!(
        e.contains("context full: slot 0") && e.contains("62 position(s) left"),
        "{e}"
    );
    assert_eq!(dec.slot_pos(0), 2);
}
