#!/usr/bin/env bash
# Browser against native on the same device, in one run (tests/web/bench.mjs): decode and
# prefill tok/s of the page's WebGPU and of native wgpu on Chromium's SwiftShader Vulkan
# driver, load time and time to first token cold and cached, and the wasm CPU reference
# against the native one. Writes docs/bench-data/browser_vs_native.jsonl (or $1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pages-setup.sh
icd="${SWIFTSHADER_ICD:-$(dirname "$(readlink -f "$chrome")")/vk_swiftshader_icd.json}"
[[ -f "$icd" ]] || icd="$(find /usr/lib -name vk_swiftshader_icd.json 2>/dev/null | head -1)"
[[ -f "$icd" ]] || { echo "[bench-web] no vk_swiftshader_icd.json beside chromium" >&2; exit 1; }
TIDE_BIN="$PWD/target/release/tide" SMOLLM2="$model" CHROMIUM="$chrome" SWIFTSHADER_ICD="$icd" \
    OUT="${1:-docs/bench-data/browser_vs_native.jsonl}" node tests/web/bench.mjs
