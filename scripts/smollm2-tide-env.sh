# Sourced by the SmolLM2 memory scripts (quality_smollm2_tide.sh, smollm2_tide_ship.sh): the tide
# binary ($tide), the venv's Python with train/'s packages ($py), SmolLM2's GGUF ($backbone) and
# its f32 Hugging Face folder ($hf), built or fetched when missing.
source scripts/runtime-dir.sh
cargo build --release --quiet --bin tide
tide=target/release/tide
py="$(scripts/venv.sh scripts/requirements.txt train/requirements.txt)"
backbone="$(scripts/fetch-smollm2.sh)"
hf="$(scripts/smollm2-hf.sh)"
