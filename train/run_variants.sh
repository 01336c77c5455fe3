#!/usr/bin/env bash
# Reproduce issue 16's variant models (CPU, one torch thread each; ~30-90 minutes apiece on
# this machine's cores): Engram, LIMe and the K = 0 backbone widened to TIDE K = 4's parameter
# count, each with the same data, tokenizer, seed and 3.0M-token budget as models/tide-k0 and
# models/tide-k4 (train/run_all.sh), plus the 12-layer TIDE K = 4 of the NULL-level question.
# Runs the jobs two at a time: PARALLEL=1 runs them one after another.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${CORPUS:-.cache/corpus}
py="$(scripts/venv.sh scripts/requirements.txt train/requirements.txt)"
[ -f "$CORPUS/train.txt" ] || "$py" train/corpus.py --out "$CORPUS"
[ -f "$CORPUS/train.bin" ] || "$py" train/tokenize_corpus.py --corpus "$CORPUS"
jobs_max=${PARALLEL:-2}
for v in engram lime k0-wide k4-deep; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do sleep 5; done
  "$py" train/train.py --config "train/configs/$v.json" --out "models/tide-$v" \
    --corpus "$CORPUS" --threads 1 > "$CORPUS/train-$v.log" 2>&1 &
  echo "training tide-$v (log: $CORPUS/train-$v.log)"
done
wait
for v in engram lime k0-wide k4-deep; do
  [ -f "models/tide-$v/train_metrics.json" ] || { echo "tide-$v failed: see $CORPUS/train-$v.log" >&2; exit 1; }
done
