#!/usr/bin/env bash
# One decode step of 1, 2, 4 and 8 tokens through the layer's four projections at SmolLM2's
# shapes (benches/kernels.rs, TIDE_BENCH_MODE=tokens: matvec_rows' multi-token entry against
# the single-token kernel), three runs: docs/bench-data/decode_tokens.jsonl, one line a run.
# Usage: bash scripts/bench-decode-tokens.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/runtime-dir.sh
out=docs/bench-data/decode_tokens.jsonl
: > "$out"
for run in 1 2 3; do
    TIDE_BENCH_MODE=tokens TIDE_BENCH_KERNELS=qkv,attn_output,ffn_gate_up,ffn_down \
        cargo bench --quiet --bench kernels 2> /dev/null | tr -d '\n' >> "$out"
    echo >> "$out"
done
echo "[decode-tokens] wrote $out" >&2
