#!/usr/bin/env python3
"""Write a synthetic TIDE memory file at SmolLM2-135M's shape, for measuring streaming where it
matters: K random tables of 49152 x 576 (Q4_1 rows: 24 blocks are ~425 MB, 340 MB of 4-bit
values plus their scales), gammas and a router for each of the 30 layers, all from a fixed seed.
Not committed: it is rebuilt in ~1 minute.

    python scripts/make_synthetic_memory.py --out .cache/synthetic-k24 [--k 24] \
        [--counts-from .cache/corpus/train.txt --tokenizer .cache/smollm2/hf-f32/tokenizer.json]

--counts-from tokenises a text with SmolLM2's tokenizer and stores the counts as
tide.token_counts (the row cache's warm-up order). The file is used beside the real backbone:
    tide generate --model .cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        --memory .cache/synthetic-k24/memory.safetensors "..."
and `tide serve --model .cache/synthetic-k24` offers it for --memory http://... .
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train"))
from export import quantize_q4_1  # noqa: E402

VOCAB, DIM, LAYERS = 49152, 576, 30


def token_counts(text_path, tokenizer_path):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_path)
    counts = np.zeros(VOCAB, dtype=np.uint64)
    with open(text_path, encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    # Whole chunks of lines, newlines kept: the text tokenises as the runtime will see it
    # (encoding line by line would drop every token holding a newline, which are among the
    # most frequent, and change how lines start).
    chunks = ["".join(lines[i : i + 256]) for i in range(0, len(lines), 256)]
    for i in range(0, len(chunks), 64):
        for enc in tok.encode_batch(chunks[i : i + 64], add_special_tokens=False):
            ids = np.asarray(enc.ids, dtype=np.int64)
            counts += np.bincount(ids, minlength=VOCAB).astype(np.uint64)[:VOCAB]
        done = min(i + 64, len(chunks)) * 256
        print(f"  counted {min(done, len(lines))}/{len(lines)} lines", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="folder to write memory.safetensors into")
    ap.add_argument("--k", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--counts-from", help="text whose SmolLM2 token counts become tide.token_counts")
    ap.add_argument("--tokenizer", default=".cache/smollm2/hf-f32/tokenizer.json")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    rb = DIM // 32 * 20
    # (name, dtype, shape, nbytes, make) in file order; tables are made one at a time.
    entries = []
    for k in range(a.k):
        entries.append((f"tide.memory.{k}.rows", "U8", [VOCAB, rb], VOCAB * rb,
                        lambda: quantize_q4_1(rng.normal(0.0, 0.02, (VOCAB, DIM)).astype(np.float32))))
        entries.append((f"tide.memory.{k}.gamma", "F32", [DIM], DIM * 4,
                        lambda: np.full(DIM, 0.05, dtype=np.float32)))
    for layer in range(LAYERS):
        entries.append((f"tide.router.{layer}.weight", "F32", [a.k + 1, DIM], (a.k + 1) * DIM * 4,
                        lambda: rng.normal(0.0, 3.0 / np.sqrt(DIM), (a.k + 1, DIM)).astype(np.float32)))
    if a.counts_from:
        counts = token_counts(a.counts_from, a.tokenizer)
        entries.append(("tide.token_counts", "U64", [VOCAB], VOCAB * 8, lambda: counts))
    header, off = {}, 0
    for name, dt, shape, n, _ in entries:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"tide.k": str(a.k), "tide.rows": "q4_1", "tide.normalized": "false",
                              "tide.eps": "1e-5", "tide.vocab": str(VOCAB), "tide.dim": str(DIM)}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "memory.safetensors")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for i, (name, _, _, n, make) in enumerate(entries):
            b = np.ascontiguousarray(make()).tobytes()
            assert len(b) == n, name
            f.write(b)
            print(f"  {i + 1}/{len(entries)} {name}", file=sys.stderr, end="\r")
    os.replace(tmp, path)
    print(f"\nwrote {path}: {os.path.getsize(path) / 1e6:.1f} MB, K = {a.k}", file=sys.stderr)


if __name__ == "__main__":
    main()
