#!/usr/bin/env bash
# The browser at real sizes (issue 35, docs/benchmarks.md): SmolLM2's GGUF and synthetic GGUFs
# at Qwen2.5-0.5B (llama.cpp's Q4_K_M mix, ~0.4 GB) and Qwen2.5-3B (Q8_0, ~3.3 GB) shapes with
# random weights (scripts/make_synthetic_gguf.py: no such file can be downloaded here), loaded
# on WebGPU in headless Chromium (SwiftShader): load time, wasm heap, first token, cold and from
# the browser's store, and a resumed download (tests/web/bench_large.mjs).
# Writes docs/bench-data/browser_large.jsonl (or $1). MODELS=a.gguf,b.gguf picks others.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pages-setup.sh
dir=.cache/big
mkdir -p "$dir"
py="$(scripts/venv.sh scripts/requirements.txt scripts/requirements-llamacpp.txt)"
[[ -s .cache/vocabs/ggml-vocab-qwen2.gguf ]] || bash scripts/fetch-vocabs.sh >&2
small="$dir/synthetic-qwen2.5-0.5b.Q4_K_M.gguf"
large="$dir/synthetic-qwen2.5-3b.Q8_0.gguf"
[[ -s "$small" ]] || "$py" scripts/make_synthetic_gguf.py qwen2.5-0.5b q4_k_m "$small"
[[ -s "$large" ]] || "$py" scripts/make_synthetic_gguf.py qwen2.5-3b q8_0 "$large"
TIDE_BIN="$PWD/target/release/tide" CHROMIUM="$chrome" MODELS="${MODELS:-$model,$small,$large}" \
    OUT="${1:-docs/bench-data/browser_large.jsonl}" node tests/web/bench_large.mjs
