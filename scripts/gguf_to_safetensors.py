#!/usr/bin/env python3
"""Convert a llama-architecture GGUF (e.g. SmolLM2) into a Hugging Face style directory.

    python3 scripts/gguf_to_safetensors.py IN.gguf OUT_DIR [--dtype f32|f16|bf16]
                                          [--check-tokenizer tests/fixtures/llamacpp_smollm2.json]

Writes OUT_DIR/config.json, OUT_DIR/model.safetensors, OUT_DIR/tokenizer.json and
OUT_DIR/tokenizer_config.json.

- Every tensor is dequantised with gguf.quants.dequantize (so quantised weights become the
  exact values llama.cpp would see) and stored as --dtype (default f32).
- GGUF stores attn_q / attn_k with llama.cpp's per-head row permutation (RoPE rotates adjacent
  element pairs (2i, 2i+1)); Hugging Face uses "rotate half" (pairs (i, i + Dh/2)). The inverse
  permutation is applied per head: HF row i <- GGUF row 2i, HF row i + Dh/2 <- GGUF row 2i + 1.
  The script verifies this numerically on layer 0 (attention scores with adjacent-pair RoPE on the
  GGUF weights == scores with rotate-half RoPE on the converted weights).
- Names: token_embd -> model.embed_tokens, blk.N.attn_norm -> input_layernorm, ffn_norm ->
  post_attention_layernorm, attn_{q,k,v,output} -> self_attn.{q,k,v,o}_proj, ffn_{gate,up,down} ->
  mlp.{gate,up,down}_proj, output_norm -> model.norm, output -> lm_head. With no output.weight the
  embeddings are tied (tie_word_embeddings true, no lm_head written).
- tokenizer.json is rebuilt from tokenizer.ggml.tokens / merges (gpt2-style byte-level BPE, no byte
  fallback; pre-tokenizer Digits(individual) + ByteLevel(no prefix space, regex); ByteLevel decoder;
  control tokens (token_type 3) added as special tokens). Only tokenizer.ggml.pre in
  {"smollm"} is known to match llama.cpp exactly; other values get a warning.

Needs: numpy, gguf, tokenizers.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_io import write_safetensors  # noqa: E402


def log(msg):
    print(f"[gguf_to_safetensors] {msg}", file=sys.stderr, flush=True)


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


# ----------------------------------------------------------------------------------------
# Q/K layout


def unpermute_rows(w, n_heads):
    """GGUF (adjacent-pair) row order -> HF (rotate-half) row order, per head.

    w: [n_heads * Dh, in]. Within a head, GGUF row 2i is HF row i and GGUF row 2i+1 is
    HF row i + Dh/2."""
    rows = w.shape[0]
    assert rows % n_heads == 0
    dh = rows // n_heads
    assert dh % 2 == 0
    heads = w.reshape(n_heads, dh, *w.shape[1:])
    out = np.concatenate([heads[:, 0::2], heads[:, 1::2]], axis=1)
    return out.reshape(w.shape)


def rope_adjacent(x, pos, theta):
    """x: [n_heads, Dh]; rotates pairs (2i, 2i+1) by pos * theta^(-2i/Dh)."""
    dh = x.shape[-1]
    freq = theta ** (-np.arange(0, dh, 2, dtype=np.float64) / dh)
    c, s = np.cos(pos * freq), np.sin(pos * freq)
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def rope_rotate_half(x, pos, theta):
    """x: [n_heads, Dh]; rotates pairs (i, i + Dh/2) by pos * theta^(-2i/Dh)."""
    dh = x.shape[-1]
    half = dh // 2
    freq = theta ** (-np.arange(0, dh, 2, dtype=np.float64) / dh)
    c, s = np.cos(pos * freq), np.sin(pos * freq)
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)


def scores(wq, wk, x1, x2, p1, p2, n_head, n_kv, theta, rope):
    """Attention scores q(x1 at p1) . k(x2 at p2) for every query head (GQA mapping)."""
    q = (wq.astype(np.float64) @ x1).reshape(n_head, -1)
    k = (wk.astype(np.float64) @ x2).reshape(n_kv, -1)
    q, k = rope(q, p1, theta), rope(k, p2, theta)
    rep = n_head // n_kv
    return np.array([q[h] @ k[h // rep] for h in range(n_head)])


def verify_unpermute(wq_g, wk_g, wq_h, wk_h, n_head, n_kv, theta):
    rng = np.random.default_rng(0)
    d_in = wq_g.shape[1]
    worst, worst_wrong = 0.0, 0.0
    for p1, p2 in [(0, 0), (5, 3), (17, 2), (300, 123), (1000, 999)]:
        x1, x2 = rng.normal(size=d_in), rng.normal(size=d_in)
        ref = scores(wq_g, wk_g, x1, x2, p1, p2, n_head, n_kv, theta, rope_adjacent)
        got = scores(wq_h, wk_h, x1, x2, p1, p2, n_head, n_kv, theta, rope_rotate_half)
        wrong = scores(wq_g, wk_g, x1, x2, p1, p2, n_head, n_kv, theta, rope_rotate_half)
        scale = max(1.0, np.max(np.abs(ref)))
        worst = max(worst, np.max(np.abs(ref - got)) / scale)
        if p1 != p2:
            worst_wrong = max(worst_wrong, np.max(np.abs(ref - wrong)) / scale)
    # elementwise: rotate-half on HF q == un-permuted adjacent-pair rope on GGUF q
    x = rng.normal(size=d_in)
    qg = rope_adjacent((wq_g.astype(np.float64) @ x).reshape(n_head, -1), 7, theta)
    qh = rope_rotate_half((wq_h.astype(np.float64) @ x).reshape(n_head, -1), 7, theta)
    elem = np.max(np.abs(unpermute_rows(qg.reshape(-1, 1), n_head).reshape(n_head, -1) - qh))
    log(f"Q/K un-permutation check: rel score diff {worst:.2e} (without it: {worst_wrong:.2e}), "
        f"elementwise {elem:.2e}")
    assert worst < 1e-9 and elem < 1e-9, "Q/K un-permutation does not reproduce llama.cpp RoPE"
    assert worst_wrong > 1e-3, "check has no power: permuted and un-permuted weights agree"


# ----------------------------------------------------------------------------------------
# tensors


LAYER_MAP = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
TOP_MAP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def hf_name(gguf_name):
    base, _, suffix = gguf_name.rpartition(".")
    if suffix not in ("weight", "bias"):
        raise ValueError(f"unexpected tensor name {gguf_name}")
    parts = base.split(".")
    if parts[0] == "blk" and len(parts) == 3 and parts[2] in LAYER_MAP:
        return f"model.layers.{int(parts[1])}.{LAYER_MAP[parts[2]]}.{suffix}"
    if base in TOP_MAP:
        return f"{TOP_MAP[base]}.{suffix}"
    raise ValueError(f"no Hugging Face name for GGUF tensor {gguf_name}")


def dequant(t):
    from gguf.quants import dequantize

    arr = dequantize(t.data, t.tensor_type)
    # numpy order is slowest-first, i.e. the reverse of GGUF's ne list: [out, in] for matrices
    shape = tuple(int(n) for n in reversed(t.shape.tolist()))
    return np.ascontiguousarray(arr.reshape(shape), dtype=np.float32)


# ----------------------------------------------------------------------------------------
# tokenizer


def build_tokenizer(reader):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    kind = field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise SystemExit(f"tokenizer.ggml.model = {kind!r}: only gpt2-style byte-level BPE is supported")
    pre = field(reader, "tokenizer.ggml.pre")
    if pre != "smollm":
        log(f"warning: tokenizer.ggml.pre = {pre!r}; the pre-tokenizer written here is the 'smollm' "
            f"one and may not match llama.cpp for this model")
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = field(reader, "tokenizer.ggml.merges")
    vocab = {}
    for i, tok in enumerate(tokens):
        if tok in vocab:
            log(f"warning: duplicate token {tok!r} at ids {vocab[tok]} and {i}; keeping the first")
            continue
        vocab[tok] = i
    pairs = []
    for m in merges:
        a, sep, b = m.partition(" ")
        assert sep and " " not in b, f"bad merge {m!r}"
        pairs.append((a, b))
    model = models.BPE(vocab=vocab, merges=pairs, byte_fallback=False, fuse_unk=False)
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    # control tokens (3) and user-defined tokens (4) are matched whole in raw text by llama.cpp
    special = [AddedToken(tokens[i], special=True, normalized=False) for i, ty in enumerate(types) if ty == 3]
    user = [AddedToken(tokens[i], special=False, normalized=False) for i, ty in enumerate(types) if ty == 4]
    if special:
        tok.add_special_tokens(special)
    if user:
        tok.add_tokens(user)
    for t in special + user:
        assert tok.token_to_id(t.content) == vocab[t.content]
    log(f"tokenizer: {len(tokens)} tokens, {len(pairs)} merges, {len(special)} special, {len(user)} user-defined")
    return tok


def check_tokenizer(tok, fixture_path):
    with open(fixture_path) as f:
        fx = json.load(f)
    bad = 0
    cases = [(c["text"], c["ids"]) for c in fx["tokenizer"]]
    bos = fx["bos_id"] if fx.get("add_bos") else None
    for p in fx["prompts"]:
        ids = p["prompt_ids"]
        if bos is not None:
            assert ids[0] == bos
            ids = ids[1:]
        cases.append((p["text"], ids))
    for text, want in cases:
        got = tok.encode(text, add_special_tokens=False).ids
        if got != want:
            bad += 1
            log(f"tokenizer MISMATCH on {text!r}: llama.cpp {want} vs ours {got}")
        # decoding must give the text back (byte-level BPE is lossless)
        back = tok.decode(got, skip_special_tokens=False)
        if back != text:
            log(f"note: decode round trip differs for {text!r}: {back!r}")
    log(f"tokenizer check vs {fixture_path}: {len(cases) - bad}/{len(cases)} equal")
    return bad


# ----------------------------------------------------------------------------------------


def clean_float(x):
    # GGUF stores f32; print it as the shortest decimal that round-trips through f32 (1e-05, not 9.99e-06)
    return float(str(np.float32(x)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf_path")
    ap.add_argument("out_dir")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    ap.add_argument("--check-tokenizer", metavar="FIXTURE_JSON",
                    help="compare tokenizer.json against llama.cpp ids in this fixture (exit 1 on mismatch)")
    args = ap.parse_args()

    import gguf

    log(f"reading {args.gguf_path}")
    reader = gguf.GGUFReader(args.gguf_path)
    arch = field(reader, "general.architecture")
    if arch != "llama":
        raise SystemExit(f"general.architecture = {arch!r}: only llama is supported")

    n_layer = int(field(reader, "llama.block_count"))
    d = int(field(reader, "llama.embedding_length"))
    n_head = int(field(reader, "llama.attention.head_count"))
    n_kv = int(field(reader, "llama.attention.head_count_kv", n_head))
    ff = int(field(reader, "llama.feed_forward_length"))
    eps = clean_float(field(reader, "llama.attention.layer_norm_rms_epsilon"))
    theta = clean_float(field(reader, "llama.rope.freq_base", 10000.0))
    ctx = int(field(reader, "llama.context_length"))
    head_dim = int(field(reader, "llama.attention.key_length", d // n_head))
    rope_dims = int(field(reader, "llama.rope.dimension_count", head_dim))
    if rope_dims != head_dim:
        raise SystemExit(f"partial RoPE (rope.dimension_count {rope_dims} != head_dim {head_dim}) not supported")
    if field(reader, "llama.rope.scaling.type") not in (None, "none"):
        log("warning: rope scaling metadata present but not converted")
    tokens = field(reader, "tokenizer.ggml.tokens")
    vocab_size = len(tokens)

    tensors = {}
    q0 = k0 = None
    names = [t.name for t in reader.tensors]
    tied = "output.weight" not in names
    for t in reader.tensors:
        if t.name.endswith("rope_freqs.weight"):
            raise SystemExit("rope_freqs tensor (llama3 rope scaling) is not supported")
        arr = dequant(t)
        name = hf_name(t.name)
        if name.endswith("self_attn.q_proj.weight"):
            raw_q = arr
            arr = unpermute_rows(arr, n_head)
        elif name.endswith("self_attn.k_proj.weight"):
            raw_k = arr
            arr = unpermute_rows(arr, n_kv)
        tensors[name] = arr
        log(f"{t.name:28s} {t.tensor_type.name:5s} -> {name:45s} {list(arr.shape)}")
        if t.name == "blk.0.attn_q.weight":
            q0 = (raw_q, arr)
        elif t.name == "blk.0.attn_k.weight":
            k0 = (raw_k, arr)
    assert q0 is not None and k0 is not None, "blk.0.attn_q / attn_k missing"
    verify_unpermute(q0[0], k0[0], q0[1], k0[1], n_head, n_kv, theta)

    # shape checks against the config
    assert tensors["model.embed_tokens.weight"].shape == (vocab_size, d)
    for i in range(n_layer):
        p = f"model.layers.{i}."
        assert tensors[p + "self_attn.q_proj.weight"].shape == (n_head * head_dim, d)
        assert tensors[p + "self_attn.k_proj.weight"].shape == (n_kv * head_dim, d)
        assert tensors[p + "self_attn.v_proj.weight"].shape == (n_kv * head_dim, d)
        assert tensors[p + "self_attn.o_proj.weight"].shape == (d, n_head * head_dim)
        assert tensors[p + "mlp.gate_proj.weight"].shape == (ff, d)
        assert tensors[p + "mlp.up_proj.weight"].shape == (ff, d)
        assert tensors[p + "mlp.down_proj.weight"].shape == (d, ff)

    os.makedirs(args.out_dir, exist_ok=True)
    st_path = os.path.join(args.out_dir, "model.safetensors")
    log(f"writing {st_path} as {args.dtype}")
    write_safetensors(st_path, tensors, dtype=args.dtype, metadata={"format": "pt"})

    bos = field(reader, "tokenizer.ggml.bos_token_id")
    eos = field(reader, "tokenizer.ggml.eos_token_id")
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": d,
        "intermediate_size": ff,
        "num_hidden_layers": n_layer,
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": head_dim,
        "vocab_size": vocab_size,
        "rms_norm_eps": eps,
        "rope_theta": theta,
        "rope_scaling": None,
        "max_position_embeddings": ctx,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": tied,
        "torch_dtype": {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[args.dtype],
        "bos_token_id": None if bos is None else int(bos),
        "eos_token_id": None if eos is None else int(eos),
    }
    pad = field(reader, "tokenizer.ggml.padding_token_id")
    if pad is not None:
        config["pad_token_id"] = int(pad)
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")

    tok = build_tokenizer(reader)
    tok.save(os.path.join(args.out_dir, "tokenizer.json"))
    tok_cfg = {
        "add_bos_token": bool(field(reader, "tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(field(reader, "tokenizer.ggml.add_eos_token", False)),
        "bos_token": None if bos is None else tokens[int(bos)],
        "eos_token": None if eos is None else tokens[int(eos)],
        "pad_token": None if pad is None else tokens[int(pad)],
        "model_max_length": ctx,
        "tokenizer_class": "GPT2Tokenizer",
    }
    tmpl = field(reader, "tokenizer.chat_template")
    if tmpl is not None:
        tok_cfg["chat_template"] = tmpl
    with open(os.path.join(args.out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(tok_cfg, f, indent=2, ensure_ascii=False)
        f.write("\n")
    log(f"done: {args.out_dir} ({len(tensors)} tensors, tied={tied})")

    if args.check_tokenizer:
        if check_tokenizer(tok, args.check_tokenizer):
            sys.exit(1)


if __name__ == "__main__":
    main()
