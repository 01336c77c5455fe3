#!/usr/bin/env bash
# The fast CPU backend against llama.cpp's CPU build (issue 34; docs/benchmarks.md), in one run
# on one machine, on SmolLM2-135M-Instruct in Q4_1 (the published file) and Q4_K_M (re-quantised
# by llama.cpp's own quantiser, scripts/requantize_llamacpp.py): pp128 / tg128 (prefill of a
# 128-token prompt, then 128 decoded tokens; median of 3 after a warm-up), 2 threads and 1
# thread on both sides; tide's peak RSS as `tide bench` reports it, llama.cpp's from
# scripts/peak_rss_llamacpp.py. The CPU reference (--backend reference) and lavapipe
# (--backend gpu) on Q4_1 for scale.
# Needs llama-cpp-python (compiles llama.cpp, ~8 minutes the first time). Writes
# docs/bench-data/fastcpu_vs_llamacpp.jsonl (one JSON object per line, tagged by "run").
set -euo pipefail
cd "$(dirname "$0")/.."
q41="$(scripts/fetch-smollm2.sh)"
dir="$(dirname "$q41")"
py="$(scripts/venv.sh scripts/requirements.txt scripts/requirements-llamacpp.txt)"
f="$dir/SmolLM2-135M-Instruct.Q4_K_M.gguf"
[[ -s "$f" ]] || "$py" scripts/requantize_llamacpp.py q4_k_m >&2
source scripts/runtime-dir.sh
cargo build --release -q --bin tide
out=docs/bench-data/fastcpu_vs_llamacpp.jsonl
: > "$out"
tag() { "$py" -c 'import json,sys; t=sys.argv[1]
for l in sys.stdin:
    l=l.strip()
    if l.startswith("{"):
        j=json.loads(l); j["run"]=t
        if isinstance(j.get("model"), str): j["model"]=j["model"].rsplit("/", 1)[-1]
        print(json.dumps(j))' "$1"; }
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "{\"run\": \"machine\", \"cpu\": \"$cpu\", \"cores\": $(nproc)}" >> "$out"
for t in Q4_1 Q4_K_M; do
    m="$dir/SmolLM2-135M-Instruct.$t.gguf"
    for n in 2 1; do
        echo "[bench] tide cpu $t, $n threads" >&2
        ./target/release/tide bench --model "$m" --backend cpu --threads "$n" --prompt-len 128 \
            --gen 128 --reps 3 --json | tag "tide cpu $t ${n}t" >> "$out"
        echo "[bench] llama.cpp $t, $n threads" >&2
        "$py" scripts/bench_llamacpp.py "$m" --prompt-len 128 --gen 128 --threads "$n" --reps 3 \
            | tag "llama.cpp $t ${n}t" >> "$out"
    done
    echo "[bench] llama.cpp $t peak RSS" >&2
    "$py" scripts/peak_rss_llamacpp.py "$m" | tag "llama.cpp $t rss" >> "$out"
done
for b in reference gpu; do
    echo "[bench] tide $b Q4_1" >&2
    ./target/release/tide bench --model "$q41" --backend "$b" --prompt-len 128 --gen 128 --reps 3 \
        --json | tag "tide $b Q4_1 2t" >> "$out"
done
cat "$out"
