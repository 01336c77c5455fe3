#!/usr/bin/env bash
# SmolLM2's Q4_1 GGUF (scripts/fetch-smollm2.sh) converted to an f32 Hugging Face folder
# (config.json, tokenizer.json, model.safetensors) beside it, once; prints the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
model="$(scripts/fetch-smollm2.sh)"
hf="$(dirname "$model")/hf-f32"
if [[ ! -s "$hf/model.safetensors" ]]; then
    echo "[smollm2-hf] converting $model to safetensors in $hf" >&2
    py="$(scripts/venv.sh scripts/requirements.txt)"
    rm -rf "$hf.tmp"
    "$py" scripts/gguf_to_safetensors.py "$model" "$hf.tmp" --dtype f32 >&2
    rm -rf "$hf" && mv "$hf.tmp" "$hf"
fi
echo "$hf"
