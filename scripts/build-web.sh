#!/usr/bin/env bash
# Build the library for the browser into web/pkg (tide_gpu.js + tide_gpu_bg.wasm), which the
# pages in web/ import; `tide serve` then serves them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/web-tools.sh
cargo build --lib --release --target wasm32-unknown-unknown
wasm-bindgen --target web --out-dir web/pkg target/wasm32-unknown-unknown/release/tide_gpu.wasm
ls -l web/pkg/tide_gpu_bg.wasm >&2
