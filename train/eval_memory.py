"""Held-out evaluation of a memory file on its backbone, in PyTorch (f32): what `tide eval`
reports (perplexity, CE and NULL weight by frequency decile, NULL by layer; train/evaluate.py,
the same definitions), read from exactly the stored rows: f16, 8-bit, 4-bit or SVD factors as
`tide compress` writes them (train/load.py decodes them with numpy). Faster than the runtime on
a machine without a GPU, so the quality-against-size table of a 135M model is measured here;
the runtime's equality with this reference is tested on golden rows (tests/smollm2_tide.rs).

  python3 train/eval_memory.py --backbone <HF folder> --memory memory.safetensors \\
      --data .cache/corpus/heldout.txt --tokens 65536 [--layers-off all|0,1,...]

Prints one JSON object: the evaluation, the memory file and the tokens used.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

import evaluate
from load import load


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", required=True, help="HF folder of the backbone")
    ap.add_argument("--memory", help="memory file (none: the backbone alone)")
    ap.add_argument("--data", required=True, help="text to evaluate (tokenised whole)")
    ap.add_argument("--tokens", type=int, default=65536, help="first tokens of --data (0: all)")
    ap.add_argument("--seq", type=int, default=256, help="window length")
    ap.add_argument("--counts-from", help="memory file whose tide.token_counts define the "
                    "deciles (default: --memory's)")
    args = ap.parse_args()
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(args.backbone, "tokenizer.json"))
    ids = np.asarray(tok.encode(open(args.data, encoding="utf-8").read(),
                                add_special_tokens=False).ids, dtype=np.int64)
    if args.tokens:
        ids = ids[:args.tokens]
    model, counts = load(args.backbone, memory_file=args.memory)
    if args.counts_from:
        counts = load(args.backbone, memory_file=args.counts_from)[1]
    if counts is None:
        sys.exit("no token counts: give --counts-from a memory file that has tide.token_counts")
    with torch.no_grad():
        ev = evaluate.evaluate(model, ids, np.asarray(counts), args.seq)
    print(json.dumps({"memory": args.memory, "data": args.data, "tokens": int(ids.size),
                      "window": args.seq, **ev}))


if __name__ == "__main__":
    main()
