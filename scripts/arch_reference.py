#!/usr/bin/env python3
"""Tiny random models of each GGUF architecture tide runs, written by gguf-py, with llama.cpp's
logits for them -> tests/fixtures/arch/.

    python3 scripts/arch_reference.py [--out tests/fixtures/arch]

For each case below it writes <case>.gguf (f32 weights, random but fixed by the seed) and
<case>.json: llama.cpp's logits (llama-cpp-python, f32 KV cache, flash attention off, all
logits kept) at every position of a fixed 16-token sequence fed as one batch, and 8 greedy tokens
after it (the argmax of llama.cpp's logits, one token at a time).

The cases and what each one exercises:
  llama3   `llama` with Llama 3.1's RoPE frequency scaling (a rope_freqs tensor computed by the
           formula of llama.cpp's converter), theta 500000, GQA 4/2, the llama-bpe pre-tokenizer
  mistral  `llama` as Mistral files have it: theta 1e6, one KV head for 4 query heads, untied head
  qwen2    `qwen2`: q/k/v biases, rotate-half (NEOX) RoPE, untied head, the qwen2 pre-tokenizer
  qwen3    `qwen3`: per-head q/k RMSNorm, head_dim 32 != width / heads, NEOX RoPE

The vocabulary is tests/fixtures/tiny_llama/tokenizer.json's (300 byte-level BPE tokens), so
the files load in llama.cpp and in tide alike.

Needs: numpy, gguf (scripts/requirements.txt) and llama-cpp-python
(scripts/requirements-llamacpp.txt).
"""

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llamacpp_reference import open_model  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER = os.path.join(REPO_ROOT, "tests", "fixtures", "tiny_llama", "tokenizer.json")
SEED = 20261130
N_SEQ = 16
N_GREEDY = 8

BASE = dict(dim=64, layers=2, heads=4, kv_heads=2, head_dim=16, ffn=96, theta=10000.0, eps=1e-6, tied=True)
CASES = {
    "llama3": dict(arch="llama", pre="llama-bpe", theta=500000.0, eps=1e-5,
                   llama3_scaling=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_ctx=32)),
    "mistral": dict(arch="llama", pre="default", theta=1e6, kv_heads=1, tied=False),
    "qwen2": dict(arch="qwen2", pre="qwen2", theta=1e6, tied=False, bias=True),
    "qwen3": dict(arch="qwen3", pre="qwen2", theta=1e6, head_dim=32, qk_norm=True),
}


def log(msg):
    print(f"[arch_reference] {msg}", file=sys.stderr, flush=True)


