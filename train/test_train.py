"""Tests of the training pipeline (CPU, about a minute): quantisers against their formulas, the
export -> load round trip, LIMe's mixing (the identity is the backbone; export round trip),
Engram (hash formula, causality, compression table, export round trip),
and a short training run, plain and under torchrun (DDP, 2 ranks),
that must lower the loss and export a model directory the runtime's loader layout expects
(with a TIDE model's tables as trained kept beside it in f16); memory on a frozen backbone
(train/smollm2_memory.py) resumed after interruptions to the same bits, its refusals, and the
full fine-tuning control.

  python3 train/test_train.py
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from export import (dequantize_q4_1, dequantize_q8_0, export, quantize_q4_1,  # noqa: E402
                    quantize_q8_0)
from load import load  # noqa: E402
from model import ModelConfig, TideLM  # noqa: E402


def test_quantisers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 96)).astype(np.float32) * 3
    q = quantize_q4_1(x)
    assert q.shape == (7, 96 // 32 * 20) and q.dtype == np.uint8
    y = dequantize_q4_1(q, 96)
    g = x.reshape(7, 3, 32)
    step = (g.max(-1) - g.min(-1)) / 15  # one quantisation step per group
    err = np.abs(y - x).reshape(7, 3, 32).max(-1)
    assert np.all(err <= step * 0.5 + 1e-2 * step + 1e-3), (err / step).max()
    q8 = quantize_q8_0(x)
    assert q8.shape == (7, 96 // 32 * 34)
    y8 = dequantize_q8_0(q8, 96)
    assert np.abs(y8 - x).max() <= np.abs(x).max() / 127 * 0.51 + 1e-3
    # A constant group is exact (d = 0).
    c = np.full((1, 32), 0.25, np.float32)
    assert np.array_equal(dequantize_q4_1(quantize_q4_1(c), 32), c)


def test_export_round_trip():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab=64, dim=32, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=64, ctx=16, k=2)
    m = TideLM(cfg)
    with torch.no_grad():
        for blk in m.layers:
            blk.router.weight.normal_(0, 0.5)
    ids = torch.tensor([[1, 5, 9, 63, 0, 7]])
    want = m(ids)
    with tempfile.TemporaryDirectory() as d:
        export(m, None, np.ones(64, np.int64), d, rows="f32", backbone_dtype=np.float32)
        got = load(d)[0](ids)
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
        export(m, None, None, d, rows="q4_1", backbone_dtype=np.float32)
        got4 = load(d)[0](ids)
        diff = (got4 - want).abs().max().item()
        assert 0 < diff < 0.5, diff  # 4-bit rows move logits a little, not a lot


def test_lime():
    """LIMe v2: starting from the identity mix it is the backbone exactly; a trained (here
    random) mix changes the logits yet stays causal and per token, and survives export."""
    torch.manual_seed(1)
    base = ModelConfig(vocab=64, dim=32, n_layers=3, n_heads=4, n_kv_heads=2, ffn_dim=64, ctx=16)
    lime = ModelConfig(**{**base.to_dict(), "lime": True})
    m0, m1 = TideLM(base), TideLM(lime)
    missing = m1.load_state_dict(m0.state_dict(), strict=False)
    # Only the mixes are new: S^1 [2, 4] and S^2 [2, 6]; layer 0 has none.
    assert sorted(missing.missing_keys) == ["layers.1.self_attn.lime_mix",
                                            "layers.2.self_attn.lime_mix"], missing
    assert m1.layers[2].self_attn.lime_mix.shape == (2, 6)
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        assert torch.equal(m1(ids), m0(ids))
        for blk in m1.layers[1:]:
            blk.self_attn.lime_mix.normal_(0, 0.7)
        want = m1(ids)
        assert (want - m0(ids)).abs().max() > 1e-2
        # Causal: a prefix's logits do not depend on what follows it.
        assert torch.allclose(m1(ids[:, :5]), want[:, :5], atol=1e-5)
    with tempfile.TemporaryDirectory() as d:
        export(m1, None, None, d, backbone_dtype=np.float32)
        conf = json.load(open(os.path.join(d, "config.json")))
        assert conf["lime"] is True
        got = load(d)[0](ids)
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_engram():
    """Engram: the hash against the formula in Python integers, causality (a prefix's logits do
    not depend on what follows; the convolution and n-grams look back only), the compression
    table's normalisation, and the export round trip (f32 rows exact, 4-bit rows close)."""
    import engram
    torch.manual_seed(2)
    cfg = ModelConfig(vocab=64, dim=32, n_layers=3, n_heads=4, n_kv_heads=2, ffn_dim=64, ctx=32,
                      engram_layers=(0, 2), engram_heads=2, engram_head_dim=32, engram_rows=17)
    m = TideLM(cfg)
    m.set_compression(np.arange(64) % 40)
    with torch.no_grad():
        # An untrained branch is nearly silent (small tables, zero taps): make it speak.
        for li in cfg.engram_layers:
            m.layers[li].engram.tables.normal_(0, 1.0)
            m.layers[li].engram.conv.normal_(0, 0.5)
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4]])
    eg = m.layers[2].engram
    got = eg.indices(m.engram_compress[ids])[0]
    x = [int(v) % 40 for v in ids[0]]
    r = [int(v) for v in eg.multipliers]
    primes = eg.primes.tolist()
    # Every table of the model has its own prime modulus.
    all_p = [p for li in cfg.engram_layers for row in m.layers[li].engram.primes.tolist()
             for p in row]
    assert len(set(all_p)) == len(all_p) and all(engram.is_prime(p) for p in all_p)
    for t in range(len(x)):
        prev = lambda j: x[t - j] if t >= j else cfg.vocab  # noqa: E731
        s2 = (prev(0) * r[0]) ^ (prev(1) * r[1])
        s3 = s2 ^ (prev(2) * r[2])
        want = [s2 % p + int(eg.offsets[0, k]) for k, p in enumerate(primes[0])] + \
               [s3 % p + int(eg.offsets[1, k]) for k, p in enumerate(primes[1])]
        assert got[t].tolist() == want, (t, got[t].tolist(), want)
    with torch.no_grad():
        want = m(ids)
        assert torch.allclose(m(ids[:, :11]), want[:, :11], atol=1e-5)
        base = TideLM(ModelConfig(**{**cfg.to_dict(), "engram_layers": ()}))
        base.load_state_dict({k: v for k, v in m.state_dict().items()
                              if "engram" not in k}, strict=True)
        assert (base(ids) - want).abs().max() > 1e-3  # Engram changes the logits
    assert engram.normalise(" Élan\t") == "elan" and engram.normalise("\n\n") == " "
    assert engram.normalise("ﬁne") == "fine"  # NFKC folds the ligature
    with tempfile.TemporaryDirectory() as d:
        export(m, None, None, d, rows="f32", backbone_dtype=np.float32)
        conf = json.load(open(os.path.join(d, "config.json")))
        assert conf["engram"]["layers"] == [0, 2] and conf["engram"]["pad"] == 64
        got = load(d)[0](ids)
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
        export(m, None, None, d, backbone_dtype=np.float32)
        diff = (load(d)[0](ids) - want).abs().max().item()
        assert 0 < diff < 0.5, diff


