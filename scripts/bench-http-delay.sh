#!/usr/bin/env bash
# Remote memory tables over a link with a long round trip (docs/benchmarks.md, "Over a slow
# link"): `tide serve` on loopback behind scripts/delay_proxy.py (DELAY_MS each way), and
# `tide generate --memory URL` on the synthetic K = 24 model (scripts/bench-memory.sh makes
# it), cold (`--no-memory-warm`) and warmed (`--memory-warm-wait`), for one or more builds of
# tide taking turns in each round. Each line of OUT: one run, with the build's label, the
# link the client measured (round trip, bandwidth, read-through gap) and the row counters.
# Usage: bash scripts/bench-http-delay.sh OUT.jsonl DELAY_MS ROUNDS LABEL BIN [LABEL BIN ...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/runtime-dir.sh
out=$1 delay=$2 rounds=$3
shift 3
builds=("$@")
model="$(realpath --relative-to=. "$(scripts/fetch-smollm2.sh)")"
mem=.cache/synthetic-k24
[[ -s $mem/memory.safetensors ]] || { echo "no $mem: run scripts/bench-memory.sh 1 first" >&2; exit 1; }
port=$((20000 + RANDOM % 20000))
proxy=$((port + 1))
target/release/tide serve --model "$mem" --port "$port" --no-api > /dev/null 2>&1 &
server=$!
python3 scripts/delay_proxy.py "$proxy" "$port" "$delay" > /dev/null &
relay=$!
err=$(mktemp)
trap 'kill $server $relay 2>/dev/null || true; rm -f "$err"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/models.json" > /dev/null && break; sleep 0.2; done
url="http://127.0.0.1:$proxy/models/synthetic-k24/memory.safetensors"
prompt="The King James Bible and the works of Shakespeare and Milton are"
: > "$out"
for round in $(seq "$rounds"); do
    for ((i = 0; i < ${#builds[@]}; i += 2)); do
        label=${builds[i]} bin=${builds[i + 1]}
        for warm in cold warmed; do
            flag=(--memory-warm-wait); [[ $warm == cold ]] && flag=(--no-memory-warm)
            echo "[http-delay] round $round, $label, $warm" >&2
            t0=$(date +%s.%N)
            "$bin" generate --model "$model" --memory "$url" "${flag[@]}" --temperature 0 \
                --max-tokens 64 --json "$prompt" 2> "$err" |
                python3 -c "
import json, re, sys, time
j = json.load(sys.stdin)
m = re.search(r'round trip ([0-9.]+) ms, ([0-9.]+) MB/s: a request reads through gaps of up to ([0-9]+) KB', open(sys.argv[1]).read())
print(json.dumps({'round': $round, 'build': sys.argv[2], 'delay_ms_each_way': $delay, 'cache': '$warm',
    'process_s': time.time() - $t0, 'time_to_first_token_s': j['time_to_first_token_s'],
    'decode_tokens_per_s': j['decode_tokens_per_s'], 'tokens': len(j['prompt_tokens']) + len(j['tokens']),
    'link': {'round_trip_ms': float(m[1]), 'mb_per_s': float(m[2]), 'gap_kb': int(m[3])} if m else None,
    'memory': j['memory']}))" "$err" "$label" >> "$out"
        done
    done
done
