# Sourced by build-web.sh and test-web.sh: the wasm32 target and a wasm-bindgen-cli whose
# version equals the wasm-bindgen crate's in Cargo.lock (the two must match exactly).
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
wasm_bindgen_version="$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')"
if [[ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)" != "$wasm_bindgen_version" ]]; then
    echo "[web] installing wasm-bindgen-cli $wasm_bindgen_version (it must equal the crate)" >&2
    cargo install -q wasm-bindgen-cli --version "$wasm_bindgen_version"
fi