def llama3_factors(head_dim, theta, factor, low_freq_factor, high_freq_factor, original_ctx):
    """Llama 3.1's per-pair frequency divisors, as llama.cpp's converter writes rope_freqs."""
    low_wavelen = original_ctx / low_freq_factor
    high_wavelen = original_ctx / high_freq_factor
    out = []
    for i in range(head_dim // 2):
        freq = theta ** (-2.0 * i / head_dim)
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (original_ctx / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def vocab():
    tj = json.load(open(TOKENIZER, encoding="utf-8"))
    model = tj["model"]
    tokens = [None] * len(model["vocab"])
    for t, i in model["vocab"].items():
        tokens[i] = t
    types = [1] * len(tokens)
    for a in tj.get("added_tokens", []):
        tokens[a["id"]] = a["content"]
        types[a["id"]] = 3  # control
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    assert all(t is not None for t in tokens)
    return tokens, types, merges


def write_gguf(path, name, cfg, rng):
    import gguf

    tokens, types, merges = vocab()
    n_vocab = len(tokens)
    d, hd, nh, nkv, f = cfg["dim"], cfg["head_dim"], cfg["heads"], cfg["kv_heads"], cfg["ffn"]
    arch = cfg["arch"]

    def mat(rows, cols, scale=1.0):
        return (rng.standard_normal((rows, cols)) * scale / math.sqrt(cols)).astype(np.float32)

    def gamma(n):
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"tide-test-{name}")
    w.add_context_length(256)
    w.add_embedding_length(d)
    w.add_block_count(cfg["layers"])
    w.add_feed_forward_length(f)
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(cfg["theta"])
    w.add_layer_norm_rms_eps(cfg["eps"])
    w.add_vocab_size(n_vocab)
    w.add_file_type(0)  # all f32
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(cfg["pre"])
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)

    w.add_tensor("token_embd.weight", (0.3 * rng.standard_normal((n_vocab, d))).astype(np.float32))
    w.add_tensor("output_norm.weight", gamma(d))
    if not cfg["tied"]:
        w.add_tensor("output.weight", mat(n_vocab, d, 2.0))
    if "llama3_scaling" in cfg:
        w.add_tensor("rope_freqs.weight", llama3_factors(hd, cfg["theta"], **cfg["llama3_scaling"]))
    for i in range(cfg["layers"]):
        p = f"blk.{i}"
        w.add_tensor(f"{p}.attn_norm.weight", gamma(d))
        w.add_tensor(f"{p}.attn_q.weight", mat(nh * hd, d))
        w.add_tensor(f"{p}.attn_k.weight", mat(nkv * hd, d))
        w.add_tensor(f"{p}.attn_v.weight", mat(nkv * hd, d))
        if cfg.get("bias"):
            w.add_tensor(f"{p}.attn_q.bias", (0.5 * rng.standard_normal(nh * hd)).astype(np.float32))
            w.add_tensor(f"{p}.attn_k.bias", (0.5 * rng.standard_normal(nkv * hd)).astype(np.float32))
            w.add_tensor(f"{p}.attn_v.bias", (0.5 * rng.standard_normal(nkv * hd)).astype(np.float32))
        if cfg.get("qk_norm"):
            w.add_tensor(f"{p}.attn_q_norm.weight", gamma(hd))
            w.add_tensor(f"{p}.attn_k_norm.weight", gamma(hd))
        w.add_tensor(f"{p}.attn_output.weight", mat(d, nh * hd, 3.0))
        w.add_tensor(f"{p}.ffn_norm.weight", gamma(d))
        w.add_tensor(f"{p}.ffn_gate.weight", mat(f, d))
        w.add_tensor(f"{p}.ffn_up.weight", mat(f, d))
        w.add_tensor(f"{p}.ffn_down.weight", mat(d, f, 3.0))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return n_vocab


def reference(path, n_vocab, rng):
    llm = open_model(path)
    assert llm.n_vocab() == n_vocab
    seq = [int(t) for t in rng.integers(3, n_vocab, N_SEQ)]
    llm.eval(seq)
    logits = np.array(llm.scores[:N_SEQ], dtype=np.float32)
    assert logits.shape == (N_SEQ, n_vocab) and np.all(np.isfinite(logits))
    greedy = []
    row = logits[-1]
    for _ in range(N_GREEDY):
        nxt = int(np.argmax(row))
        greedy.append(nxt)
        llm.eval([nxt])
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    spread = float(np.mean(np.std(logits, axis=1)))
    return seq, logits, greedy, spread


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures", "arch"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    import llama_cpp

    for k, (name, case) in enumerate(CASES.items()):
        cfg = {**BASE, **case}
        rng = np.random.default_rng(SEED + k)
        path = os.path.join(args.out, f"{name}.gguf")
        tmp = path + ".tmp"
        n_vocab = write_gguf(tmp, name, cfg, rng)
        os.replace(tmp, path)
        seq, logits, greedy, spread = reference(path, n_vocab, rng)
        log(f"{name}: {os.path.getsize(path)} bytes, logit std {spread:.2f}, greedy {greedy}")
        out = {
            "generator": "scripts/arch_reference.py",
            "llama_cpp_python": llama_cpp.__version__,
            "case": name,
            "arch": cfg["arch"],
            "tokens": seq,
            "logits": [[round(float(x), 5) for x in row] for row in logits],
            "greedy": greedy,
        }
        with open(os.path.join(args.out, f"{name}.json"), "w") as fh:
            json.dump(out, fh, separators=(",", ":"))
            fh.write("\n")


if __name__ == "__main__":
    main()
