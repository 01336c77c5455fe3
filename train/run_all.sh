#!/usr/bin/env bash
# Reproduce the committed models from scratch (CPU, ~1 hour on 2 cores):
# corpus -> tokenizer -> K=0 baseline and K=4 TIDE with the same backbone, data and token budget.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${CORPUS:-.cache/corpus}
py="$(scripts/venv.sh scripts/requirements.txt train/requirements.txt)"
[ -f "$CORPUS/train.txt" ] || "$py" train/corpus.py --out "$CORPUS"
[ -f "$CORPUS/train.bin" ] || "$py" train/tokenize_corpus.py --corpus "$CORPUS"
for k in 0 4; do
  "$py" train/train.py --config train/configs/k$k.json --out models/tide-k$k --corpus "$CORPUS"
done
