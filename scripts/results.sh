#!/usr/bin/env bash
# Regenerate the figures of docs/results.md from the committed models (docs/results/*.json and
# the SVG plots). Needs the held-out split: train/corpus.py + train/tokenize_corpus.py write it
# to .cache/corpus (train/run_all.sh does both). Takes ~20 minutes on lavapipe, which is why the
# runtime evaluates an evenly spaced sample of held-out windows (PyTorch's full-split figures are
# in models/*/train_metrics.json).
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${CORPUS:-.cache/corpus}
OUT=docs/results
mkdir -p "$OUT"
py="$(scripts/venv.sh scripts/requirements.txt)"
[ -f "$CORPUS/heldout.txt" ] || "$py" train/corpus.py --out "$CORPUS"
source scripts/runtime-dir.sh
cargo build --release -q
tide=target/release/tide
for k in 0 4; do
    echo "[results] eval tide-k$k on the held-out split" >&2
    $tide eval --model models/tide-k$k --data "$CORPUS/heldout.txt" --windows "${EVAL_WINDOWS:-120}" \
        --json > "$OUT/eval_k$k.json"
done
echo "[results] layer-wise ablation of tide-k4 (${ABLATE_WINDOWS:=40} held-out windows)" >&2
$tide ablate --model models/tide-k4 --data "$CORPUS/heldout.txt" --windows "$ABLATE_WINDOWS" \
    --json > "$OUT/ablate_k4.json"
echo "[results] router weights of tide-k4 on one sentence (docs/results.md's heatmap)" >&2
$tide inspect --model models/tide-k4 --svg "$OUT/inspect_example.svg" \
    "In the beginning was the Word, and the Word was with God" > /dev/null
echo "[results] decode cost of memory on SmolLM2's shape (K = 0, 8, 24), alternating rounds" >&2
$tide bench --backend gpu --model synthetic:smollm2-135m --memory-overhead 8,24 --gen 32 --reps 5 --json \
    > "$OUT/overhead_smollm2.json"
echo "[results] the same with TIDE's router as a kernel of its own" >&2
TIDE_ROUTER=separate $tide bench --backend gpu --model synthetic:smollm2-135m --memory-overhead 8,24 --gen 32 \
    --reps 5 --json > "$OUT/overhead_smollm2_router_separate.json"
echo "[results] decode cost of the committed model's memory (K = 0 vs its K = 4 backbone)" >&2
$tide bench --backend gpu --model models/tide-k0 --memory-overhead 4 --gen 128 --reps 5 --json \
    > "$OUT/overhead_tiny.json"
"$py" scripts/results_plots.py "$OUT"
