#!/usr/bin/env bash
# Quality against size of the SmolLM2 memory's tables (docs/results.md, "TIDE on SmolLM2-135M"):
# the tables as trained (memory-f16.safetensors, which train/smollm2_memory.py writes beside its
# output: 226 MB, too big to commit, so give its path), then 8-bit and 4-bit rows, SVD at 25,
# 50 and 70% rank reduction (f16 factors: the truncation alone), SVD 50% + 4-bit and SVD 50% +
# 8-bit, each cut by `tide compress` from the f16 tables and evaluated in PyTorch
# (train/eval_memory.py: perplexity, CE by frequency decile) on the first TOKENS held-out tokens,
# with the backbone alone as the baseline. Raw data: docs/bench-data/smollm2_tide_quality.jsonl.
# Usage: bash scripts/quality_smollm2_tide.sh MEMORY_F16 [TOKENS]   (default 65536)
set -euo pipefail
cd "$(dirname "$0")/.."
full="${1:?usage: scripts/quality_smollm2_tide.sh MEMORY_F16 [TOKENS]}"
tokens="${2:-65536}"
source scripts/smollm2-tide-env.sh
corpus=.cache/corpus
[[ -s $corpus/heldout.txt ]] || "$py" train/corpus.py --out "$corpus"
out=docs/bench-data/smollm2_tide_quality.jsonl
: > "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { # label, compress arguments (none: the f16 tables as they are; "backbone": no memory)
    local label=$1; shift
    local mem="$full" made="the f16 tables as trained"
    if [[ ${1:-} == backbone ]]; then
        mem="" made="none"
    elif [[ $# -gt 0 ]]; then
        made="tide compress --memory memory-f16.safetensors $*"
        local dir="$tmp/$(echo "$label" | tr -c 'a-z0-9' _)"
        $tide compress --model "$backbone" --memory "$full" "$@" --out "$dir" > /dev/null 2>&1
        mem=$dir/memory.safetensors
    fi
    (cd train && "$py" eval_memory.py --backbone "$hf" ${mem:+--memory "$mem"} \
        --counts-from "$full" --data "../$corpus/heldout.txt" --tokens "$tokens") |
        "$py" -c "
import json, re, struct, sys
e = json.load(sys.stdin)
e.pop('memory'); e.pop('data')
size = 0
if '$mem':
    # The tables' bytes as stored (rows, and SVD bases), from the file's own header.
    with open('$mem', 'rb') as f:
        h = json.loads(f.read(struct.unpack('<Q', f.read(8))[0]))
    size = sum(v['data_offsets'][1] - v['data_offsets'][0] for k, v in h.items()
               if re.fullmatch(r'tide\.memory\.\d+\.(rows|basis)', k))
print(json.dumps({'variant': '$label', 'memory': '$made', 'table_bytes': size, 'eval': e}))" \
        >> "$out"
    echo "[quality] $label done" >&2
}
run "backbone alone" backbone
run "f16 (as trained)"
run "8-bit (q8_0)" --bits 8
run "4-bit (q4_1)" --bits 4
run "SVD 25% rank reduction" --bits 16 --svd-ratio 0.75
run "SVD 50% rank reduction" --bits 16 --svd-ratio 0.5
run "SVD 70% rank reduction" --bits 16 --svd-ratio 0.3
run "SVD 50% + 8-bit" --bits 8 --svd-ratio 0.5
run "SVD 50% + 4-bit" --bits 4 --svd-ratio 0.5
echo "[quality] wrote $out" >&2
