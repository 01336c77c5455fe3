#!/usr/bin/env bash
# Memory tables at scale (docs/benchmarks.md, "Memory tables at scale"): on SmolLM2-135M with
# the synthetic K = 24 memory of scripts/make_synthetic_memory.py (SmolLM2's shape, ~425 MB of
# Q4_1 rows, token counts from the training split), all in one sitting:
#   1. the row cache's hit rate against its size on the held-out split, cold and warmed;
#   2. decode speed: K = 0, streamed without a cache, through the warmed cache, resident on the
#      GPU, and SVD tables at r = d/2, taking turns token by token in one process;
#   3. the memory file over HTTP Range (tide serve on loopback) against the local file: time to
#      first token, decode speed, bytes fetched per token, cold and warmed;
#   4. peak resident memory and GPU memory (wgpu-hal's allocations for buffers and textures)
#      without the K = 24 memory, with it streamed, and with it resident on the GPU;
#   5. what any cache policy could reach on the held-out split (Belady's optimal offline cache)
#      against LRU, warmed, with the most frequent training tokens pinned, or prefetching each
#      token's most frequent successors in the training split; and the share of first
#      sightings no demand cache can serve (scripts/cache_bound.py);
#   6. the warm-up over HTTP (tide serve on loopback) by --memory-warm-factor: bytes read and
#      seconds to fill the default cache (10% of the tables);
#   7. prefill speed and GPU memory of the K = 24 model at prefill batches of 64 (its
#      default, which keeps a step's decoded rows within 4 MB) and 128.
# Raw data goes to docs/bench-data/memory_*.json(l). Needs .cache/corpus (train/corpus.py).
# Usage: bash scripts/bench-memory.sh [STEP ...]   (default: 1 2 3 4)
set -euo pipefail
steps=" ${*:-1 2 3 4} "
want() { [[ $steps == *" $1 "* ]]; }
cd "$(dirname "$0")/.."
source scripts/runtime-dir.sh
cargo build --release --quiet
tide=target/release/tide
py="$(scripts/venv.sh scripts/requirements.txt)"
model="$(realpath --relative-to=. "$(scripts/fetch-smollm2.sh)")"  # relative: it goes into the raw data
scripts/smollm2-hf.sh > /dev/null  # its tokenizer.json
corpus=.cache/corpus
[[ -s $corpus/train.txt ]] || "$py" train/corpus.py --out "$corpus"
mem=.cache/synthetic-k24
[[ -s $mem/memory.safetensors ]] ||
    "$py" scripts/make_synthetic_memory.py --out "$mem" --counts-from "$corpus/train.txt" \
        --tokenizer "$(dirname "$model")/hf-f32/tokenizer.json"
svd=.cache/synthetic-k24-svd50
[[ -s $svd/memory.safetensors ]] ||
    $tide compress --model "$model" --memory "$mem/memory.safetensors" --bits 4 --svd-ratio 0.5 \
        --out "$svd"
out=docs/bench-data
mkdir -p "$out"

if want 1; then
echo "[bench-memory] 1. cache sweep" >&2
$tide bench --backend gpu --model "$model" --memory "$mem/memory.safetensors" --cache-sweep "$corpus/heldout.txt" \
    --cache-shares 0.005,0.01,0.02,0.05,0.1,0.2 --json > "$out/memory_cache_sweep.json"
fi

if want 2; then
echo "[bench-memory] 2. decode by row path" >&2
$tide bench --backend gpu --model "$model" --memory "$mem/memory.safetensors" --memory-paths \
    --svd-memory "$svd/memory.safetensors" --gen 64 --reps 6 --json > "$out/memory_paths.json"
fi

if want 3; then
echo "[bench-memory] 3. HTTP Range against the local file" >&2
port=$((20000 + RANDOM % 20000))
$tide serve --model "$mem" --port "$port" > /dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/models.json" > /dev/null && break; sleep 0.2; done
url="http://127.0.0.1:$port/models/synthetic-k24/memory.safetensors"
prompt="The King James Bible and the works of Shakespeare and Milton are"
: > "$out/memory_http.jsonl"
for round in 1 2; do
    for src in file http; do
        for warm in cold warmed; do
            m="$mem/memory.safetensors"; [[ $src == http ]] && m="$url"
            flag=(--memory-warm-wait); [[ $warm == cold ]] && flag=(--no-memory-warm)
            t0=$(date +%s.%N)
            $tide generate --model "$model" --memory "$m" "${flag[@]}" --temperature 0 \
                --max-tokens 64 --json "$prompt" 2> /dev/null |
                python3 -c "import json,sys,time; j=json.load(sys.stdin); print(json.dumps({'round': $round, 'source': '$src', 'cache': '$warm', 'process_s': time.time() - $t0, 'time_to_first_token_s': j['time_to_first_token_s'], 'decode_tokens_per_s': j['decode_tokens_per_s'], 'tokens': len(j['prompt_tokens']) + len(j['tokens']), 'memory': j['memory']}))" \
                >> "$out/memory_http.jsonl"
        done
    done
