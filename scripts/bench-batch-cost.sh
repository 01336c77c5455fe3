#!/usr/bin/env bash
# What a batch of N tokens costs in one step against one decode token, on SmolLM2 (the
# groundwork for continuous batching, issue 15: concurrent streams share a step only if a step
# of N tokens costs much less than N steps of one). The batch runs through the prefill kernels
# (TIDE_TOKEN_BY_TOKEN=0: even a short prompt is one batch); `tide bench` reports its tokens/s
# next to the decode speed of single-token steps, in the same process. Raw data:
# docs/bench-data/batch_cost.jsonl. Usage: bash scripts/bench-batch-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/runtime-dir.sh
cargo build --release --quiet
model="$(scripts/fetch-smollm2.sh)"
out=docs/bench-data/batch_cost.jsonl
: > "$out"
for round in 1 2; do
    for n in 2 4 8 16 32 64; do
        TIDE_TOKEN_BY_TOKEN=0 target/release/tide bench --backend gpu --model "$model" --prompt-len "$n" \
            --gen 16 --reps 3 --json 2> /dev/null |
            python3 -c "import json,sys; j=json.load(sys.stdin); pp=j['prefill_tokens_per_s']; tg=j['decode_tokens_per_s']; print(json.dumps({'round': $round, 'batch': $n, 'batch_ms': 1e3 * $n / pp, 'decode_token_ms': 1e3 / tg, 'batch_tokens_per_s': pp, 'decode_tokens_per_s': tg}))" \
            >> "$out"
    done
done
echo "[batch-cost] wrote $out" >&2
