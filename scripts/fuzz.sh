#!/usr/bin/env bash
# Fuzz with cargo-fuzz (libFuzzer + AddressSanitizer, nightly toolchain): the GGUF reader, the
# safetensors + config.json loader, the TIDE memory reader, the tokenizer and the API's request
# bodies (fuzz/fuzz_targets/). Seeds come from real files in the repository: the gguf-py-written
# architecture fixtures, the tiny TIDE, LIMe and Engram models, the TIDE memory files, llama.cpp's tokenizer test
# inputs and this README. Each target runs RUNS executions (default 1e6) or SECONDS (default:
# no limit), whichever ends first, with a 2 GB RSS limit, a 20 s per-input timeout and inputs of
# at most 64 KB (the tokenizer's 1 KB; the seeds are cut there); the counts go to
# docs/bench-data/fuzz.jsonl. FUZZ_SANITIZER=none builds without AddressSanitizer (cargo fuzz
# -s none: panics, hangs and the RSS limit are still caught, memory errors in unsafe code not).
# FUZZ_OUT names another file for the counts (CI's short pass keeps docs/ as committed).
# FUZZ_SEED fixes libFuzzer's seed (CI's short pass: the same inputs each run, so that a red
# run is a change's doing and reproducible, not the luck of the draw); FUZZ_CORPUS names the
# corpus folder (default .cache/fuzz, which grows from run to run).
# Usage: [FUZZ_SANITIZER=none] [FUZZ_OUT=FILE] bash scripts/fuzz.sh [RUNS] [SECONDS] [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-1000000}"
secs="${2:-0}"
shift 2 || shift $# || true
if (( $# )); then targets=("$@"); else targets=(gguf safetensors memory tokenizer openai_request); fi
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
corpus="${FUZZ_CORPUS:-.cache/fuzz}"
mkdir -p "$corpus"/{gguf,safetensors,memory,tokenizer,openai_request}
cp tests/fixtures/arch/*.gguf "$corpus/gguf/"
python3 - "$corpus/safetensors" <<'PY'
import sys
for name in ("tiny_tide", "tiny_lime", "tiny_engram"):
    cfg = open(f"tests/fixtures/{name}/config.json", "rb").read()
    st = open(f"tests/fixtures/{name}/model.safetensors", "rb").read()
    open(f"{sys.argv[1]}/{name}", "wb").write(len(cfg).to_bytes(2, "little") + cfg + st)
PY
cp tests/fixtures/tiny_tide/memory_*.safetensors "$corpus/memory/"
cp README.md "$corpus/tokenizer/readme"
for f in .cache/vocabs/*.inp; do [[ -e $f ]] && cp "$f" "$corpus/tokenizer/"; done
# Request bodies as the API tests send them; the first byte picks the endpoint (even: chat).
python3 - "$corpus/openai_request" <<'PY'
import json, sys
chat = {"model": "tide-k4", "messages": [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "max_tokens": 8, "temperature": 0, "top_p": 0.9, "seed": 7, "stop": ["\n", "END"],
        "logprobs": True, "top_logprobs": 3, "stream": True,
        "stream_options": {"include_usage": True}}
text = {"model": "tide-k4", "prompt": ["In the beginning"], "max_tokens": 16, "logprobs": 2,
        "echo": False, "n": 1, "presence_penalty": 0}
# Tools: declared and forced by name; a follow-up turn with the call and the tool's reply.
weather = {"type": "function", "function": {"name": "get_weather", "description": "d",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}}
tools = {"model": "tide-k4", "messages": [{"role": "user", "content": "Weather?"}],
         "tools": [weather, {"type": "function", "function": {"name": "now"}}],
         "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
         "parallel_tool_calls": False, "stream": True}
call = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}
turn = {"model": "tide-k4", "tools": [weather], "tool_choice": "auto", "messages": [
    {"role": "user", "content": "Weather?"}, {"role": "assistant", "content": None, "tool_calls": [call]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]}
for name, kind, body in [("chat", 0, chat), ("text", 1, text), ("wrong-model", 1,
                         {"model": "gpt-4", "prompt": "x"}), ("tools", 0, tools),
                         ("tool-turn", 0, turn)]:
    open(f"{sys.argv[1]}/{name}", "wb").write(bytes([kind]) + json.dumps(body).encode())
PY
out="${FUZZ_OUT:-docs/bench-data/fuzz.jsonl}"
for t in "${targets[@]}"; do
    echo "[fuzz] $t: $runs runs" >&2
    log="$corpus/$t.log"
    # Texts of up to 1 KB for the tokenizer (a 30 KB text takes ~0.1 s under ASan), files of
    # up to 64 KB for the readers.
    max_len=65536; [[ $t == tokenizer ]] && max_len=1024
    cargo +nightly fuzz run -s "${FUZZ_SANITIZER:-address}" --fuzz-dir fuzz "$t" "$corpus/$t" \
        -- -runs="$runs" \
        -max_total_time="$secs" \
        -max_len="$max_len" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
        ${FUZZ_SEED:+-seed="$FUZZ_SEED"} > "$log" 2>&1 || {
        tail -40 "$log" >&2
        echo "[fuzz] $t failed: see $log (and fuzz/artifacts/$t)" >&2
        exit 1
    }
    python3 - "$t" "$log" "$runs" "$max_len" "${FUZZ_SANITIZER:-address}" >> "$out" <<'PY'
import json, re, sys
t, log, runs, max_len = sys.argv[1], open(sys.argv[2]).read(), int(sys.argv[3]), int(sys.argv[4])
stat = lambda k: int(re.search(rf"stat::{k}:\s*(\d+)", log)[1])
print(json.dumps({"target": t, "sanitizer": sys.argv[5], "runs_asked": runs, "max_len": max_len, "executed": stat("number_of_executed_units"),
                  "seconds": int(re.search(r"Done \d+ runs in (\d+) second", log)[1]),
                  "peak_rss_mb": stat("peak_rss_mb"),
                  "new_units_added": stat("new_units_added"), "crashes": 0}))
PY
    tail -1 "$out" >&2
done
