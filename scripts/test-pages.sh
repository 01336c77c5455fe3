#!/usr/bin/env bash
# The pages in headless Chromium (tests/web/pages.test.mjs, and the downloads' store, resume
# and checks in tests/web/downloads.test.mjs, the OpenAI API through the serving core in
# tests/web/api.test.mjs, the npm package in tests/web/package.test.mjs;
# node's test runner with playwright-core driving
# Debian's chromium) against `tide serve`. Builds the tide binary and
# web/pkg first; screenshots go to target/web-screenshots (CI keeps them as artifacts).
# Needs chromium (apt), node and npm (preinstalled here), the SmolLM2 GGUF (fetched). Arguments go
# to node before the file: e.g. --test-name-pattern=README runs the tests so named.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pages-setup.sh
# A tiny model with Qwen2.5's template for the browser's tool calls (made once, as tests/api's).
tools="${TIDE_CACHE:-$PWD/.cache}/tool-models"
if [[ ! -s "$tools/qwen25-tools.gguf" ]]; then
    "$(scripts/venv.sh scripts/requirements.txt)" scripts/make_tool_models.py --out "$tools"
fi
TIDE_BIN="$PWD/target/release/tide" SMOLLM2="$model" CHROMIUM="$chrome" TOOL_MODEL="$tools/qwen25-tools.gguf" \
    SHOTS="$PWD/target/web-screenshots" \
    node --test --test-concurrency=1 --test-reporter=spec "$@" tests/web/pages.test.mjs tests/web/downloads.test.mjs \
    tests/web/api.test.mjs \
    tests/web/package.test.mjs
