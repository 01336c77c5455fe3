#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python, CPU) speed on a GGUF, in llama-bench's pp/tg convention:
prefill of a P-token prompt and decode of N tokens, median of R runs. Prints one JSON object.
Usage: scripts/bench_llamacpp.py MODEL.gguf [--prompt-len 128] [--gen 128] [--threads 2] [--reps 3]
"""
import argparse
import json
import statistics
import sys
import time

import llama_cpp
from llama_cpp import Llama


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    llm = Llama(model_path=a.model, n_ctx=a.prompt_len + a.gen + 8, n_threads=a.threads,
                n_threads_batch=a.threads, n_batch=a.prompt_len, verbose=False)
    vocab = llm.n_vocab()
    # The same deterministic pseudo-random prompt as `tide bench`.
    prompt = [(i * 2654435761 + 17) % vocab for i in range(a.prompt_len)]
    pps, tgs = [], []
    for rep in range(a.reps + 1):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        pp = a.prompt_len / (time.perf_counter() - t0)
        tok = 1  # decode speed does not depend on which token is fed
        t1 = time.perf_counter()
        for _ in range(a.gen):
            llm.eval([tok])
        tg = a.gen / (time.perf_counter() - t1)
        if rep > 0:  # first run warms up
            pps.append(pp)
            tgs.append(tg)
        print(f"[llama.cpp] run {rep}: pp {pp:.1f} tok/s, tg {tg:.1f} tok/s", file=sys.stderr)
    print(json.dumps({
        "engine": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}, CPU, {a.threads} threads",
        "prompt_len": a.prompt_len, "gen": a.gen,
        "prefill_tokens_per_s": statistics.median(pps),
        "decode_tokens_per_s": statistics.median(tgs),
    }))


if __name__ == "__main__":
    main()
