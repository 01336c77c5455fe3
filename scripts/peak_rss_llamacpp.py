#!/usr/bin/env python3
"""llama.cpp's peak resident memory (llama-cpp-python, CPU) for README's first command on a GGUF:
32 greedy tokens after "In the beginning God created", context 2048, f32 K/V cache (as tide's).
Prints one JSON object: the process's peak RSS, and its RSS after importing llama_cpp and before
loading the model (the Python interpreter's and the library's share, which a llama.cpp binary
would not have). Usage: scripts/peak_rss_llamacpp.py MODEL.gguf [--ctx 2048] [--tokens 32]
"""
import argparse
import json
import resource


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--tokens", type=int, default=32)
    a = ap.parse_args()
    import llama_cpp

    base = rss_mb()
    f32 = 0  # GGML_TYPE_F32
    llm = llama_cpp.Llama(model_path=a.model, n_ctx=a.ctx, n_threads=2, type_k=f32, type_v=f32,
                          verbose=False)
    out = llm("In the beginning God created", max_tokens=a.tokens, temperature=0.0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000  # kB -> MB (as GNU time)
    print(json.dumps({"runtime": "llama.cpp (llama-cpp-python " + llama_cpp.__version__ + ")",
                      "ctx": a.ctx, "tokens": out["usage"]["completion_tokens"],
                      "peak_rss_mb": round(peak, 1), "rss_before_load_mb": round(base, 1)}))


if __name__ == "__main__":
    main()
