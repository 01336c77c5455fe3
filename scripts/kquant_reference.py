#!/usr/bin/env python3
"""A tiny random `llama` model quantised by llama.cpp's own quantiser to the K-quant types people
download, with llama.cpp's logits for each file -> tests/fixtures/kquant/ (committed, so that
tests/llamacpp.rs checks our K-quant decoding against llama.cpp's in CI without llama.cpp).

    py="$(scripts/venv.sh scripts/requirements.txt scripts/requirements-llamacpp.txt)"
    "$py" scripts/kquant_reference.py [--out tests/fixtures/kquant]

The model: width 256, FFN 512 (every row a whole 256-value super-block, so llama.cpp keeps the
K-quant it chose instead of falling back to Q5_0 as it does for SmolLM2's 576-wide rows), 2
layers, 4 query / 2 KV heads of 64, untied head, the 300-token vocabulary of
tests/fixtures/tiny_llama (as scripts/arch_reference.py writes its models). Written in f32 by
gguf-py, then quantised with llama_model_quantize to Q4_K_M, Q5_K_M and Q6_K.

For each TYPE it writes tiny.TYPE.gguf and tiny.TYPE.json: llama.cpp's logits at every position
of a fixed 16-token sequence (one batch, f32 KV cache, flash attention off)
  - `logits`: on the quantised file itself (llama.cpp's quantised dot products round the
    activations to 8 bits, so ours, in f32, differ by that);
  - `logits_f32`: on llama.cpp's own dequantisation of the file (requantised to all-F32 with
    allow_requantize), run in f32 throughout: our decoding of the K-quant blocks against
    llama.cpp's, the rest of the forward in f32 on both sides.
and the file's tensor types as gguf-py reads them.
"""

import argparse
import collections
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from arch_reference import write_gguf  # noqa: E402
from llamacpp_reference import open_model, quantize  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20261207
N_SEQ = 16
CFG = dict(arch="llama", pre="default", dim=256, layers=2, heads=4, kv_heads=2, head_dim=64,
           ffn=512, theta=10000.0, eps=1e-5, tied=False)
TYPES = {
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
}


def log(msg):
    print(f"[kquant_reference] {msg}", file=sys.stderr, flush=True)


def logits_of(path, seq):
    llm = open_model(path)
    llm.eval(seq)
    out = np.array(llm.scores[:len(seq)], dtype=np.float32)
    assert np.all(np.isfinite(out))
    del llm
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures", "kquant"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    import gguf
    import llama_cpp

    rng = np.random.default_rng(SEED)
    f32 = os.path.join(a.out, "tiny.f32.gguf.tmp")
    n_vocab = write_gguf(f32, "kquant", CFG, rng)
    seq = [int(t) for t in rng.integers(3, n_vocab, N_SEQ)]
    try:
        for name, ftype in TYPES.items():
            path = os.path.join(a.out, f"tiny.{name}.gguf")
            quantize(f32, path, ftype)
            deq = path + ".f32.tmp"
            quantize(path, deq, "LLAMA_FTYPE_ALL_F32")
            types = collections.Counter(t.tensor_type.name for t in gguf.GGUFReader(path).tensors)
            logits = logits_of(path, seq)
            logits_f32 = logits_of(deq, seq)
            os.remove(deq)
            gap = float(np.max(np.abs(logits - logits_f32)))
            log(f"{name}: {os.path.getsize(path)} bytes, {dict(types)}, |8-bit - f32| <= {gap:.4f}")
            out = {
                "generator": "scripts/kquant_reference.py",
                "llama_cpp_python": llama_cpp.__version__,
                "type": name,
                "tensor_types": dict(types),
                "tokens": seq,
                "logits": [[round(float(x), 5) for x in row] for row in logits],
                "logits_f32": [[round(float(x), 5) for x in row] for row in logits_f32],
            }
            with open(os.path.join(a.out, f"tiny.{name}.json"), "w") as fh:
                json.dump(out, fh, separators=(",", ":"))
                fh.write("\n")
    finally:
        os.remove(f32)


if __name__ == "__main__":
    main()
