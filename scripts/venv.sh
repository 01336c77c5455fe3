#!/usr/bin/env bash
# The project's Python: a virtual environment in ${TIDE_CACHE:-<repo root>/.cache}/venv holding the
# pinned packages of the requirements files given (paths relative to the repo root or absolute).
# Prints the venv's python on stdout; progress goes to stderr.
#
#   py="$(scripts/venv.sh scripts/requirements.txt train/requirements.txt)"
#
# A venv because Debian's own python3 refuses pip installs (PEP 668, "externally managed").
# Made with ${PYTHON:-python3}; made again when it no longer runs (e.g. its base Python went away).
# A requirements file is installed again only when its content changes (a stamp per file inside
# the venv holds its sha256).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${TIDE_CACHE:-$repo_root/.cache}"
venv="$cache/venv"
base="${PYTHON:-python3}"

log() { printf '[venv] %s\n' "$*" >&2; }

mkdir -p "$cache"
# Two scripts setting the venv up at once would trip over each other.
if command -v flock >/dev/null; then
    exec 9>"$cache/venv.lock"
    flock 9
fi

healthy() { "$venv/bin/python" -c 'import pip' >/dev/null 2>&1; }

if ! healthy; then
    [[ -e "$venv" ]] && log "$venv does not run; making it again"
    rm -rf "$venv"
    log "creating $venv with $(command -v "$base" || echo "$base")"
    if ! "$base" -m venv "$venv" >&2 || ! healthy; then
        rm -rf "$venv"
        log "error: '$base -m venv' failed (Debian/Ubuntu: apt-get install python3-venv python3-pip)"
        exit 1
    fi
fi

for req in "$@"; do
    [[ "$req" = /* ]] || req="$repo_root/$req"
    [[ -f "$req" ]] || { log "error: no requirements file $req"; exit 1; }
    hash="$(sha256sum "$req" | cut -d' ' -f1)"
    stamp="$venv/.stamp-$(printf '%s' "${req#"$repo_root"/}" | tr '/' '_')"
    if [[ "$(cat "$stamp" 2>/dev/null)" != "$hash" ]]; then
        log "installing ${req#"$repo_root"/} into $venv"
        rm -f "$stamp"
        # "# build-env: NAME=VALUE" lines are set for the install, which then builds from
        # source afresh (no cached wheel made with other settings).
        build_env=(); extra=()
        while IFS= read -r kv; do build_env+=("$kv"); done \
            < <(sed -n 's/^# build-env: //p' "$req")
        (( ${#build_env[@]} )) && extra=(--no-cache-dir --force-reinstall)
        env "${build_env[@]}" "$venv/bin/python" -m pip install -q --disable-pip-version-check \
            "${extra[@]}" -r "$req" >&2
        printf '%s\n' "$hash" > "$stamp"
    fi
done

printf '%s\n' "$venv/bin/python"
