#!/usr/bin/env bash
# Time to first token in the browser (WebGPU on SwiftShader) with the model's kernels compiled
# while its weights download against compiled after, cold and cached, over loopback and over a
# capped link (tests/web/bench_warm.mjs; MBPS, default 20 MB/s). Writes
# docs/bench-data/browser_warm.jsonl (or $1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pages-setup.sh
TIDE_BIN="$PWD/target/release/tide" SMOLLM2="$model" CHROMIUM="$chrome" \
    OUT="${1:-docs/bench-data/browser_warm.jsonl}" node tests/web/bench_warm.mjs
