#!/usr/bin/env bash
# The API under load (docs/benchmarks.md, "tide serve under load"): scripts/load_test.py drives
# `tide serve` on loopback with the official openai client at 1, 4 and 16 concurrent streams
# (16 greedy requests of mixed lengths, each checked against the same request run alone) on
# SmolLM2-135M-Instruct. Raw data: docs/bench-data/load_test.jsonl.
# Usage: bash scripts/bench-serve.sh [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/runtime-dir.sh
cargo build --release --quiet
py="$(scripts/venv.sh scripts/requirements.txt scripts/requirements-api.txt)"
model="${1:-$(scripts/fetch-smollm2.sh)}"
mkdir -p docs/bench-data
"$py" scripts/load_test.py target/release/tide "$model" --out docs/bench-data/load_test.jsonl
