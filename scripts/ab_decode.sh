#!/usr/bin/env bash
# The decode benchmark on two commits in one sitting, taking turns, so that a change that
# should not move speed (a refactor) is measured against what it replaces.
# Usage: bash scripts/ab_decode.sh REF_A REF_B OUT.jsonl [ROUNDS] [MODEL]
# Each ref is checked out into .cache/ab/REF (a git worktree) and built into the repo's target
# folder (the dependencies are shared: only tide-gpu is compiled again); its binary is kept as
# .cache/ab/tide-REF. Then `tide bench` (pp128 / tg128, one repetition after its warm-up) runs
# A, B, A, B, ... ROUNDS times (default 5) on MODEL (default: SmolLM2-135M Q4_1). Each line of
# OUT: one run's `tide bench --json`, with "build" (the ref) and "round" added.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/runtime-dir.sh
a=$1 b=$2 out=$3 rounds=${4:-5}
model="${5:-$(scripts/fetch-smollm2.sh)}"
mkdir -p .cache/ab
bin_of() {
    local ref=$1 dir=".cache/ab/$1"
    if [[ ! -x ".cache/ab/tide-$ref" ]]; then
        rm -rf "$dir"
        git worktree prune
        git worktree add --detach "$dir" "$ref" >&2
        cargo build --release --manifest-path "$dir/Cargo.toml" --target-dir target >&2
        cp target/release/tide ".cache/ab/tide-$ref"
        git worktree remove --force "$dir"
    fi
    echo ".cache/ab/tide-$ref"
}
a_bin=$(bin_of "$a")
b_bin=$(bin_of "$b")
# Leave target/release/tide as the work tree's build.
cargo build --release -q
: > "$out"
for round in $(seq "$rounds"); do
    for ref in "$a" "$b"; do
        bin=$a_bin
        [[ $ref == "$b" ]] && bin=$b_bin
        echo "[ab-decode] round $round: $ref" >&2
        "$bin" bench --backend gpu --model "$model" --prompt-len 128 --gen 128 --reps 1 --json 2>/dev/null |
            python3 -c "
import json, sys
for line in sys.stdin:
    print(json.dumps({'build': sys.argv[1], 'round': int(sys.argv[2]), **json.loads(line)}))" \
                "$ref" "$round" >> "$out"
    done
done
python3 - "$out" "$a" "$b" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for ref in sys.argv[2:]:
    d = [r["decode_tokens_per_s"] for r in rows if r["build"] == ref]
    p = [r["prefill_tokens_per_s"] for r in rows if r["build"] == ref]
    print(f"{ref}: decode median {statistics.median(d):.2f} tok/s (runs {min(d):.2f}-{max(d):.2f}), "
          f"prefill median {statistics.median(p):.1f}")
PY
