#!/usr/bin/env bash
# The browser's CPU path against wllama 3.8.1 (llama.cpp compiled to wasm) in one headless
# Chromium session, both single-threaded and then both threaded on every core, cross-origin
# isolated (issue 34; docs/benchmarks.md): SmolLM2-135M in Q4_1 and
# in llama.cpp's Q4_K_M (scripts/requantize_llamacpp.py). wllama comes from npm
# (bench/wllama/package-lock.json). Writes docs/bench-data/browser_cpu_vs_wllama.jsonl (or $1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pages-setup.sh
dir="$(dirname "$model")"
k="$dir/SmolLM2-135M-Instruct.Q4_K_M.gguf"
if [[ ! -s "$k" ]]; then
    py="$(scripts/venv.sh scripts/requirements.txt scripts/requirements-llamacpp.txt)"
    "$py" scripts/requantize_llamacpp.py q4_k_m >&2
fi
(cd bench/wllama && npm ci --no-audit --no-fund --loglevel=error)
TIDE_BIN="$PWD/target/release/tide" CHROMIUM="$chrome" MODELS="$model,$k" \
    OUT="${1:-docs/bench-data/browser_cpu_vs_wllama.jsonl}" node bench/wllama/bench.mjs