def test_spread_windows():
    """evaluate.spread picks whole windows evenly over a text; evaluating given starts is the
    same as evaluating those windows as texts of their own."""
    import evaluate
    assert evaluate.spread(1000, 300, 100) == [0, 300, 600]
    assert evaluate.spread(1001, 10**6, 100) == list(range(0, 1000, 100))
    torch.manual_seed(0)
    cfg = ModelConfig(vocab=64, dim=32, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=64, ctx=16, k=2)
    m = TideLM(cfg)
    ids = np.random.default_rng(0).integers(0, 64, 200)
    counts = np.bincount(ids, minlength=64)
    starts = evaluate.spread(ids.size, 48, 16)
    assert starts == [0, 64, 128], starts
    got = evaluate.evaluate(m, ids, counts, 16, starts=starts)
    want = [evaluate.evaluate(m, ids[s:s + 17], counts, 16) for s in starts]
    assert got["tokens"] == 48
    assert abs(got["ce"] - np.mean([w["ce"] for w in want])) < 1e-6


def make_corpus(d):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    text = ("the cat sat on the mat. the dog sat on the log. " * 40).split(". ")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(text, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(os.path.join(d, "tokenizer.json"))
    ids = np.asarray([i for s in text for i in tok.encode(s + ". ").ids] * 20, dtype=np.uint16)
    ids.tofile(os.path.join(d, "train.bin"))
    ids[:2000].tofile(os.path.join(d, "heldout.bin"))
    np.save(os.path.join(d, "counts.npy"), np.bincount(ids, minlength=tok.get_vocab_size()))
    return tok.get_vocab_size()


def run_training(d, vocab, k, launcher, **extra):
    conf = {"model": {"vocab": vocab, "dim": 32, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1,
                      "ffn_dim": 64, "ctx": 32, "rope_theta": 10000.0, "eps": 1e-5, "k": k,
                      **extra},
            "train": {"tokens": 16 * 32 * 40, "batch": 8, "seq": 32, "lr": 0.01, "min_lr_frac": 0.1,
                      "warmup_steps": 5, "weight_decay": 0.1, "betas": [0.9, 0.95], "z_loss": 1e-6,
                      "grad_clip": 1.0, "seed": 1, "eval_every": 0}}
    tag = f"k{k}" + "".join(f"-{key}" for key in extra)
    cfg_path = os.path.join(d, f"{tag}.json")
    json.dump(conf, open(cfg_path, "w"))
    out = os.path.join(d, f"out-{tag}-{launcher[0]}")
    cmd = launcher + [os.path.join(HERE, "train.py"), "--config", cfg_path, "--out", out,
                      "--corpus", d, "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    metrics = json.load(open(os.path.join(out, "train_metrics.json")))
    log = metrics["log"]
    assert log[-1]["loss"] < log[0]["loss"] - 1.0, log
    for f in ["config.json", "model.safetensors", "tokenizer.json"]:
        assert os.path.exists(os.path.join(out, f)), f
    model, counts = load(out)
    assert model.cfg.k == k and counts is not None
    if k:
        assert metrics["null_by_decile"] is not None
        # The tables as trained, kept beside the model: f16 rows that the exported 4-bit rows
        # approximate within Q4_1's error, and the same routers and counts.
        from safetensors.numpy import load_file
        kept = load_file(os.path.join(out, "memory-f16.safetensors"))
        full = load_file(os.path.join(out, "model.safetensors"))
        for i in range(k):
            e = kept[f"tide.memory.{i}.rows"]
            assert e.dtype == np.float16, e.dtype
            e = e.astype(np.float32)
            q = dequantize_q4_1(full[f"tide.memory.{i}.rows"], e.shape[1])
            rel = np.linalg.norm(q - e) / np.linalg.norm(e)
            assert 0 < rel < 0.12, rel
        for name in ("tide.router.0.weight", "tide.memory.0.gamma", "tide.token_counts"):
            np.testing.assert_array_equal(kept[name], full[name])
    for key, v in extra.items():
        got = getattr(model.cfg, key)
        assert (list(got) if isinstance(got, tuple) else got) == v, (key, got)
    return metrics


def test_training():
    with tempfile.TemporaryDirectory() as d:
        vocab = make_corpus(d)
        run_training(d, vocab, 0, [sys.executable])
        run_training(d, vocab, 2, [sys.executable])
        # The variants: Engram (its compression table from the corpus tokenizer) and LIMe.
        m = run_training(d, vocab, 0, [sys.executable], engram_layers=[1], engram_heads=2,
                         engram_rows=101)
        assert m["memory_parameters"] > 0
        run_training(d, vocab, 0, [sys.executable], lime=True)
        # The same script under torchrun: 2 CPU ranks over gloo.
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                    "--master_port=29533"]
        m = run_training(d, vocab, 2, torchrun)
        assert m["train_tokens"] == 16 * 32 * 40


def tiny_backbone(d, seed=3):
    """A K=0 HF folder (config.json, model.safetensors, tokenizer.json) and a corpus folder
    (train.txt, heldout.txt, ood.txt) for train/smollm2_memory.py, in d."""
    make_corpus(d)
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab=300, dim=32, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=64, ctx=64)
    bb = os.path.join(d, f"backbone-{seed}")
    export(TideLM(cfg), os.path.join(d, "tokenizer.json"), None, bb, backbone_dtype=np.float32)
    text = "the cat sat on the mat. the dog sat on the log. " * 200
    for name, t in (("train.txt", text), ("heldout.txt", text[:3000]),
                    ("ood.txt", "a fox ran by the old barn. " * 40)):
        open(os.path.join(d, name), "w").write(t)
    return bb


