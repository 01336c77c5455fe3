#!/usr/bin/env bash
# Reproduce the committed models from scratch (CPU, ~1 hour on 2 cores):
# corpus -> tokenizer -> K=0 baseline and K=4 TIDE with the same backbone, data and token budget.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${CORPUS:-.cache/corpus}
[ -f "$CORPUS/train.txt" ] || python3 train/corpus.py --out "$CORPUS"
[ -f "$CORPUS/train.bin" ] || python3 train/tokenize_corpus.py --corpus "$CORPUS"
for k in 0 4; do
  python3 train/train.py --config train/configs/k$k.json --out models/tide-k$k --corpus "$CORPUS"
done
