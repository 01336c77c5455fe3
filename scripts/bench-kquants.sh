#!/usr/bin/env bash
# K-quant speed (docs/benchmarks.md, issue 14), in one run on one machine:
#  1. tide on SmolLM2-135M in Q4_1 (the published file) and re-quantised by llama.cpp's own
#     quantiser to Q4_K_M, Q5_K_M and Q6_K (scripts/requantize_llamacpp.py), pp128 / tg64;
#  2. llama.cpp (llama-cpp-python, CPU, 2 threads) on Q4_1 and Q4_K_M, same convention;
#  3. the kernel bench's ffn_down (576 x 1536, the one SmolLM2 shape whose rows are whole
#     K-quant super-blocks) in each layer type: weights read per second, decode and prefill.
# Needs llama-cpp-python (compiles llama.cpp, ~8 minutes the first time). Writes
# docs/bench-data/kquants.jsonl (one JSON object per line, each tagged with its file or type).
set -euo pipefail
cd "$(dirname "$0")/.."
q41="$(scripts/fetch-smollm2.sh)"
dir="$(dirname "$q41")"
py="$(scripts/venv.sh scripts/requirements.txt scripts/requirements-llamacpp.txt)"
for t in q4_k_m q5_k_m q6_k; do
    f="$dir/SmolLM2-135M-Instruct.${t^^}.gguf"
    [[ -s "$f" ]] || "$py" scripts/requantize_llamacpp.py "$t" >&2
done
source scripts/runtime-dir.sh
cargo build --release -q --bin tide --bench kernels
out=docs/bench-data/kquants.jsonl
: > "$out"
tag() { "$py" -c 'import json,sys; t=sys.argv[1]
for l in sys.stdin:
    l=l.strip()
    if l.startswith("{"):
        j=json.loads(l); j["file"]=t
        if isinstance(j.get("model"), str): j["model"]=j["model"].rsplit("/", 1)[-1]
        print(json.dumps(j))' "$1"; }
for t in Q4_1 Q4_K_M Q5_K_M Q6_K; do
    f="$dir/SmolLM2-135M-Instruct.$t.gguf"
    echo "[bench] tide $t" >&2
    ./target/release/tide bench --backend gpu --model "$f" --prompt-len 128 --gen 64 --reps 3 --json | tag "tide $t" >> "$out"
done
for t in Q4_1 Q4_K_M; do
    echo "[bench] llama.cpp $t" >&2
    "$py" scripts/bench_llamacpp.py "$dir/SmolLM2-135M-Instruct.$t.gguf" --prompt-len 128 --gen 64 \
        --threads 2 --reps 3 | tag "llama.cpp $t" >> "$out"
done
for t in Q4_1 Q5_0 Q4_K Q5_K Q6_K; do
    echo "[bench] kernels ffn_down $t" >&2
    TIDE_BENCH_KERNELS=ffn_down TIDE_BENCH_DTYPE=$t cargo bench -q --bench kernels | tag "kernel $t" >> "$out"
done
cat "$out"