def run_memory(d, bb, out, *extra, expect=0):
    cmd = [sys.executable, os.path.join(HERE, "smollm2_memory.py"), "--backbone", bb,
           "--corpus", d, "--out", os.path.join(d, out), "--seq", "16", "--batch", "4",
           "--warmup", "3", "--lr", "0.01", "--check-every", "640", "--check-tokens", "256",
           "--ablate-tokens", "256", "--rows", "f32", "--threads", "1", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == expect, (cmd, r.returncode, r.stdout + r.stderr)
    return r.stdout + r.stderr


def test_memory_resume():
    """train/smollm2_memory.py: a run interrupted twice (after a number of steps, and by SIGTERM
    mid-training) and resumed ends bit for bit where an uninterrupted run ends; a checkpoint of
    another K, backbone or schedule is refused by name, and so is a new run over a checkpoint."""
    import signal
    from safetensors.numpy import load_file
    with tempfile.TemporaryDirectory() as d:
        bb = tiny_backbone(d)
        steps = ["--tokens", str(300 * 64), "--k", "2"]
        run_memory(d, bb, "whole", *steps)
        want = load_file(os.path.join(d, "whole", "memory.safetensors"))
        want_m = json.load(open(os.path.join(d, "whole", "metrics.json")))
        assert want_m["trained"]["ce"] < want_m["baseline"]["ce"] - 0.5, want_m["trained"]
        assert [c["tokens"] for c in want_m["checks"]][:3] == [0, 640, 1280]
        assert want_m["checks"][-1]["tokens"] == 300 * 64 and "ood_ce" in want_m["checks"][0]
        assert len(want_m["ablate_ppl"]) == 2 and want_m["trained_ood"]["tokens"] > 0
        assert want_m["baseline_check"]["ce"] > want_m["checks"][-1]["ce"]
        kept = load_file(os.path.join(d, "whole", "memory-f16.safetensors"))
        np.testing.assert_allclose(kept["tide.memory.0.rows"].astype(np.float32),
                                   want["tide.memory.0.rows"], atol=1e-3, rtol=1e-3)
        # Ids never seen in training keep zero rows: the memory adds nothing for them.
        unseen = want["tide.token_counts"] == 0
        assert unseen.any() and not want["tide.memory.1.rows"][unseen].any()
        assert want["tide.memory.1.rows"][~unseen].any()

        out = run_memory(d, bb, "parts", *steps, "--stop-after-steps", "70", expect=75)
        assert "stopped at step 70 of 300" in out, out
        # Resume, then SIGTERM once training is under way again.
        cmd = [sys.executable, os.path.join(HERE, "smollm2_memory.py"), "--backbone", bb,
               "--corpus", d, "--out", os.path.join(d, "parts"), "--seq", "16", "--batch", "4",
               "--warmup", "3", "--lr", "0.01", "--check-every", "640", "--check-tokens", "256",
               "--ablate-tokens", "256", "--rows", "f32", "--threads", "1", *steps, "--resume"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = []
        for line in p.stdout:
            seen.append(line)
            if line.startswith("step 101/"):
                p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=600) == 75, "".join(seen)
        stopped = [ln for ln in seen if ln.startswith("stopped at step")]
        assert stopped and "(SIGTERM)" in stopped[0], "".join(seen)
        assert int(stopped[0].split()[3]) < 300, stopped
        run_memory(d, bb, "parts", *steps, "--resume")
        got = load_file(os.path.join(d, "parts", "memory.safetensors"))
        assert sorted(got) == sorted(want)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        got_m = json.load(open(os.path.join(d, "parts", "metrics.json")))
        for key in ("checks", "log", "trained", "trained_ood", "exported", "ablate_ppl"):
            assert got_m[key] == want_m[key], key
        # --export-only writes a checkpoint's memory without training or evaluating.
        ck = os.path.join(d, "parts", "checkpoint.pt")
        # (its schedule comes from the checkpoint: no --k or --tokens needed)
        out = run_memory(d, bb, "snap", "--checkpoint", ck, "--export-only")
        assert "wrote the memory at step 300" in out, out
        prog = json.load(open(os.path.join(d, "snap", "progress.json")))
        assert prog["checks"] == want_m["checks"][:len(prog["checks"])] and prog["step"] == 300
        snap = load_file(os.path.join(d, "snap", "memory.safetensors"))
        for name in want:
            np.testing.assert_array_equal(snap[name], want[name], err_msg=name)

        # Refusals, each naming its reason; the checkpoint is left as it was.
        before = os.path.getmtime(ck)
        err = run_memory(d, bb, "parts", "--tokens", str(300 * 64), "--k", "3", "--resume",
                         expect=1)
        assert "checkpoint.pt: the checkpoint is of a run with K 2, this one asks 3" in err, err
        err = run_memory(d, bb, "parts", "--tokens", "999", "--k", "2", "--resume", expect=1)
        assert "--tokens 19200, this one asks 999" in err, err
        other = tiny_backbone(d, seed=4)
        err = run_memory(d, other, "parts", *steps, "--resume", expect=1)
        assert "another backbone" in err and "backbone-3" in err, err
        err = run_memory(d, bb, "parts", *steps, expect=1)
        assert "a checkpoint is already there; pass --resume" in err, err
        err = run_memory(d, os.path.join(d, "nowhere"), "x", *steps, expect=1)
        assert "nowhere: config.json is missing" in err, err
        assert os.path.getmtime(ck) == before


def test_finetune_control():
    """--mode finetune trains every backbone weight (K = 0) in the same resumable loop and reports
    in-domain and out-of-domain CE before and after."""
    with tempfile.TemporaryDirectory() as d:
        bb = tiny_backbone(d)
        run_memory(d, bb, "ft", "--mode", "finetune", "--tokens", str(60 * 64), "--lr", "0.01")
        m = json.load(open(os.path.join(d, "ft", "metrics.json")))
        assert m["mode"] == "finetune" and m["k"] == 0
        assert m["trained_parameters"] == sum(p.numel() for p in load(bb)[0].parameters())
        assert m["trained"]["ce"] < m["baseline"]["ce"] - 0.5, (m["trained"], m["baseline"])
        assert m["trained_ood"]["ce"] != m["baseline_ood"]["ce"]
        assert not os.path.exists(os.path.join(d, "ft", "memory.safetensors"))


if __name__ == "__main__":
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            fn()
            print("ok", name, flush=True)
