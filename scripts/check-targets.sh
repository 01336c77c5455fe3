#!/usr/bin/env bash
# `cargo check` of the library and the tide binary for the other desktop platforms, so that
# code behind their cfgs (wgpu's Metal and DX12 backends, the file maps, the TLS setup) keeps
# compiling: x86_64-pc-windows-gnu (DX12, Vulkan) with every feature, which needs MinGW's gcc
# for ring's C (apt-get install gcc-mingw-w64-x86-64); aarch64-apple-darwin (Metal) without
# the `https` feature, since ring's C needs Apple's SDK headers, which only a Mac has.
# Warnings are errors. Adds the Rust targets itself.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add x86_64-pc-windows-gnu aarch64-apple-darwin >/dev/null
command -v x86_64-w64-mingw32-gcc >/dev/null ||
    { echo "[targets] x86_64-w64-mingw32-gcc is needed: apt-get install gcc-mingw-w64-x86-64" >&2; exit 1; }
export RUSTFLAGS="-D warnings"
echo "[targets] x86_64-pc-windows-gnu" >&2
cargo check --release --quiet --target x86_64-pc-windows-gnu --lib --bins
echo "[targets] aarch64-apple-darwin (without https)" >&2
cargo check --release --quiet --target aarch64-apple-darwin --no-default-features --lib --bins
echo "[targets] both compile" >&2
