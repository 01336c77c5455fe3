#!/usr/bin/env bash
# Issue 16's table (docs/results.md, "Variants at equal budget"): the runtime's held-out sample
# for each trained variant, their decode speed, GPU buffers and host tables in one
# `tide bench --variants` run, then scripts/variants_table.py. Needs the held-out split
# (train/run_all.sh writes it to .cache/corpus) and the models (train/run_variants.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${CORPUS:-.cache/corpus}
OUT=docs/results
py="$(scripts/venv.sh scripts/requirements.txt)"
[ -f "$CORPUS/heldout.txt" ] || "$py" train/corpus.py --out "$CORPUS"
source scripts/runtime-dir.sh
cargo build --release -q
tide=target/release/tide
models=()
for m in tide-k0 tide-k4 tide-engram tide-lime tide-k0-wide tide-k4-deep; do
    [ -f "models/$m/config.json" ] || { echo "[variants] models/$m missing: skipped" >&2; continue; }
    models+=("models/$m")
    # tide-k0 and tide-k4 are evaluated by scripts/results.sh (eval_k0.json, eval_k4.json).
    case $m in tide-k0|tide-k4) continue ;; esac
    [ -n "${EVAL_AGAIN:-}" ] || [ ! -f "$OUT/eval_$m.json" ] || continue
    echo "[variants] eval $m on ${EVAL_WINDOWS:=120} held-out windows" >&2
    $tide eval --model "models/$m" --data "$CORPUS/heldout.txt" --windows "$EVAL_WINDOWS" \
        --json > "$OUT/eval_$m.json"
done
echo "[variants] decode side by side: ${models[*]}" >&2
$tide bench --backend gpu --variants "$(IFS=,; echo "${models[*]}")" --gen "${GEN:-128}" --reps "${REPS:-5}" \
    --json > "$OUT/variants_bench.json"
"$py" scripts/variants_table.py "$OUT"
