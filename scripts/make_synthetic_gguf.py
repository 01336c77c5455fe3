#!/usr/bin/env python3
"""A GGUF at a real model's shapes with random weights, for measuring what the browser does
with files of that size (issue 35: wasm heap, load time, first token, models over 2 GB) where
no such file can be downloaded here. Tokenizer: Qwen2's vocabulary from llama.cpp's vocab-only
GGUF (scripts/fetch-vocabs.sh). Weights: seeded random values scaled so activations stay finite;
the text they generate means nothing.

    py="$(scripts/venv.sh scripts/requirements.txt scripts/requirements-llamacpp.txt)"
    "$py" scripts/make_synthetic_gguf.py qwen2.5-0.5b q4_k_m OUT.gguf   # ~0.4 GB, llama.cpp's quantiser
    "$py" scripts/make_synthetic_gguf.py qwen2.5-3b q8_0 OUT.gguf       # ~3.3 GB, gguf-py's Q8_0

q4_k_m writes an f16 file first (beside OUT) and quantises it with llama.cpp's own quantiser
(llama_model_quantize through llama-cpp-python), then deletes it; q8_0 and f16 are written by
gguf-py directly, one tensor at a time (memory stays near the largest tensor).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SHAPES = {
    # name: (vocab, dim, layers, heads, kv_heads, ffn, context)
    "qwen2.5-0.5b": (151936, 896, 24, 14, 2, 4864, 32768),
    "qwen2.5-3b": (151936, 2048, 36, 16, 2, 11008, 32768),
}
VOCAB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     ".cache", "vocabs", "ggml-vocab-qwen2.gguf")


def tensors(shape):
    vocab, dim, layers, heads, kv, ffn, _ = shape
    hd = dim // heads
    yield "token_embd.weight", (vocab, dim)
    for i in range(layers):
        b = f"blk.{i}."
        yield b + "attn_norm.weight", (dim,)
        yield b + "attn_q.weight", (heads * hd, dim)
        yield b + "attn_q.bias", (heads * hd,)
        yield b + "attn_k.weight", (kv * hd, dim)
        yield b + "attn_k.bias", (kv * hd,)
        yield b + "attn_v.weight", (kv * hd, dim)
        yield b + "attn_v.bias", (kv * hd,)
        yield b + "attn_output.weight", (dim, heads * hd)
        yield b + "ffn_norm.weight", (dim,)
        yield b + "ffn_gate.weight", (ffn, dim)
        yield b + "ffn_up.weight", (ffn, dim)
        yield b + "ffn_down.weight", (dim, ffn)
    yield "output_norm.weight", (dim,)


def values(name, shape, rng):
    if name.endswith("norm.weight"):
        return np.ones(shape, dtype=np.float32)
    if name.endswith(".bias"):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
    fan_in = shape[-1]
    return (rng.standard_normal(shape, dtype=np.float32) / np.sqrt(fan_in)).astype(np.float32)


def write(shape_name, qtype, out):
    import gguf

    shape = SHAPES[shape_name]
    vocab, dim, layers, heads, kv, ffn, ctx = shape
    voc = gguf.GGUFReader(VOCAB)
    w = gguf.GGUFWriter(out, "qwen2")
    w.add_name(f"synthetic {shape_name}")
    w.add_context_length(ctx)
    w.add_embedding_length(dim)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_freq_base(1000000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if qtype == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
    for name, field in voc.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vt = field.types[0]
        sub = field.types[-1] if vt == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, field.contents(), vt, sub_type=sub)
    n_vocab = len(voc.fields["tokenizer.ggml.tokens"].contents())
    assert n_vocab <= vocab, (n_vocab, vocab)
    rng = np.random.default_rng(0)
    specs = list(tensors(shape))
    # Header first (tensor infos), then each tensor's data in turn: one tensor in memory at a time.
    for name, shp in specs:
        quant = qtype == "q8_0" and len(shp) == 2
        t = gguf.GGMLQuantizationType.Q8_0 if quant else (
            gguf.GGMLQuantizationType.F16 if len(shp) == 2 else gguf.GGMLQuantizationType.F32)
        nbytes = int(np.prod(shp)) * (34 / 32 if quant else 2 if len(shp) == 2 else 4)
        byte_shape = (*shp[:-1], shp[-1] // 32 * 34) if quant else shp
        dtype = np.uint8 if quant else (np.float16 if len(shp) == 2 else np.float32)
        w.add_tensor_info(name, byte_shape, np.dtype(dtype), int(nbytes), raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for i, (name, shp) in enumerate(specs):
        v = values(name, shp, rng)
        if qtype == "q8_0" and len(shp) == 2:
            data = gguf.quants.quantize(v, gguf.GGMLQuantizationType.Q8_0)
        elif len(shp) == 2:
            data = v.astype(np.float16)
        else:
            data = v
        w.write_tensor_data(data)
        if i % 20 == 0:
            print(f"{out}: {i + 1}/{len(specs)} tensors", file=sys.stderr)
    w.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("type", choices=["q4_k_m", "q8_0", "f16"])
    ap.add_argument("out")
    a = ap.parse_args()
    if not os.path.exists(VOCAB):
        sys.exit(f"{VOCAB} is missing: run scripts/fetch-vocabs.sh")
    if a.type == "q4_k_m":
        from llamacpp_reference import quantize

        f16 = a.out + ".f16.gguf"
        write(a.shape, "f16", f16)
        quantize(f16, a.out, "LLAMA_FTYPE_MOSTLY_Q4_K_M")
        os.remove(f16)
    else:
        write(a.shape, a.type, a.out)
    print(f"{a.out}: {os.path.getsize(a.out)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
