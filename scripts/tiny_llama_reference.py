#!/usr/bin/env python3
"""Tiny random LLaMA model + independent numpy reference forward -> tests/fixtures/tiny_llama/.

Writes (relative to the repo root):
  tests/fixtures/tiny_llama/config.json, model.safetensors (f32), tokenizer.json, golden.json
  tests/fixtures/tiny_llama/model_f16/{config.json, model.safetensors, tokenizer.json}
  tests/fixtures/tiny_llama/model_bf16/{config.json, model.safetensors, tokenizer.json}

The forward follows docs/spec models.md section 1, in Hugging Face layout:
pre-norm RMSNorm (eps), GQA attention with rotate-half RoPE, SwiGLU MLP, untied lm_head.
Golden logits are computed in float64 from the weights exactly as stored in each variant
(f32, f16-rounded, bf16-rounded), at every position of a causal forward over a fixed
12-token sequence. The script also asserts that an incremental decode with a KV cache
reproduces the full-sequence forward.

Usage:  python3 scripts/tiny_llama_reference.py [--out tests/fixtures/tiny_llama]
Needs: numpy, tokenizers.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_io import read_safetensors, round_to, write_safetensors  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CFG = dict(
    vocab_size=300,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=160,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
    max_position_embeddings=128,
)
SEED = 20240611
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2
BOS_ID = 1
EOS_ID = 2
GOLDEN_TEXT = "The tiny llama counts 1234 stones, then says: héllo wörld!"

TRAINING_TEXT = """\
The tiny llama walked along the ridge at dawn, counting stones as it went. One, two, three,
four: every stone had a colour, and every colour had a name. The shepherd followed with a
lantern and a notebook, writing down the numbers 12, 57, 314 and 2048 in neat columns.

In the valley below, a river bent around the old mill. The miller said the water was faster
in spring and slower in autumn, and that the wheel turned 60 times a minute when the snow
melted. Nobody believed him, so they measured it: 58, 61, 59, 60. He was right, more or less.

def forward(x, weights):
    h = embed(x)
    for layer in weights.layers:
        h = h + attention(norm(h)) + mlp(norm(h))
    return logits(norm(h))

Cafés in the town served crème brûlée, naïve little pastries, and a strong coffee. Über den
Bergen lag Schnee. 小さなラマは山を歩いた。 Le lama est petit mais il est têtu. ¿Dónde está?
Tokens, bytes and merges: a byte-level tokenizer never meets an unknown character, it simply
falls back to the 256 single bytes. Emoji like 🦙 and 🎉 become several bytes each.

