#!/usr/bin/env bash
# Continuous batching and the API under load (docs/benchmarks.md, "tide serve under load"), on
# SmolLM2-135M-Instruct:
#  1. `tide bench --seqs 1,2,4,8,16`: that many sequences decoded together in the engine (one
#     step for all their tokens), aggregate tokens/s against one sequence, the counts taking
#     turns in each of 3 rounds -> docs/bench-data/decode_seqs.json;
#  2. scripts/load_test.py: `tide serve --parallel 16` on loopback driven by the official
#     openai client at 1, 4 and 16 concurrent streams (16 greedy requests of mixed lengths,
#     each checked against the same request run alone) -> docs/bench-data/load_test.jsonl.
# Usage: bash scripts/bench-serve.sh [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/runtime-dir.sh
cargo build --release --quiet
py="$(scripts/venv.sh scripts/requirements.txt scripts/requirements-api.txt)"
model="${1:-$(scripts/fetch-smollm2.sh)}"
mkdir -p docs/bench-data
echo "[bench-serve] tide bench --seqs" >&2
target/release/tide bench --backend gpu --model "$model" --seqs 1,2,4,8,16 --prompt-len 16 --gen 32 \
    --reps 3 --ctx 256 --json > docs/bench-data/decode_seqs.json
# The model's path as given, relative to the repository (it is written into the raw data).
python3 - docs/bench-data/decode_seqs.json <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1]))
d["model"] = os.path.relpath(d["model"]) if os.path.isabs(d["model"]) else d["model"]
json.dump(d, open(sys.argv[1], "w"))
PY
echo "[bench-serve] load test" >&2
"$py" scripts/load_test.py target/release/tide "$model" --out docs/bench-data/load_test.jsonl
