#!/usr/bin/env bash
# Time to first token with and without the prefix cache (docs/benchmarks.md, issue 36):
# SmolLM2-135M on the fast CPU backend behind `tide serve`, a ~1,000-token system prompt with 8
# different questions -> docs/bench-data/prefix_cache.jsonl.
# Usage: bash scripts/bench-prefix-cache.sh [MODEL] [BACKEND]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/runtime-dir.sh
cargo build --release --quiet
py="$(scripts/venv.sh scripts/requirements.txt)"
model="$(realpath --relative-to=. "${1:-$(scripts/fetch-smollm2.sh)}")"
mkdir -p docs/bench-data
"$py" scripts/bench_prefix_cache.py target/release/tide "$model" --backend "${2:-cpu}" \
    --out docs/bench-data/prefix_cache.jsonl
