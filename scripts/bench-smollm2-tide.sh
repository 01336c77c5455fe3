#!/usr/bin/env bash
# The memory model on SmolLM2 (models/smollm2-tide) against its backbone alone, in one sitting
# (docs/benchmarks.md, "TIDE on SmolLM2-135M"):
#   1. native decode on this machine's adapter (lavapipe here): the backbone, the memory streamed
#      from the mmapped file through the warmed row cache, and resident on the GPU, taking turns
#      token by token in one process (tide bench --memory-paths);
#   2. native time to first token: `tide generate --max-tokens 1` of each, taking turns, from the
#      process start (load, kernels, cache warm-up, prefill) and from the prompt;
#   3. native bytes fetched per token once warmed (a 128-token generation of a held-out text);
#   4. the browser (headless Chromium's WebGPU, tests/web/bench_memory.mjs): decode, time to first
#      token and bytes per token of the demo's streamed memory against the backbone's page;
#   5. where the memory's decode time goes: each kernel timed alone (tide bench --profile), the
#      backbone and the memory model taking turns, two rounds.
# Raw data: docs/bench-data/smollm2_tide_*.json(l). Usage: bash scripts/bench-smollm2-tide.sh
# [STEP ...] (default: 1 2 3 4 5); MODEL=DIR measures another memory model folder.
set -euo pipefail
steps=" ${*:-1 2 3 4 5} "
want() { [[ $steps == *" $1 "* ]]; }
cd "$(dirname "$0")/.."
source scripts/runtime-dir.sh
cargo build --release --quiet --bin tide
tide=target/release/tide
mem="${MODEL:-models/smollm2-tide}"
backbone="$(realpath --relative-to=. "$(scripts/fetch-smollm2.sh)")"
out=docs/bench-data
mkdir -p "$out"

if want 1; then
    echo "[bench-smollm2-tide] 1. native decode by row path" >&2
    $tide bench --backend gpu --model "$mem" --memory-paths --gen 64 --reps 8 --json > "$out/smollm2_tide_decode.json"
fi

if want 2; then
    echo "[bench-smollm2-tide] 2. native time to first token" >&2
    : > "$out/smollm2_tide_ttft.jsonl"
    for round in 1 2 3 4 5; do
        for m in "$backbone" "$mem"; do
            t0=$(date +%s.%N)
            $tide generate --model "$m" --temperature 0 --max-tokens 1 --json \
                "The King James Bible and the works of Shakespeare and Milton are" 2> /dev/null |
                python3 -c "import json,sys,time; j=json.load(sys.stdin); print(json.dumps({'round': $round, 'model': '$m', 'process_to_first_token_s': time.time() - $t0, 'time_to_first_token_s': j['time_to_first_token_s'], 'prompt_tokens': len(j['prompt_tokens'])}))" \
                >> "$out/smollm2_tide_ttft.jsonl"
        done
    done
fi

if want 3; then
    echo "[bench-smollm2-tide] 3. native bytes per token, warmed" >&2
    text="$(head -c 600 tests/fixtures/heldout_sample.txt)"
    $tide generate --model "$mem" --temperature 0 --max-tokens 128 --json "$text" 2> /dev/null |
        python3 -c "import json,sys; j=json.load(sys.stdin); n=len(j['prompt_tokens'])+len(j['tokens']); m=j['memory']; print(json.dumps({'tokens': n, 'memory': m, 'bytes_per_token': m['bytes_fetched']/n, 'rows_fetched_per_token': m['misses']/n, 'hit_rate': m['hits']/m['rows_requested']}))" \
        > "$out/smollm2_tide_bytes.json"
    cat "$out/smollm2_tide_bytes.json" >&2
fi

if want 4; then
    echo "[bench-smollm2-tide] 4. the browser" >&2
    source scripts/pages-setup.sh
    TIDE_BIN="$PWD/$tide" CHROMIUM="$chrome" MEMORY_MODEL="$(realpath "$mem")" BACKBONE="$(realpath "$backbone")" \
        OUT="$out/smollm2_tide_browser.jsonl" node tests/web/bench_memory.mjs
fi

if want 5; then
    echo "[bench-smollm2-tide] 5. kernel profile" >&2
    : > "$out/smollm2_tide_profile.jsonl"
    for round in 1 2; do
        for m in "$backbone" "$mem"; do
            $tide bench --backend gpu --model "$m" --profile --gen 32 --reps 2 --prompt-len 16 --json 2> /dev/null |
                python3 -c "import json,sys; j=json.load(sys.stdin); print(json.dumps({'round': $round, 'model': '$m', **j}))" \
                >> "$out/smollm2_tide_profile.jsonl"
        done
    done
fi

python3 - "$out" <<'EOF'
import json, os, statistics, sys
out = sys.argv[1]
p = os.path.join(out, "smollm2_tide_decode.json")
if os.path.exists(p):
    d = json.load(open(p))
    for r in d["memory_paths"]:
        print(f"native {r['variant']:<45} {r['decode_tokens_per_s']:7.2f} tok/s "
              f"{r['overhead_vs_backbone'] * 100:+.1f}%")
p = os.path.join(out, "smollm2_tide_ttft.jsonl")
if os.path.exists(p):
    rows = [json.loads(l) for l in open(p)]
    for key in ("process_to_first_token_s", "time_to_first_token_s"):
        med = {m: statistics.median(r[key] for r in rows if r["model"] == m)
               for m in dict.fromkeys(r["model"] for r in rows)}
        print(f"native {key}: " + ", ".join(f"{m} {v:.3f} s" for m, v in med.items()))
EOF