<|im_start|>user
How many stones did the llama count?<|im_end|>
<|im_start|>assistant
It counted thirty-seven stones, then it stopped to eat some grass.<|im_end|>
"""


# ----------------------------------------------------------------------------------------
# tokenizer


def build_tokenizer(vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    paragraphs = [p for p in TRAINING_TEXT.split("\n\n") if p.strip()]
    tok.train_from_iterator(paragraphs * 4, trainer=trainer)
    got = tok.get_vocab_size(with_added_tokens=True)
    assert got == vocab_size, f"tokenizer vocab {got} != {vocab_size}"
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    return tok


# ----------------------------------------------------------------------------------------
# weights


def make_weights(cfg, seed):
    rng = np.random.default_rng(seed)
    d, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hq, hkv, dh = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]

    def w(*shape):
        return rng.normal(0.0, 0.05, size=shape).astype(np.float32)

    def norm_w(n):
        return (1.0 + rng.normal(0.0, 0.1, size=(n,))).astype(np.float32)

    t = {"model.embed_tokens.weight": w(v, d)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = norm_w(d)
        t[p + "self_attn.q_proj.weight"] = w(hq * dh, d)
        t[p + "self_attn.k_proj.weight"] = w(hkv * dh, d)
        t[p + "self_attn.v_proj.weight"] = w(hkv * dh, d)
        t[p + "self_attn.o_proj.weight"] = w(d, hq * dh)
        t[p + "post_attention_layernorm.weight"] = norm_w(d)
        t[p + "mlp.gate_proj.weight"] = w(f, d)
        t[p + "mlp.up_proj.weight"] = w(f, d)
        t[p + "mlp.down_proj.weight"] = w(d, f)
    t["model.norm.weight"] = norm_w(d)
    t["lm_head.weight"] = w(v, d)
    return t


# ----------------------------------------------------------------------------------------
# reference forward (float64)


def rms_norm(x, gamma, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * gamma


def rope_rotate_half(x, positions, theta):
    """x: [T, n_heads, Dh]; HF layout: element i pairs with element i + Dh/2."""
    dh = x.shape[-1]
    half = dh // 2
    inv_freq = theta ** (-np.arange(half, dtype=np.float64) * 2.0 / dh)  # [half]
    ang = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]  # [T, half]
    cos = np.cos(ang)[:, None, :]
    sin = np.sin(ang)[:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def silu(x):
    return x / (1.0 + np.exp(-x))


class Model:
    def __init__(self, cfg, weights):
        self.cfg = cfg
        self.w = {k: np.asarray(a, dtype=np.float64) for k, a in weights.items()}

    def new_cache(self):
        return [{"k": None, "v": None} for _ in range(self.cfg["num_hidden_layers"])]

    def forward(self, ids, start_pos=0, cache=None):
        """Causal forward over `ids` placed at positions start_pos..; returns logits [T, V].

        With a cache, keys/values of earlier positions are taken from it and it is extended."""
        c = self.cfg
        w = self.w
        hq, hkv, dh = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        rep = hq // hkv
        eps, theta = c["rms_norm_eps"], c["rope_theta"]
        t = len(ids)
        pos = np.arange(start_pos, start_pos + t)
        h = w["model.embed_tokens.weight"][np.asarray(ids)]  # [T, d]
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            a = rms_norm(h, w[p + "input_layernorm.weight"], eps)
            q = (a @ w[p + "self_attn.q_proj.weight"].T).reshape(t, hq, dh)
            k = (a @ w[p + "self_attn.k_proj.weight"].T).reshape(t, hkv, dh)
            v = (a @ w[p + "self_attn.v_proj.weight"].T).reshape(t, hkv, dh)
            q = rope_rotate_half(q, pos, theta)
            k = rope_rotate_half(k, pos, theta)
            if cache is not None:
                if cache[i]["k"] is not None:
                    k = np.concatenate([cache[i]["k"], k], axis=0)
                    v = np.concatenate([cache[i]["v"], v], axis=0)
                cache[i]["k"], cache[i]["v"] = k, v
            s = k.shape[0]  # number of keys (past + current)
            kpos = np.arange(s)
            out = np.empty((t, hq, dh))
            for hh in range(hq):
                kv = hh // rep
                scores = (q[:, hh, :] @ k[:, kv, :].T) / np.sqrt(dh)  # [T, S]
                mask = kpos[None, :] > pos[:, None]
                scores = np.where(mask, -np.inf, scores)
                scores = scores - scores.max(axis=-1, keepdims=True)
                pr = np.exp(scores)
                pr /= pr.sum(axis=-1, keepdims=True)
                out[:, hh, :] = pr @ v[:, kv, :]
            h = h + out.reshape(t, hq * dh) @ w[p + "self_attn.o_proj.weight"].T
            n = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
            g = n @ w[p + "mlp.gate_proj.weight"].T
            u = n @ w[p + "mlp.up_proj.weight"].T
            h = h + (silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
        h = rms_norm(h, w["model.norm.weight"], eps)
        lm_head = w.get("lm_head.weight", w["model.embed_tokens.weight"])  # tied when absent
        return h @ lm_head.T


def check_decode_consistency(model, ids):
    full = model.forward(ids)
    cache = model.new_cache()
    # prefill a few tokens at once, then one token at a time
    split = 5
    steps = [model.forward(ids[:split], 0, cache)]
    for p in range(split, len(ids)):
        steps.append(model.forward(ids[p : p + 1], p, cache))
    inc = np.concatenate(steps, axis=0)
    err = np.max(np.abs(full - inc))
    assert err < 1e-9, f"KV-cache decode differs from full forward: {err}"
    # the last position's logits must not depend on anything after it (causality)
    part = model.forward(ids[:7])
    err2 = np.max(np.abs(part - full[:7]))
    assert err2 < 1e-9, f"causal mask leak: {err2}"
    return max(err, err2)


# ----------------------------------------------------------------------------------------
# output


def hf_config(cfg, dtype_name):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg["hidden_size"],
        "intermediate_size": cfg["intermediate_size"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_attention_heads": cfg["num_attention_heads"],
        "num_key_value_heads": cfg["num_key_value_heads"],
        "head_dim": cfg["head_dim"],
        "vocab_size": cfg["vocab_size"],
        "rms_norm_eps": cfg["rms_norm_eps"],
        "rope_theta": cfg["rope_theta"],
        "rope_scaling": None,
        "max_position_embeddings": cfg["max_position_embeddings"],
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "torch_dtype": dtype_name,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
    }


def fmt_logits(arr):
    # 8 significant digits: far below f32 noise, keeps the file small
    return [[float(f"{x:.8g}") for x in row] for row in arr]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures", "tiny_llama"))
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)

    tok = build_tokenizer(CFG["vocab_size"])
    enc = tok.encode(GOLDEN_TEXT).ids
    assert len(enc) >= 11, len(enc)
    ids = [BOS_ID] + enc[:11]
    assert len(ids) == 12 and all(0 <= i < CFG["vocab_size"] for i in ids)
    print(f"golden ids: {ids}", file=sys.stderr)

    weights = make_weights(CFG, SEED)
    variants = [("f32", "float32", out), ("f16", "float16", os.path.join(out, "model_f16")),
                ("bf16", "bfloat16", os.path.join(out, "model_bf16"))]
    golden = {"generator": "scripts/tiny_llama_reference.py", "text": GOLDEN_TEXT, "ids": ids, "logits": {}}
    for key, torch_dtype, d in variants:
        os.makedirs(d, exist_ok=True)
        st_path = os.path.join(d, "model.safetensors")
        write_safetensors(st_path, weights, dtype=key, metadata={"format": "pt"})
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(hf_config(CFG, torch_dtype), f, indent=2)
            f.write("\n")
        tok.save(os.path.join(d, "tokenizer.json"), pretty=True)

        # golden logits from the weights as stored (read back, so rounding is exactly what's on disk)
        stored, dtypes, _ = read_safetensors(st_path)
        assert set(stored) == set(weights)
        for name, arr in weights.items():
            assert np.array_equal(stored[name], round_to(arr, key)), name
        model = Model(CFG, stored)
        err = check_decode_consistency(model, ids)
        logits = model.forward(ids)
        golden["logits"][key] = fmt_logits(logits)
        print(f"{key}: wrote {st_path} ({os.path.getsize(st_path)} bytes); kv-cache max diff {err:.2e}; "
              f"argmax {logits.argmax(-1).tolist()}", file=sys.stderr)

    # cross-variant sanity: rounding moves logits a little, not a lot
    f32 = np.array(golden["logits"]["f32"])
    for key in ("f16", "bf16"):
        diff = np.max(np.abs(np.array(golden["logits"][key]) - f32))
        print(f"max |logits {key} - f32| = {diff:.3e}", file=sys.stderr)
        assert 0 < diff < 0.1, diff

    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump(golden, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.join(out, 'golden.json')}", file=sys.stderr)


if __name__ == "__main__":
    main()
