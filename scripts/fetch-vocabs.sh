#!/usr/bin/env bash
# Fetch real tokenizer vocabularies and chat templates for the tests: llama.cpp's vocab-only
# GGUF files of Llama 3 (BPE, pre-tokenizer llama-bpe), Qwen2 (BPE, qwen2) and Llama 2
# (SentencePiece), with llama.cpp's own test strings and token ids beside them (.inp/.out), and
# the chat templates (Jinja) of popular models that llama.cpp keeps for its template tests.
#
# They ship in the source package of llama-cpp-python (pinned with its sha256 in
# scripts/requirements-vocabs.txt, MIT). This script has pip download that package (about 77 MB)
# and extracts only those files into ${TIDE_CACHE:-<repo root>/.cache}/vocabs/ (templates in
# its templates/ folder).
#
# Idempotent: nothing is downloaded when the files are there. Progress goes to stderr; stdout
# carries only the absolute path of the folder.
set -euo pipefail

NAMES=(llama-bpe qwen2 llama-spm)
TEMPLATES=(
    meta-llama-Llama-3.1-8B-Instruct meta-llama-Llama-3.2-3B-Instruct Qwen-Qwen2.5-7B-Instruct
    Qwen-Qwen3-0.6B mistralai-Mistral-Nemo-Instruct-2407 google-gemma-2-2b-it
    microsoft-Phi-3.5-mini-instruct HuggingFaceTB-SmolLM3-3B
    deepseek-ai-DeepSeek-R1-Distill-Llama-8B ibm-granite-granite-3.3-2B-Instruct
)

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"
cache="${TIDE_CACHE:-$repo_root/.cache}"
mkdir -p "$cache/vocabs/templates"
dest="$(cd "$cache/vocabs" && pwd)"

log() { printf '[fetch-vocabs] %s\n' "$*" >&2; }

complete() {
    for n in "${NAMES[@]}"; do
        for ext in gguf gguf.inp gguf.out; do
            [[ -s "$dest/ggml-vocab-$n.$ext" ]] || return 1
        done
    done
    for t in "${TEMPLATES[@]}"; do
        [[ -s "$dest/templates/$t.jinja" ]] || return 1
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

"$PY" - "$sdist" "$dest" "${NAMES[*]}" "${TEMPLATES[*]}" <<'PYEOF'
import os
import sys
import tarfile

sdist, dest, names, templates = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
wanted = {f"models/ggml-vocab-{n}.{ext}" for n in names for ext in ("gguf", "gguf.inp", "gguf.out")}
wanted |= {f"models/templates/{t}.jinja" for t in templates}
with tarfile.open(sdist) as tf:
    for m in tf.getmembers():
        key = next((w for w in wanted if m.name.endswith("/llama.cpp/" + w)), None)
        if m.isfile() and key:
            sub = "templates" if "/templates/" in key else ""
            base = os.path.basename(key)
            part = os.path.join(dest, sub, f".{base}.partial")
            with tf.extractfile(m) as src, open(part, "wb") as dst:
                dst.write(src.read())
            os.replace(part, os.path.join(dest, sub, base))
            wanted.discard(key)
            print(f"[fetch-vocabs] {base}: {m.size} bytes", file=sys.stderr)
if wanted:
    sys.exit(f"[fetch-vocabs] not in the source package: {sorted(wanted)}")
PYEOF

log "done: $dest"
printf '%s\n' "$dest"
