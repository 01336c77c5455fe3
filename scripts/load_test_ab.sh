#!/usr/bin/env bash
# The API load test (scripts/load_test.py) on two builds of tide, taking turns, so that a
# change to the server's scheduling is measured against what it replaces in one sitting.
# Usage: bash scripts/load_test_ab.sh A_BIN A_LABEL B_BIN B_LABEL OUT.jsonl [ROUNDS] [MODEL]
# Each line of OUT: one level of one run, with "build" (the label) and "round" added.
# LOAD_TEST_ARGS adds arguments to every run (e.g. "--mix prefix --levels 1,16").
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/runtime-dir.sh
a_bin=$1 a_label=$2 b_bin=$3 b_label=$4 out=$5 rounds=${6:-2}
py="$(scripts/venv.sh scripts/requirements.txt scripts/requirements-api.txt)"
model="${7:-$(scripts/fetch-smollm2.sh)}"
: > "$out"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for round in $(seq "$rounds"); do
    for which in a b; do
        bin=$a_bin label=$a_label
        [[ $which == b ]] && bin=$b_bin label=$b_label
        echo "[load-ab] round $round: $label" >&2
        # shellcheck disable=SC2086 # split on purpose: several arguments
        "$py" scripts/load_test.py "$bin" "$model" --out "$tmp" ${LOAD_TEST_ARGS:-} >&2
        python3 -c "
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(json.dumps({'build': sys.argv[2], 'round': int(sys.argv[3]), **r}))" \
            "$tmp" "$label" "$round" >> "$out"
    done
done
