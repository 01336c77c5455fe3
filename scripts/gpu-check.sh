#!/usr/bin/env bash
# One short GPU check for a machine lent for a few minutes (issue 34): decode and prefill on
# SmolLM2-135M's shapes and storage types (Q4_1, and llama.cpp's Q4_K_M mix), on the GPU and on
# the fast CPU backend, plus the adapter's description; one JSON object per line.
#
# The model is `synthetic:smollm2-135m[-q4_k_m]`: SmolLM2's real shapes and types with seeded
# random weights, built by the binary itself (speed does not depend on the values, and the real
# file, 98 MB, is more than can be carried). Two steps:
#
#   bash scripts/gpu-check.sh --build     # here: a stripped release binary in target/gpu-check/
#                                         # (checked to be under 64 MiB, to carry)
#   bash scripts/gpu-check.sh [OUT_DIR]   # there (or here): runs it, writes OUT_DIR/gpu-check.jsonl
#                                         # and devices.json (default: $OUT, else target/gpu-check)
#
# With the device tool: run "bash scripts/gpu-check.sh" with carry ["target/gpu-check"].
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/gpu-check/tide
if [[ "${1:-}" == "--build" ]]; then
    cargo build --release -q --bin tide
    mkdir -p target/gpu-check
    strip -o "$bin" target/release/tide
    size=$(stat -c %s "$bin")
    echo "[gpu-check] $bin: $((size / 1048576)) MiB" >&2
    if (( size > 64 * 1048576 )); then
        echo "[gpu-check] the binary is over 64 MiB: it cannot be carried" >&2
        exit 1
    fi
    exit 0
fi
[[ -x "$bin" ]] || { echo "[gpu-check] $bin is missing: run scripts/gpu-check.sh --build first" >&2; exit 1; }
out="${1:-${OUT:-target/gpu-check}}"
mkdir -p "$out"
log="$out/gpu-check.jsonl"
: > "$log"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
tag() { python3 -c 'import json,sys; t=sys.argv[1]
for l in sys.stdin:
    l=l.strip()
    if l.startswith("{"):
        print(json.dumps(dict(json.loads(l), run=t)))' "$1"; }
# The adapters as wgpu sees them (names, types, limits), beside the figures.
"$bin" devices > "$out/devices.json" 2>&1 || echo "[gpu-check] tide devices failed" >&2
if command -v nvidia-smi >/dev/null; then
    name="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
    echo "{\"run\": \"nvidia-smi\", \"gpu\": \"$name\"}" >> "$log"
fi
for m in smollm2-135m smollm2-135m-q4_k_m; do
    for b in gpu cpu; do
        echo "[gpu-check] $m on $b" >&2
        timeout 240 "$bin" bench --model "synthetic:$m" --backend "$b" --prompt-len 128 --gen 128 \
            --reps 3 --json 2>>"$out/gpu-check.log" | tag "$b $m" >> "$log" \
            || echo "{\"run\": \"$b $m\", \"error\": \"failed or timed out, see gpu-check.log\"}" >> "$log"
    done
done
cat "$log"
