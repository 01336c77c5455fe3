#!/usr/bin/env bash
# Cold and warm start of README's first command: wall time to 32 generated tokens, with an empty
# Mesa shader cache (as on a fresh machine or in CI) and then with the cache that run left, for
# the embedded default model and for SmolLM2. Also the peak resident memory of each run.
# Usage: scripts/cold_start.sh [TIDE_BINARY] [LABEL]  (default: target/release/tide, "tide")
# Prints one JSON object per run.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/tide}"
label="${2:-tide}"
[[ -x "$bin" ]] || cargo build --release -q
smollm2="$(scripts/fetch-smollm2.sh)"
source scripts/runtime-dir.sh

run() { # name, cache state, cache dir, model args...
    local name="$1" state="$2" cache="$3"
    shift 3
    local log
    log="$(mktemp)"
    MESA_SHADER_CACHE_DIR="$cache" /usr/bin/time -f '%e %M' -o "$log.time" \
        "$bin" generate "$@" --max-tokens 32 --temperature 0 "In the beginning God created" \
        >/dev/null 2>"$log"
    read -r secs kb <"$log.time"
    local ready
    ready="$(sed -n 's/.*ready in \([0-9.]*\)s.*/\1/p' "$log" | tail -1)"
    printf '{"binary":"%s","model":"%s","cache":"%s","wall_s":%s,"backend_ready_s":%s,"peak_rss_mb":%.1f}\n' \
        "$label" "$name" "$state" "$secs" "${ready:-null}" "$(awk -v k="$kb" 'BEGIN { print k / 1000 }')"
    rm -f "$log" "$log.time"
}

for m in default smollm2; do
    args=()
    [[ $m == smollm2 ]] && args=(--model "$smollm2")
    cache="$(mktemp -d)"
    run "$m" cold "$cache" "${args[@]}"
    run "$m" warm "$cache" "${args[@]}"
    rm -rf "$cache"
done
