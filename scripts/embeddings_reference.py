#!/usr/bin/env python3
"""llama.cpp's embeddings of SmolLM2-135M-Instruct (Q4_1 GGUF) -> tests/fixtures/llamacpp_smollm2_embeddings.json.

    python3 scripts/embeddings_reference.py [--model PATH.gguf] [--out FILE]

llama-cpp-python with embedding=True on the CPU (2 threads), pooling MEAN and LAST, each input
embedded alone; vectors L2-normalised (embed(normalize=True)), rounded to 6 decimals. Records
each input's token ids (tokenize(text), as embed() does: BOS when the model adds it) so that the
test checks it embeds the same tokens. The vectors are llama.cpp's last hidden state after the
output norm, pooled.

Needs llama-cpp-python (scripts/requirements-llamacpp.txt; run it with the python that
`scripts/venv.sh scripts/requirements-llamacpp.txt` prints).
"""
import argparse
import json
import os

import llama_cpp

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INPUTS = [
    "Hello",
    "The quick brown fox jumps over the lazy dog.",
    "Embeddings pool the last hidden state of every token into one vector.",
    "In the beginning God created the heaven and the earth. And the earth was without form, "
    "and void; and darkness was upon the face of the deep.",
]
POOLINGS = {"mean": llama_cpp.LLAMA_POOLING_TYPE_MEAN, "last": llama_cpp.LLAMA_POOLING_TYPE_LAST}


def main():
    cache = os.environ.get("TIDE_CACHE", os.path.join(REPO_ROOT, ".cache"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(cache, "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests/fixtures/llamacpp_smollm2_embeddings.json"))
    a = ap.parse_args()
    out = {"model": os.path.basename(a.model), "llama_cpp_python": llama_cpp.__version__,
           "normalised": "L2", "inputs": []}
    for text in INPUTS:
        out["inputs"].append({"text": text})
    for name, pooling in POOLINGS.items():
        llm = llama_cpp.Llama(model_path=a.model, embedding=True, pooling_type=pooling, n_ctx=512,
                              n_batch=512, n_threads=2, verbose=False, seed=1234)
        for case in out["inputs"]:
            case["ids"] = llm.tokenize(case["text"].encode("utf-8"))
            v = llm.embed(case["text"], normalize=True)
            case[name] = [round(float(x), 6) for x in v]
        del llm
    with open(a.out, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
