# Sourced by test-pages.sh and bench-web.sh: what driving the pages needs. Sets chrome (the
# browser binary) and model (the SmolLM2 GGUF); builds the tide binary and web/pkg; installs
# playwright-core from tests/web/package-lock.json; gives wgpu a runtime dir.
chrome="${CHROMIUM:-$(command -v chromium || true)}"
[[ -n "$chrome" ]] || { echo "[pages] chromium is needed: apt-get install chromium" >&2; exit 1; }
command -v npm >/dev/null || { echo "[pages] node and npm are needed" >&2; exit 1; }
model="$(scripts/fetch-smollm2.sh)"
cargo build --release --bin tide
bash scripts/build-web.sh
(cd tests/web && npm ci --no-audit --no-fund --loglevel=error)
source scripts/runtime-dir.sh
