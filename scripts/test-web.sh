#!/usr/bin/env bash
# The browser tests: tests/web_kernels.rs compiled to wasm32 and run in headless Chromium's
# WebGPU, and tests/fastcpu.rs (the fast CPU kernels: portable and simd128) in the same browser
# (wasm-bindgen-test-runner driving Debian's chromium through chromedriver).
# Needs: chromium and chromium-driver (apt; .ci/run installs them), rustup; this script adds the
# wasm32 target and wasm-bindgen-cli at the version Cargo.lock pins for wasm-bindgen.
# CHROMIUM=/path/to/chromium picks another browser binary.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/web-tools.sh
chrome="${CHROMIUM:-$(command -v chromium || true)}"
driver="$(command -v chromedriver || true)"
if [[ -z "$chrome" || -z "$driver" ]]; then
    echo "[test-web] chromium and chromedriver are needed: apt-get install chromium chromium-driver" >&2
    exit 1
fi
# WebGPU is behind a flag in headless Chromium; the runner adds headless and no-sandbox itself.
cfg="$(mktemp -d)"
trap 'rm -rf "$cfg"' EXIT
cat >"$cfg/webdriver.json" <<JSON
{"goog:chromeOptions": {"binary": "$chrome", "args": ["--enable-unsafe-webgpu",
 "--disable-background-networking", "--disable-component-update", "--disable-sync",
 "--no-first-run", "--disable-quic"]}}
JSON
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$cfg/webdriver.json"
export CHROMEDRIVER="$driver"
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}"
cargo test --release --target wasm32-unknown-unknown --test web_kernels --test fastcpu "$@"
