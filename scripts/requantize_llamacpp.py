#!/usr/bin/env python3
"""SmolLM2-135M-Instruct re-quantised by llama.cpp's own quantiser (llama_model_quantize through
llama-cpp-python), for checking and benchmarking the GGUF types that people download:

    py="$(scripts/venv.sh scripts/requirements.txt scripts/requirements-llamacpp.txt)"
    "$py" scripts/requantize_llamacpp.py [--model PATH.gguf] [--out DIR] [TYPE ...]

TYPE is any of q4_k_m, q5_k_m, q6_k, q5_0 (default: all four), or f32. The source is the Q4_1
file that scripts/fetch-smollm2.sh fetches, re-quantised with allow_requantize (the published
model has no f16 GGUF here), so the values are Q4_1's rounded again. Writes
DIR/SmolLM2-135M-Instruct.TYPE.gguf (default DIR: the source's folder) and prints each file's
tensor types as gguf-py reads them.

f32 writes SOURCE.F32.gguf: the source dequantised by llama.cpp into f32 tensors. llama.cpp then
runs it in f32 throughout, without the 8-bit activations of its quantised dot products, which
is the reference tests/llamacpp.rs holds our K-quant runs to (fixtures *_f32.json):

    "$py" scripts/requantize_llamacpp.py --model .cache/smollm2/SmolLM2-135M-Instruct.Q4_K_M.gguf f32
    "$py" scripts/llamacpp_reference.py --model .cache/smollm2/SmolLM2-135M-Instruct.Q4_K_M.F32.gguf \
        --out tests/fixtures/llamacpp_smollm2_q4_k_m_f32.json
"""

import argparse
import collections
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llamacpp_reference import quantize  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FTYPES = {
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "f32": "LLAMA_FTYPE_ALL_F32",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--out")
    ap.add_argument("types", nargs="*", default=list(FTYPES))
    a = ap.parse_args()
    src = a.model or subprocess.check_output(
        ["bash", os.path.join(REPO_ROOT, "scripts", "fetch-smollm2.sh")], text=True).strip()
    out = a.out or os.path.dirname(src)
    os.makedirs(out, exist_ok=True)

    import gguf

    for t in a.types:
        if t not in FTYPES:
            sys.exit(f"unknown type {t!r} (known: {', '.join(FTYPES)})")
        if t == "f32":
            dst = os.path.join(out, os.path.basename(src)[:-len(".gguf")] + ".F32.gguf")
        else:
            dst = os.path.join(out, f"SmolLM2-135M-Instruct.{t.upper()}.gguf")
        quantize(src, dst, FTYPES[t])
        types = collections.Counter(
            t.tensor_type.name for t in gguf.GGUFReader(dst).tensors)
        print(f"{dst}: {dict(types)}")


if __name__ == "__main__":
    main()
