#!/usr/bin/env bash
# The speed comparison of docs/benchmarks.md, in one run on one machine: tide on the GPU adapter
# wgpu finds (lavapipe without a GPU) and llama.cpp on the CPU, same GGUF, pp128 / tg128.
# Writes docs/bench-data/bench.jsonl (one JSON object per line: the raw data of the first table of
# docs/benchmarks.md, committed with it) and prints it. OUT=FILE writes elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
model="$(scripts/fetch-smollm2.sh)"
source scripts/runtime-dir.sh
cargo build --release -q
out="${OUT:-docs/bench-data/bench.jsonl}"
: > "$out"
# --backend gpu: the adapter even where it is a software one (auto takes the fast CPU there).
./target/release/tide bench --model "$model" --backend gpu --prompt-len 128 --gen 128 --reps 5 --json >> "$out"
# Without subgroup operations (the prefill kernels' fetch sharing; docs/benchmarks.md).
TIDE_SUBGROUPS=off ./target/release/tide bench --model "$model" --backend gpu --prompt-len 128 --gen 128 --reps 3 --json >> "$out"
# The same with weights in storage buffers (CPU adapters default to textures; docs/benchmarks.md).
TIDE_WEIGHTS=buffer ./target/release/tide bench --model "$model" --backend gpu --prompt-len 128 --gen 128 --reps 3 --json >> "$out"
# The CPU reference, and the fast CPU backend (scripts/bench-cpu.sh compares it with llama.cpp).
./target/release/tide bench --model "$model" --backend reference --prompt-len 128 --gen 128 --reps 1 --json >> "$out"
./target/release/tide bench --model "$model" --backend cpu --prompt-len 128 --gen 128 --reps 3 --json >> "$out"
py="$(scripts/venv.sh scripts/requirements-llamacpp.txt)"
"$py" scripts/bench_llamacpp.py "$model" --prompt-len 128 --gen 128 --threads 2 --reps 3 >> "$out"
cargo bench -q --bench kernels >> "$out"
cat "$out"