done
kill $server; trap - EXIT
fi

if want 4; then
echo "[bench-memory] 4. peak resident memory" >&2
: > "$out/memory_rss.jsonl"
# none-64: the backbone at the prefill batch the K = 24 model runs with (64, to keep its
# decoded rows within 4 MB), so that the two differ by the memory alone. svd: the SVD tables
# at r = d/2 streamed, their f16 bases resident.
for m in none none-64 "$mem/memory.safetensors" resident svd; do
    args=(); [[ $m != none* ]] && args=(--memory "$mem/memory.safetensors")
    [[ $m == none-64 ]] && args=(--batch 64)
    [[ $m == resident ]] && args+=(--memory-resident)
    [[ $m == svd ]] && args=(--memory "$svd/memory.safetensors")
    $tide bench --backend gpu --model "$model" "${args[@]}" --prompt-len 16 --gen 32 --reps 1 --json 2> /dev/null |
        python3 -c "import json,sys; j=json.load(sys.stdin); print(json.dumps({'memory_file': '$m', 'prefill_batch': j['prefill_batch'], 'peak_rss_mb': j['peak_rss_mb'], 'gpu_memory_bytes': j['gpu_memory_bytes'], 'decode_tokens_per_s': j['decode_tokens_per_s'], 'memory': j['memory']}))" \
        >> "$out/memory_rss.jsonl"
done
fi

if want 5; then
echo "[bench-memory] 5. the bound on any cache policy" >&2
"$py" scripts/cache_bound.py "$(dirname "$model")/hf-f32/tokenizer.json" "$corpus/heldout.txt" \
    "$mem/memory.safetensors" 0.05,0.1,0.2 "$corpus/train.txt" > "$out/memory_cache_bound.jsonl"
fi
if want 7; then
echo "[bench-memory] 7. prefill by batch size with the K = 24 memory" >&2
: > "$out/memory_prefill_batch.jsonl"
for round in 1 2; do
    for b in 64 128; do
        $tide bench --backend gpu --model "$model" --memory "$mem/memory.safetensors" --batch "$b" \
            --prompt-len 128 --gen 16 --reps 3 --json 2> /dev/null |
            python3 -c "import json,sys; j=json.load(sys.stdin); print(json.dumps({'round': $round, 'batch': $b, 'prefill_batch': j['prefill_batch'], 'prefill_tokens_per_s': j['prefill_tokens_per_s'], 'decode_tokens_per_s': j['decode_tokens_per_s'], 'gpu_memory_bytes': j['gpu_memory_bytes']}))" \
            >> "$out/memory_prefill_batch.jsonl"
    done
done
fi

if want 6; then
echo "[bench-memory] 6. the warm-up over HTTP by read factor" >&2
port=$((20000 + RANDOM % 20000))
$tide serve --model "$mem" --port "$port" --no-api > /dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/models.json" > /dev/null && break; sleep 0.2; done
url="http://127.0.0.1:$port/models/synthetic-k24/memory.safetensors"
: > "$out/memory_warm_http.jsonl"
for round in 1 2; do
    for f in default 1 2 4 10; do
        # The line `tide` prints once the cache is full: "... warmed with the N most frequent
        # tokens (X MB read in Ys)". default: no factor, the steps' 64 KB gap.
        bound=(--memory-warm-factor "$f"); [[ $f == default ]] && bound=()
        $tide generate --model "$model" --memory "$url" "${bound[@]}" --memory-warm-wait \
            --temperature 0 --max-tokens 1 "The" 2>&1 > /dev/null |
            python3 -c "
import json, re, sys
m = re.search(r'cache: ([0-9.]+) MB, warmed with the ([0-9]+) most frequent tokens \(([0-9.]+) MB read in ([0-9.]+)s\)', sys.stdin.read())
print(json.dumps({'round': $round, 'factor': '$f', 'cache_mb': float(m[1]), 'tokens': int(m[2]), 'read_mb': float(m[3]), 'seconds': float(m[4])}))" \
            >> "$out/memory_warm_http.jsonl"
    done
done
kill $server; trap - EXIT
fi
echo "[bench-memory] done: $out/memory_*" >&2
