#!/usr/bin/env bash
# Make models/smollm2-tide from a train/smollm2_memory.py run (models/README.md gives the run's
# command): its f16 tables cut by `tide compress` to the shipped form, the run's metrics beside
# them, the golden fixture the Rust tests compare with (train/golden.py memory), and the study's
# charts. A run still in progress is exported from its checkpoint as it stands
# (--export-only) and its train_metrics.json says so.
# Usage: bash scripts/smollm2_tide_ship.sh RUN_DIR [CHECKPOINT]
#   COMPRESS="--bits 4 --svd-ratio 0.5"   how the shipped tables are stored (the quality table
#                                          in docs/results.md picks it)
set -euo pipefail
cd "$(dirname "$0")/.."
run="${1:?usage: scripts/smollm2_tide_ship.sh RUN_DIR [CHECKPOINT]}"
ckpt="${2:-$run/checkpoint.pt}"
compress=(${COMPRESS:---bits 4 --svd-ratio 0.5})
source scripts/smollm2-tide-env.sh
dest=models/smollm2-tide
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [[ -s $run/metrics.json ]]; then
    src=$run
    cp "$run/metrics.json" "$tmp/train_metrics.json"
else
    echo "[ship] $run has not finished: exporting its checkpoint as it stands" >&2
    "$py" train/smollm2_memory.py --backbone "$hf" --corpus .cache/corpus --out "$tmp/export" \
        --checkpoint "$ckpt" --export-only >&2
    src=$tmp/export
    python3 - "$src/progress.json" "$tmp/train_metrics.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
p["status"] = (f"in progress: exported from the checkpoint after {p['train_tokens_seen']} of "
               f"{p['args']['tokens']} training tokens")
json.dump(p, open(sys.argv[2], "w"), indent=1)
EOF
fi
$tide compress --model "$backbone" --memory "$src/memory-f16.safetensors" "${compress[@]}" \
    --out "$tmp/compressed" >&2
cp "$tmp/compressed/memory.safetensors" "$dest/memory.safetensors"
chmod 644 "$dest/memory.safetensors"
# The report names its inputs by their temporary paths: name them by what they are instead.
python3 - "$tmp/compressed/compress_report.json" "$dest/compress_report.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
r["memory"] = "memory-f16.safetensors of the training run (its tables as trained)"
r["model"] = "SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-smollm2.sh)"
json.dump(r, open(sys.argv[2], "w"), indent=1)
EOF
cp "$tmp/train_metrics.json" "$dest/train_metrics.json"
echo "[ship] $dest: $(du -h "$dest/memory.safetensors" | cut -f1) of memory (${compress[*]})" >&2
(cd train && "$py" golden.py memory "$hf" "../$dest" ../tests/fixtures/smollm2-tide_golden.json) >&2
# The charts, with the fine-tuning control and the quality table where they exist.
extra=()
[[ -s docs/results/smollm2_finetune.json ]] && extra+=(--finetune docs/results/smollm2_finetune.json)
[[ -s docs/bench-data/smollm2_tide_quality.jsonl ]] &&
    extra+=(--quality docs/bench-data/smollm2_tide_quality.jsonl)
python3 scripts/smollm2_tide_plots.py "$dest/train_metrics.json" docs/results "${extra[@]}" >&2
