#!/usr/bin/env bash
# How long `tide serve` takes to build the kernels of every shared-step size before it says
# ready (docs/benchmarks.md, "tide serve under load"): SmolLM2 at --parallel 16 (steps of 2 to
# 10 tokens), once with an empty Mesa shader cache and once with the cache that run filled.
# Usage: bash scripts/bench-serve-start.sh [OUT.jsonl]   (default docs/bench-data/serve_start.jsonl)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/runtime-dir.sh
cargo build --release --quiet
out=${1:-docs/bench-data/serve_start.jsonl}
model="$(scripts/fetch-smollm2.sh)"
cache=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$cache" "$log"' EXIT
: > "$out"
for shader_cache in empty filled; do
    port=$((20000 + RANDOM % 20000))
    MESA_SHADER_CACHE_DIR=$cache target/release/tide serve --model "$model" --parallel 16 \
        --ctx 512 --port "$port" > "$log" 2>&1 &
    server=$!
    for _ in $(seq 600); do grep -q "tokens built" "$log" && break; sleep 0.5; done
    kill $server; wait $server 2>/dev/null || true
    python3 -c "
import json, re, sys
m = re.search(r'kernels for steps of 2 to ([0-9]+) tokens built \(([0-9.]+)s\)', open(sys.argv[1]).read())
print(json.dumps({'mesa_shader_cache': '$shader_cache', 'parallel': 16, 'largest_step': int(m[1]), 'seconds': float(m[2])}))" \
        "$log" >> "$out"
done
cat "$out"
