#!/usr/bin/env bash
# Build the library for the browser into web/pkg (tide_gpu.js + tide_gpu_bg.wasm), which the
# pages in web/ import; `tide serve` then serves them. Then the threaded build into
# web/pkg-threads (feature `threads`: wasm atomics and shared memory, the CPU kernels' worker
# pool through wasm-bindgen-rayon), which the page's worker takes when the page is
# cross-origin isolated (tide serve sends COOP/COEP). Shared-memory wasm needs std rebuilt with
# atomics: the nightly toolchain with rust-src (installed here when missing).
# TIDE_WEB_THREADS=0 skips the threaded build (the pages then run single-threaded everywhere).
# Last, the npm package folder target/npm/tide-gpu (scripts/npm-package.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/web-tools.sh
cargo build --lib --release --target wasm32-unknown-unknown
wasm-bindgen --target web --out-dir web/pkg target/wasm32-unknown-unknown/release/tide_gpu.wasm
ls -l web/pkg/tide_gpu_bg.wasm >&2
if [[ "${TIDE_WEB_THREADS:-1}" == 0 ]]; then
    rm -rf web/pkg-threads
    bash scripts/npm-package.sh
    exit 0
fi
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup component list --toolchain nightly --installed | grep -q '^rust-src' \
    || rustup component add rust-src --toolchain nightly
rustup target list --toolchain nightly --installed | grep -qx wasm32-unknown-unknown \
    || rustup target add wasm32-unknown-unknown --toolchain nightly
# RUSTFLAGS replaces .cargo/config.toml's wasm32 flags: simd128 is named again. The memory is
# shared and imported (so that the workers can be handed it), up to 4 GiB, and the TLS symbols
# exported for the workers' start (wasm-bindgen's threads support).
link="--shared-memory --import-memory --max-memory=4294967296 --export=__wasm_init_tls"
link+=" --export=__tls_size --export=__tls_align --export=__tls_base"
flags="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128"
for l in $link; do flags+=" -C link-arg=$l"; done
RUSTFLAGS="$flags" \
    cargo +nightly build --lib --release --target wasm32-unknown-unknown --features threads \
    -Z build-std=panic_abort,std --target-dir target/wasm-threads
wasm-bindgen --target web --out-dir web/pkg-threads \
    target/wasm-threads/wasm32-unknown-unknown/release/tide_gpu.wasm
ls -l web/pkg-threads/tide_gpu_bg.wasm >&2
bash scripts/npm-package.sh
