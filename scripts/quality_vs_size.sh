#!/usr/bin/env bash
# Quality against size of compressed memory tables (docs/results.md, "Compressed memory
# tables"): the committed K = 4 model's tables as trained (f16, kept beside the model as
# models/tide-k4/memory-f16.safetensors by train/train.py), then 8-bit and 4-bit rows, SVD at
# 25, 50, 70 and 90% rank reduction (f16 factors, to see the truncation alone) and SVD 50% +
# 4-bit, each made by `tide compress` from the f16 tables and evaluated by `tide eval` on the
# held-out split: perplexity, cross-entropy of the rarest frequency decile, and the tables'
# bytes; and the committed model as it ships (its 4-bit rows, quantised by train/export.py from
# the f32 tables). Raw data: docs/bench-data/memory_quality.jsonl.
# Usage: bash scripts/quality_vs_size.sh [WINDOWS]   (held-out windows of 256 tokens; default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
windows="${1:-100}"
source scripts/runtime-dir.sh
cargo build --release --quiet
tide=target/release/tide
py="$(scripts/venv.sh scripts/requirements.txt)"
corpus=.cache/corpus
[[ -s $corpus/heldout.txt ]] || "$py" train/corpus.py --out "$corpus"
model=models/tide-k4
full=$model/memory-f16.safetensors
out=docs/bench-data/memory_quality.jsonl
: > "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { # label, memory file ("" for the model as it ships), compress arguments (none: as is)
    local label=$1 mem=$2; shift 2
    local dir="" made="$mem"
    if [[ $# -gt 0 ]]; then
        # What the raw data says of a temporary file: how it was made.
        made="tide compress --memory $mem $*"
        dir="$tmp/$(echo "$label" | tr -c 'a-z0-9' _)"
        $tide compress --model "$model" --memory "$mem" "$@" --out "$dir" > /dev/null 2>&1
        mem=$dir/memory.safetensors
    fi
    $tide eval --model "$model" ${mem:+--memory "$mem"} --data "$corpus/heldout.txt" \
        --windows "$windows" --json 2> /dev/null |
        "$py" -c "
import json, os, re, struct, sys
e = json.load(sys.stdin)
rep = os.path.join('$dir', 'compress_report.json')
r = json.load(open(rep)) if '$dir' and os.path.exists(rep) else None
# The tables' bytes as stored (rows, and SVD bases), from the file's own header.
with open('$mem' or '$model/model.safetensors', 'rb') as f:
    h = json.loads(f.read(struct.unpack('<Q', f.read(8))[0]))
size = sum(v['data_offsets'][1] - v['data_offsets'][0] for k, v in h.items()
           if re.fullmatch(r'tide\.memory\.\d+\.(rows|basis)', k))
print(json.dumps({'variant': '$label', 'memory': '$made' or None, 'table_bytes': size,
                  'report': r, 'eval': e}))" >> "$out"
    echo "[quality] $label done" >&2
}
run "f16 (as trained)" "$full"
run "8-bit (q8_0)" "$full" --bits 8
run "4-bit (q4_1)" "$full" --bits 4
run "4-bit, the committed model" ""
run "SVD 25% rank reduction" "$full" --bits 16 --svd-ratio 0.75
run "SVD 50% rank reduction" "$full" --bits 16 --svd-ratio 0.5
run "SVD 70% rank reduction" "$full" --bits 16 --svd-ratio 0.3
run "SVD 90% rank reduction" "$full" --bits 16 --svd-ratio 0.1
run "SVD 50% + 4-bit" "$full" --bits 4 --svd-ratio 0.5
echo "[quality] wrote $out" >&2
