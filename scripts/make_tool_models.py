#!/usr/bin/env python3
"""Tiny random chat models with real vocabularies and real chat templates, for the tests of tool
calling (tests/api/test_openai.py): what matters there is the format (the template's prompt,
the call syntax forced and read back), not what a model says.

    python3 scripts/make_tool_models.py [--out DIR]

Writes DIR/qwen25-tools.gguf (architecture qwen2, the Qwen2 vocabulary, Qwen2.5-7B-Instruct's
template, <|im_end|> as end of turn) and DIR/llama31-tools.gguf (architecture llama, the Llama 3
vocabulary, Llama-3.1-8B-Instruct's template, <|eot_id|> as end of turn): 2 layers of width 64,
f32 weights, random but fixed by the seed. The vocabularies are llama.cpp's vocab-only GGUF
files and the templates llama.cpp's copies (scripts/fetch-vocabs.sh); DIR defaults to
${TIDE_CACHE:-<repo root>/.cache}/tool-models.

Needs: numpy, gguf (scripts/requirements.txt).
"""

import argparse
import math
import os
import sys

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20260036
MODELS = {
    # file: (architecture, vocabulary, template, end-of-turn token, add BOS)
    "qwen25-tools.gguf": ("qwen2", "qwen2", "Qwen-Qwen2.5-7B-Instruct", "<|im_end|>", False),
    "llama31-tools.gguf": ("llama", "llama-bpe", "meta-llama-Llama-3.1-8B-Instruct", "<|eot_id|>", True),
}


def field(r, key):
    f = r.fields[key]
    return f.contents()


def write(path, arch, vocab_path, template, eot, add_bos, rng):
    import gguf

    r = gguf.GGUFReader(vocab_path)
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    merges = field(r, "tokenizer.ggml.merges")
    n_vocab = len(tokens)
    d, hd, nh, nkv, f, layers = 64, 16, 4, 2, 96, 2

    def mat(rows, cols, scale=1.0):
        return (rng.standard_normal((rows, cols)) * scale / math.sqrt(cols)).astype(np.float32)

    def gamma(n):
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    tmp = path + ".part"
    w = gguf.GGUFWriter(tmp, arch)
    w.add_name(f"tide-test-{os.path.basename(path)[:-5]}")
    w.add_context_length(2048)
    w.add_embedding_length(d)
    w.add_block_count(layers)
    w.add_feed_forward_length(f)
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(1e6 if arch == "qwen2" else 500000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(n_vocab)
    w.add_file_type(0)  # all f32
    w.add_tokenizer_model(field(r, "tokenizer.ggml.model"))
    w.add_tokenizer_pre(field(r, "tokenizer.ggml.pre"))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(int(field(r, "tokenizer.ggml.bos_token_id")))
    w.add_eos_token_id(tokens.index(eot))
    w.add_add_bos_token(add_bos)
    w.add_chat_template(template)

    w.add_tensor("token_embd.weight", (0.3 * rng.standard_normal((n_vocab, d))).astype(np.float32))
    w.add_tensor("output_norm.weight", gamma(d))
    w.add_tensor("output.weight", mat(n_vocab, d, 2.0))
    for i in range(layers):
        p = f"blk.{i}"
        w.add_tensor(f"{p}.attn_norm.weight", gamma(d))
        w.add_tensor(f"{p}.attn_q.weight", mat(nh * hd, d))
        w.add_tensor(f"{p}.attn_k.weight", mat(nkv * hd, d))
        w.add_tensor(f"{p}.attn_v.weight", mat(nkv * hd, d))
        if arch == "qwen2":
            w.add_tensor(f"{p}.attn_q.bias", (0.5 * rng.standard_normal(nh * hd)).astype(np.float32))
            w.add_tensor(f"{p}.attn_k.bias", (0.5 * rng.standard_normal(nkv * hd)).astype(np.float32))
            w.add_tensor(f"{p}.attn_v.bias", (0.5 * rng.standard_normal(nkv * hd)).astype(np.float32))
        w.add_tensor(f"{p}.attn_output.weight", mat(d, nh * hd, 3.0))
        w.add_tensor(f"{p}.ffn_norm.weight", gamma(d))
        w.add_tensor(f"{p}.ffn_gate.weight", mat(f, d))
        w.add_tensor(f"{p}.ffn_up.weight", mat(f, d))
        w.add_tensor(f"{p}.ffn_down.weight", mat(d, f, 3.0))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)


def main():
    cache = os.environ.get("TIDE_CACHE") or os.path.join(REPO_ROOT, ".cache")
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(cache, "tool-models"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    vocabs = os.path.join(cache, "vocabs")
    for name, (arch, vocab, template, eot, add_bos) in MODELS.items():
        with open(os.path.join(vocabs, "templates", f"{template}.jinja"), encoding="utf-8") as f:
            text = f.read()
        rng = np.random.default_rng(SEED + len(name))
        path = os.path.join(args.out, name)
        write(path, arch, os.path.join(vocabs, f"ggml-vocab-{vocab}.gguf"), text, eot, add_bos, rng)
        print(f"[make_tool_models] {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
