#!/usr/bin/env bash
# Quality against size of compressed memory tables (docs/results.md, "Compressed memory
# tables"): the K = 4 model's tables in full precision, then f16, 8-bit and 4-bit rows, SVD at
# 25, 50, 70 and 90% rank reduction (f16 factors, to see the truncation alone) and SVD 50% +
# 4-bit, each evaluated by `tide eval` on the held-out split: perplexity, cross-entropy of the
# rarest frequency decile, and the tables' bytes. Raw data: docs/bench-data/memory_quality.jsonl.
#
# The committed model keeps only its 4-bit rows, so the full-precision tables come from
# training it again with its own recipe (train/train.py, train/configs/k4.json; ~45 min on 2
# cores): the script checks that the retrained 4-bit export equals models/tide-k4 byte for
# byte, so the f32 tables are exactly the committed model's before quantisation.
# Usage: bash scripts/quality_vs_size.sh [WINDOWS]   (held-out windows of 256 tokens; default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
windows="${1:-100}"
source scripts/runtime-dir.sh
cargo build --release --quiet
tide=target/release/tide
py="$(scripts/venv.sh scripts/requirements.txt train/requirements.txt)"
corpus=.cache/corpus
retrain=.cache/tide-k4-retrain
[[ -s $corpus/train.txt ]] || "$py" train/corpus.py --out "$corpus"
[[ -s $corpus/train.bin ]] || "$py" train/tokenize_corpus.py --corpus "$corpus"
[[ -s $corpus/tide-k4-retrain.pt ]] ||
    "$py" train/train.py --config train/configs/k4.json --out "$retrain" --corpus "$corpus"
if cmp -s "$retrain/model.safetensors" models/tide-k4/model.safetensors; then
    same=true
else
    same=false
    echo "[quality] note: the retrained model differs from models/tide-k4" >&2
fi
full=.cache/tide-k4-f32
if [[ ! -s $full/model.safetensors ]]; then
    (cd train && "$py" - "$PWD/../$corpus" "$PWD/../$full" <<'EOF'
import sys, os, torch, numpy as np
import export
from model import ModelConfig, TideLM
corpus, out = sys.argv[1], sys.argv[2]
ck = torch.load(os.path.join(corpus, "tide-k4-retrain.pt"), weights_only=False)
m = TideLM(ModelConfig(**ck["config"]["model"]))
m.load_state_dict(ck["state"])
export.export(m, os.path.join(corpus, "tokenizer.json"), np.load(os.path.join(corpus, "counts.npy")),
              out, rows="f32")
EOF
    )
fi
out=docs/bench-data/memory_quality.jsonl
: > "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { # label, compress arguments (none: the f32 tables as they are)
    local label=$1; shift
    local dir=$full
    if [[ $# -gt 0 ]]; then
        dir="$tmp/$(echo "$label" | tr -c 'a-z0-9' _)"
        $tide compress --model "$full" "$@" --out "$dir" > /dev/null 2>&1
    fi
    $tide eval --model "$dir" --data "$corpus/heldout.txt" --windows "$windows" --json 2> /dev/null |
        "$py" -c "
import json, os, sys
e = json.load(sys.stdin)
rep = os.path.join('$dir', 'compress_report.json')
r = json.load(open(rep)) if os.path.exists(rep) else None
print(json.dumps({'variant': '$label', 'retrained_equals_committed': '$same' == 'true',
                  'table_bytes': r['bytes_after'] if r else r, 'report': r, 'eval': e}))" >> "$out"
    echo "[quality] $label done" >&2
}
run "f32 (full precision)"
run "f16" --bits 16
run "8-bit (q8_0)" --bits 8
run "4-bit (q4_1)" --bits 4
run "SVD 25% rank reduction" --bits 16 --svd-ratio 0.75
run "SVD 50% rank reduction" --bits 16 --svd-ratio 0.5
run "SVD 70% rank reduction" --bits 16 --svd-ratio 0.3
run "SVD 90% rank reduction" --bits 16 --svd-ratio 0.1
run "SVD 50% + 4-bit" --bits 4 --svd-ratio 0.5
echo "[quality] wrote $out" >&2
