#!/usr/bin/env bash
# Fetch real tokenizer vocabularies for the tokenizer tests: llama.cpp's vocab-only GGUF files of
# Llama 3 (BPE, pre-tokenizer llama-bpe), Qwen2 (BPE, qwen2) and Llama 2 (SentencePiece), with
# llama.cpp's own test strings and token ids beside them (.inp/.out).
#
# They ship in the source package of llama-cpp-python (pinned with its sha256 in
# scripts/requirements-vocabs.txt, MIT). This script has pip download that package (about 77 MB)
# and extracts only those files into ${TIDE_CACHE:-<repo root>/.cache}/vocabs/.
#
# Idempotent: nothing is downloaded when the files are there. Progress goes to stderr; stdout
# carries only the absolute path of the folder.
set -euo pipefail

NAMES=(llama-bpe qwen2 llama-spm)

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"
cache="${TIDE_CACHE:-$repo_root/.cache}"
mkdir -p "$cache/vocabs"
dest="$(cd "$cache/vocabs" && pwd)"

log() { printf '[fetch-vocabs] %s\n' "$*" >&2; }

complete() {
    for n in "${NAMES[@]}"; do
        for ext in gguf gguf.inp gguf.out; do
            [[ -s "$dest/ggml-vocab-$n.$ext" ]] || return 1
        done
    done
}

if complete; then
    log "already present: $dest"
    printf '%s\n' "$dest"
    exit 0
fi

PY="$("$script_dir/venv.sh" scripts/requirements-sdist.txt)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/fetch-vocabs.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

log "downloading the llama-cpp-python source package (about 77 MB)"
"$PY" -m pip download --no-deps --no-binary :all: --no-build-isolation --disable-pip-version-check \
    -q -d "$tmp" -r "$repo_root/scripts/requirements-vocabs.txt" >&2
sdist="$(ls "$tmp"/*.tar.gz 2>/dev/null | head -n 1 || true)"
[[ -n "$sdist" ]] || { log "error: pip did not save the source package in $tmp"; exit 1; }

"$PY" - "$sdist" "$dest" "${NAMES[@]}" <<'PYEOF'
import os
import sys
import tarfile

sdist, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
wanted = {f"ggml-vocab-{n}.{ext}" for n in names for ext in ("gguf", "gguf.inp", "gguf.out")}
with tarfile.open(sdist) as tf:
    for m in tf.getmembers():
        base = os.path.basename(m.name)
        if m.isfile() and base in wanted and "/models/" in m.name:
            part = os.path.join(dest, f".{base}.partial")
            with tf.extractfile(m) as src, open(part, "wb") as dst:
                dst.write(src.read())
            os.replace(part, os.path.join(dest, base))
            wanted.discard(base)
            print(f"[fetch-vocabs] {base}: {m.size} bytes", file=sys.stderr)
if wanted:
    sys.exit(f"[fetch-vocabs] not in the source package: {sorted(wanted)}")
PYEOF

log "done: $dest"
printf '%s\n' "$dest"
