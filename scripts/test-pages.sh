#!/usr/bin/env bash
# The pages in headless Chromium (tests/web/pages.test.mjs, node's test runner with
# playwright-core driving Debian's chromium) against `tide serve`. Builds the tide binary and
# web/pkg first; screenshots go to target/web-screenshots (CI keeps them as artifacts).
# Needs chromium (apt), node and npm (preinstalled here), the SmolLM2 GGUF (fetched).
set -euo pipefail
cd "$(dirname "$0")/.."
chrome="${CHROMIUM:-$(command -v chromium || true)}"
[[ -n "$chrome" ]] || { echo "[test-pages] chromium is needed: apt-get install chromium" >&2; exit 1; }
command -v npm >/dev/null || { echo "[test-pages] node and npm are needed" >&2; exit 1; }
model="$(scripts/fetch-smollm2.sh)"
cargo build --release --bin tide
bash scripts/build-web.sh
(cd tests/web && npm ci --no-audit --no-fund --loglevel=error)
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}/tide-xdg-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
TIDE_BIN="$PWD/target/release/tide" SMOLLM2="$model" CHROMIUM="$chrome" \
    SHOTS="$PWD/target/web-screenshots" \
    node --test --test-concurrency=1 --test-reporter=spec tests/web/pages.test.mjs "$@"
