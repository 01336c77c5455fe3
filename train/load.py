"""Load a model directory written by export.py (or any file in docs/format.md's layout) back into
a TideLM, decoding the stored memory rows with numpy. Used for golden fixtures: the reference
then computes from exactly the values the runtime reads."""
import json
import os

import numpy as np
import torch
from safetensors import safe_open

from export import dequantize_q4_1, dequantize_q8_0
from model import ModelConfig, TideLM


def read(path):
    with safe_open(path, "np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, (f.metadata() or {})


def load(model_dir, memory_file=None):
    hf = json.load(open(os.path.join(model_dir, "config.json")))
    tensors, meta = read(os.path.join(model_dir, "model.safetensors"))
    mem_path = memory_file or os.path.join(model_dir, "memory.safetensors")
    if os.path.exists(mem_path):
        t2, m2 = read(mem_path)
        tensors.update(t2)
        meta.update(m2)
    k = int(meta.get("tide.k", 0))
    cfg = ModelConfig(vocab=hf["vocab_size"], dim=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
                      n_heads=hf["num_attention_heads"], n_kv_heads=hf["num_key_value_heads"],
                      ffn_dim=hf["intermediate_size"], ctx=hf["max_position_embeddings"],
                      rope_theta=hf["rope_theta"], eps=hf["rms_norm_eps"], k=k,
                      lime=bool(hf.get("lime", False)))
    eg = hf.get("engram")
    if eg:
        p0 = tensors[f"model.layers.{eg['layers'][0]}.engram.primes"]
        cfg.engram_layers = tuple(eg["layers"])
        cfg.engram_heads, cfg.engram_head_dim = eg["heads"], eg["head_dim"]
        cfg.engram_rows, cfg.engram_seed = int(p0.min()), eg.get("seed", 0)
    model = TideLM(cfg)
    sd = {}
    if eg:
        sd["engram_compress"] = torch.from_numpy(tensors.pop("engram.compress"))
        for li in cfg.engram_layers:
            prm = tensors[f"model.layers.{li}.engram.primes"]
            tabs = []
            for o in range(prm.shape[0]):
                for h in range(prm.shape[1]):
                    r = tensors.pop(f"engram.{li}.table.{o}.{h}")
                    tabs.append(dequantize_q4_1(r, eg["head_dim"]) if eg["rows"] == "q4_1" else r)
            sd[f"layers.{li}.engram.tables"] = torch.from_numpy(np.concatenate(tabs).astype(np.float32))
            sd[f"layers.{li}.engram.offsets"] = model.layers[li].engram.offsets
    for name, v in tensors.items():
        if name.startswith("model."):
            keep_int = name.endswith((".multipliers", ".primes"))
            sd[name[len("model."):]] = torch.from_numpy(v if keep_int else v.astype(np.float32))
    if k:
        rows = meta.get("tide.rows", "f32")
        tabs = []
        svd = "tide.svd_rank" in meta
        for i in range(k):
            r = tensors[f"tide.memory.{i}.rows"]
            # SVD tables (tide compress): rows hold A_k [V, W], the basis B_k [W, d].
            basis = tensors[f"tide.memory.{i}.basis"].astype(np.float32) if svd else None
            width = basis.shape[0] if svd else cfg.dim
            if rows == "q4_1":
                r = dequantize_q4_1(r, width)
            elif rows == "q8_0":
                r = dequantize_q8_0(r, width)
            r = r.astype(np.float32)
            tabs.append(r @ basis if svd else r)
        sd["memory.tables"] = torch.from_numpy(np.stack(tabs))
        normalized = meta.get("tide.normalized", "false") == "true"
        model.memory.normalized = normalized
        sd["memory.gamma"] = torch.from_numpy(np.stack([
            tensors.get(f"tide.memory.{i}.gamma", np.ones(cfg.dim, np.float32)) for i in range(k)]))
        for li in range(cfg.n_layers):
            sd[f"layers.{li}.router.weight"] = torch.from_numpy(tensors[f"tide.router.{li}.weight"])
    model.load_state_dict(sd, strict=True)
    counts = tensors.get("tide.token_counts")
    return model.eval(), counts
