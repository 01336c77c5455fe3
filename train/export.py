"""Export a trained TideLM to the runtime's model directory (docs/format.md):

  config.json        Hugging Face LLaMA keys (+ "tide": {...} summary), tie_word_embeddings true
  model.safetensors  backbone (f16, HF names) + TIDE tensors (tide.*) + tide.token_counts
  tokenizer.json     the corpus tokenizer

train.py also keeps a TIDE model's tables in f16 beside it (export_tables: memory-f16.safetensors,
a memory file for `--memory`), so that compression is measured against the tables as trained.

Memory tables are stored as raw rows + per-block gamma, 4-bit group-wise by default (GGUF Q4_1
blocks: per 32 values an f16 scale d, an f16 minimum m and 16 bytes of nibbles, value = d*q + m).
"""
import json
import os
import shutil

import numpy as np
from safetensors.numpy import save_file

QK = 32


def quantize_q4_1(x):
    """x [rows, cols] float32, cols % 32 == 0 -> uint8 [rows, cols/32*20]."""
    rows, cols = x.shape
    g = x.reshape(rows, cols // QK, QK).astype(np.float32)
    lo = g.min(axis=-1)
    hi = g.max(axis=-1)
    d = ((hi - lo) / 15.0).astype(np.float16)
    m = lo.astype(np.float16)
    df = d.astype(np.float32)[..., None]
    inv = np.where(df > 0, 1.0 / np.where(df > 0, df, 1), 0.0)
    q = np.clip(np.rint((g - m.astype(np.float32)[..., None]) * inv), 0, 15).astype(np.uint8)
    packed = q[..., :16] | (q[..., 16:] << 4)
    out = np.concatenate([d[..., None].view(np.uint8).reshape(rows, cols // QK, 2),
                          m[..., None].view(np.uint8).reshape(rows, cols // QK, 2),
                          packed], axis=-1)
    return np.ascontiguousarray(out.reshape(rows, cols // QK * 20))


def dequantize_q4_1(b, cols):
    rows = b.shape[0]
    blk = b.reshape(rows, cols // QK, 20)
    d = blk[..., 0:2].copy().view(np.float16).astype(np.float32)
    m = blk[..., 2:4].copy().view(np.float16).astype(np.float32)
    qs = blk[..., 4:]
    q = np.concatenate([qs & 15, qs >> 4], axis=-1).astype(np.float32)
    return (q * d + m).reshape(rows, cols)


def quantize_q8_0(x):
    rows, cols = x.shape
    g = x.reshape(rows, cols // QK, QK).astype(np.float32)
    d = (np.abs(g).max(axis=-1) / 127.0).astype(np.float16)
    df = d.astype(np.float32)[..., None]
    q = np.clip(np.rint(g / np.where(df > 0, df, 1)), -127, 127).astype(np.int8)
    out = np.concatenate([d[..., None].view(np.uint8).reshape(rows, cols // QK, 2),
                          q.view(np.uint8)], axis=-1)
    return np.ascontiguousarray(out.reshape(rows, cols // QK * 34))


def dequantize_q8_0(b, cols):
    rows = b.shape[0]
    blk = b.reshape(rows, cols // QK, 34)
    d = blk[..., 0:2].copy().view(np.float16).astype(np.float32)
    q = blk[..., 2:].copy().view(np.int8).astype(np.float32)
    return (q * d).reshape(rows, cols)


def memory_tensors(tables, gammas, routers, eps, rows="q4_1", normalized=False):
    """TIDE tensors and metadata. tables [K, V, d], gammas [K, d], routers [L, K+1, d] (numpy)."""
    k, vocab, dim = tables.shape
    t = {}
    for i in range(k):
        e = tables[i].astype(np.float32)
        if normalized:
            e = e / np.sqrt((e * e).mean(-1, keepdims=True) + eps) * gammas[i]
        if rows == "q4_1":
            t[f"tide.memory.{i}.rows"] = quantize_q4_1(e)
        elif rows == "q8_0":
            t[f"tide.memory.{i}.rows"] = quantize_q8_0(e)
        elif rows == "f16":
            t[f"tide.memory.{i}.rows"] = e.astype(np.float16)
        elif rows == "f32":
            t[f"tide.memory.{i}.rows"] = e
        else:
            raise ValueError(rows)
        if not normalized:
            t[f"tide.memory.{i}.gamma"] = gammas[i].astype(np.float32)
    for li, w in enumerate(routers):
        t[f"tide.router.{li}.weight"] = w.astype(np.float32)
    meta = {"tide.k": str(k), "tide.rows": rows, "tide.normalized": str(normalized).lower(),
            "tide.eps": repr(float(eps)), "tide.vocab": str(vocab), "tide.dim": str(dim)}
    return t, meta


def hf_config(cfg):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.ctx,
        "rope_theta": cfg.rope_theta,
        "rms_norm_eps": cfg.eps,
        "tie_word_embeddings": True,
        "bos_token_id": None,
        "eos_token_id": 0,
        "torch_dtype": "float16",
    }


# Engram state exported on its own terms (engram_tensors), not as backbone matrices.
ENGRAM_SEPARATE = ("engram_compress", "tables", "multipliers", "primes", "offsets")


def engram_tensors(model, rows="q4_1"):
    """Engram's tensors and config entry (docs/format.md): per layer l the hash multipliers
    [3] and primes [orders, H] (int64), each head's table engram.{l}.table.{o}.{h} [p, Dh]
    (4-bit Q4_1 rows by default), and the compression table engram.compress [vocab] (int64).
    The projections, norms and conv taps travel with the backbone (model.layers.{l}.engram.*)."""
    cfg = model.cfg
    t = {"engram.compress": model.engram_compress.cpu().numpy().astype(np.int64)}
    for li in cfg.engram_layers:
        eg = model.layers[li].engram
        t[f"model.layers.{li}.engram.multipliers"] = eg.multipliers.cpu().numpy()
        t[f"model.layers.{li}.engram.primes"] = eg.primes.cpu().numpy()
        tab = eg.tables.detach().cpu().float().numpy()
        for o in range(eg.primes.shape[0]):
            for h in range(eg.primes.shape[1]):
                off, p = int(eg.offsets[o, h]), int(eg.primes[o, h])
                e = tab[off:off + p]
                t[f"engram.{li}.table.{o}.{h}"] = (quantize_q4_1(e) if rows == "q4_1"
                                                   else e.astype(np.float32))
    conf = {"layers": list(cfg.engram_layers), "orders": [2, 3], "heads": cfg.engram_heads,
            "head_dim": cfg.engram_head_dim, "kernel": 4, "dilation": 3, "pad": cfg.vocab,
            "rows": rows, "seed": cfg.engram_seed}
    return t, conf


def backbone_tensors(sd, cfg, dtype=np.float16):
    t = {}
    for name, v in sd.items():
        if name.startswith("memory.") or ".router." in name or name in ENGRAM_SEPARATE or \
                name.rsplit(".", 1)[-1] in ENGRAM_SEPARATE:
            continue
        arr = v.detach().cpu().float().numpy()
        # Norm gammas and LIMe's mixing coefficients stay f32.
        keep = arr.ndim == 1 or name.endswith("lime_mix")
        t["model." + name] = arr.astype(np.float32 if keep else dtype)
    return t


def model_memory_tensors(model, rows):
    """memory_tensors of a trained TideLM's memory (tables, gammas, every layer's router)."""
    cfg, sd = model.cfg, model.state_dict()
    return memory_tensors(
        sd["memory.tables"].float().numpy(), sd["memory.gamma"].float().numpy(),
        np.stack([sd[f"layers.{i}.router.weight"].float().numpy() for i in range(cfg.n_layers)]),
        cfg.eps, rows=rows)


def export_tables(model, counts, path, rows="f16"):
    """Write a TIDE model's memory alone (tables at `rows`, gammas, routers, token counts) as a
    memory file (docs/format.md, "In a separate memory file")."""
    t, meta = model_memory_tensors(model, rows)
    if counts is not None:
        t["tide.token_counts"] = np.asarray(counts, dtype=np.int64)
    save_file(t, path, metadata=meta)


def export(model, tokenizer_path, counts, out, rows="q4_1", backbone_dtype=np.float16,
           memory_file=None):
    """Write the model directory `out`. With memory_file, TIDE tensors go to that separate file."""
    cfg = model.cfg
    os.makedirs(out, exist_ok=True)
    sd = model.state_dict()
    tensors = backbone_tensors(sd, cfg, backbone_dtype)
    meta = {"format": "pt"}
    conf = hf_config(cfg)
    if cfg.lime:
        # LIMe: model.layers.{l}.self_attn.lime_mix [R, (l+1) R] for l >= 1 (docs/format.md).
        conf["lime"] = True
    if cfg.engram_layers:
        et, conf["engram"] = engram_tensors(model, rows if rows in ("q4_1", "f32") else "q4_1")
        tensors.update(et)
    if cfg.k > 0:
        mt, mmeta = model_memory_tensors(model, rows)
        conf["tide"] = {"k": cfg.k, "rows": rows, "memory_file": memory_file or "model.safetensors"}
        if memory_file:
            save_file(mt, os.path.join(out, memory_file), metadata=mmeta)
        else:
            tensors.update(mt)
            meta.update(mmeta)
    if counts is not None:
        tensors["tide.token_counts"] = np.asarray(counts, dtype=np.int64)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata=meta)
    json.dump(conf, open(os.path.join(out, "config.json"), "w"), indent=1)
    if tokenizer_path:
        shutil.copy(tokenizer_path, os.path.join(out, "tokenizer.json"))
