#!/usr/bin/env python3
"""llama.cpp reference data for SmolLM2-135M-Instruct (Q4_1 GGUF) -> tests/fixtures/llamacpp_smollm2.json.

    python3 scripts/llamacpp_reference.py [--model PATH.gguf] [--out tests/fixtures/llamacpp_smollm2.json]

The model defaults to the file scripts/fetch-smollm2.sh puts in the cache
(${TIDE_CACHE:-<repo root>/.cache}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf).

Runs llama-cpp-python on the CPU with 2 threads, f32 KV cache, flash attention off, n_ctx 512,
all logits kept, fixed seed. Records:
  - add_bos / bos_id: whether llama.cpp's tokenize(text, add_bos=True) prepends BOS for this model;
  - tokenizer: ids of many edge-case strings (add_bos=False, special=True, so "<|im_start|>" is
    one token);
  - prompts: prompt ids (add_bos=True, special=True, exactly what llama.cpp would generate from),
    32 greedy tokens computed here as the argmax of llama.cpp's logits (feeding one token at a time,
    never stopping at EOS), and the top-10 (id, logit) of each of the 33 steps (step 0 = logits after
    the last prompt token, step i = logits after greedy[i-1]).

Needs: numpy, llama-cpp-python (pinned in scripts/requirements-llamacpp.txt; run it with the
python that `scripts/venv.sh scripts/requirements-llamacpp.txt` prints).
"""

import argparse
import inspect
import json
import os
import sys

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_GREEDY = 32
TOP_K = 10
SEED = 1234

TOKENIZER_STRINGS = [
    "",
    " ",
    "  ",
    "   ",
    "\t",
    "\t\t",
    " \t ",
    "\n",
    "\n\n",
    "\n\n\n",
    "\r\n",
    " \n ",
    "a",
    "Hello",
    " Hello",
    "  Hello",
    "Hello world",
    "Hello, world!",
    "hello   world",
    "HELLO WORLD",
    "The quick brown fox jumps over the lazy dog.",
    "don't",
    "I'M",
    "you're we've they'll she'd it's",
    "He said 'hello' and \"goodbye\".",
    "rock'n'roll",
    "0",
    "7",
    "42",
    "12345678",
    "3.14159",
    "1,000,000",
    "2024-06-11",
    "x = 12 * 34 + 5",
    "v1.2.3-beta",
    "0x1F 0b1010",
    "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?x=1&y=2#top",
    "user@example.com",
    "C:\\Users\\name\\file.txt",
    "def add(a, b):\n    return a + b\n",
    "    indented line",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "<html><body class=\"main\">Hi</body></html>",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "café",
    "naïve résumé",
    "Ärger über Öl",
    "Привет, мир!",
    "Γειά σου Κόσμε",
    "日本語のテキスト",
    "中文字符测试",
    "한국어 텍스트",
    "مرحبا بالعالم",
    "हिन्दी",
    "mixed English, 日本語, русский and ελληνικά",
    "🙂",
    "🦙🦙🦙",
    "👍🏽",
    "👨‍👩‍👧‍👦",
    "🏳️‍🌈 flag",
    "emoji in text 🎉 party!",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|im_start|>user\nHi there<|im_end|>\n",
    "before<|im_end|>after",
    "text <|endoftext|> more text",
    "<|im_start|>assistant\n",
    "<repo_name>tide<file_sep>main.rs",
    "<|im_start",
    "im_end|>",
    "!!!???...",
    "----====____",
    "a\u00a0b",
    "zero\u200bwidth",
    "ﬁ ligature and Ｆｕｌｌｗｉｄｔｈ",
    "tab\tseparated\tvalues",
    "trailing spaces   ",
    "Mr. O'Neil's 3rd car's 2nd wheel",
]

PROMPTS = [
    "The capital of France is",
    "   Once upon a time, in a land far away,",
    "Line one\nLine two\n\nLine four:",
    "Question: what is 17 + 25?\nAnswer: 17 + 25 =",
    "1, 2, 3, 4, 5, 6,",
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "Le café était déjà fermé, alors nous sommes allés à la crêperie. 東京は日本の",
    "I love pizza 🍕 and tacos 🌮! My favourite emoji is",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "Write a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
]


def log(msg):
    print(f"[llamacpp_reference] {msg}", file=sys.stderr, flush=True)


def default_model_path():
    cache = os.environ.get("TIDE_CACHE") or os.path.join(REPO_ROOT, ".cache")
    return os.path.join(cache, "smollm2", MODEL_NAME)


def open_model(path):
    import llama_cpp

    params = inspect.signature(llama_cpp.Llama.__init__).parameters
    kw = dict(model_path=path, n_ctx=512, n_batch=512, n_threads=2, seed=SEED, logits_all=True, verbose=False)
    kw["type_k"] = 0  # GGML_TYPE_F32
    kw["type_v"] = 0
    if "flash_attn_type" in params:  # newer releases take an enum
        kw["flash_attn_type"] = 0  # LLAMA_FLASH_ATTN_TYPE_DISABLED
    else:
        kw["flash_attn"] = False
    if "n_threads_batch" in params:
        kw["n_threads_batch"] = 2
    for k in list(kw):
        if k not in params:
            raise SystemExit(f"llama_cpp.Llama has no argument {k!r}; update {__file__}")
    log(f"llama_cpp {llama_cpp.__version__}: Llama({', '.join(f'{k}={v!r}' for k, v in kw.items())})")
    llm = llama_cpp.Llama(**kw)
    cp = llm.context_params
    assert cp.type_k == 0 and cp.type_v == 0, (cp.type_k, cp.type_v)
    if hasattr(cp, "flash_attn_type"):
        assert cp.flash_attn_type == 0, cp.flash_attn_type
    return llm


def quantize(src, dst, ftype):
    """llama.cpp's own quantiser: `src` to `dst` as `ftype` (a LLAMA_FTYPE_* name), from an
    already quantised file too (allow_requantize); written under a temporary name first."""
    import llama_cpp

    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = getattr(llama_cpp, ftype)
    p.allow_requantize = True
    p.nthread = 2
    tmp = dst + ".tmp"
    rc = llama_cpp.llama_model_quantize(src.encode(), tmp.encode(), p)
    if rc != 0:
        sys.exit(f"llama_model_quantize({src} -> {ftype}) failed: {rc}")
    os.replace(tmp, dst)


def tokenize(llm, text, add_bos):
    return [int(t) for t in llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)]


def last_logits(llm):
    row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    assert row.shape == (llm.n_vocab(),)
    assert np.any(row != 0.0), "logits are all zero (logits_all not honoured?)"
    return row


def top_k(row, k):
    # descending by logit, ties by lower id (stable sort on -logit)
    order = np.argsort(-row, kind="stable")[:k]
    return [[int(i), round(float(row[i]), 5)] for i in order]


def run_prompt(llm, text):
    ids = tokenize(llm, text, add_bos=True)
    assert len(ids) + N_GREEDY <= 512
    llm.reset()
    llm.eval(ids)
    steps, greedy = [], []
    for i in range(N_GREEDY + 1):
        row = last_logits(llm)
        steps.append({"top": top_k(row, TOP_K)})
        if i == N_GREEDY:
            break
        nxt = int(np.argmax(row))  # greedy from the logits, no sampler, no EOS stop
        greedy.append(nxt)
        llm.eval([nxt])
    # sanity: evaluating prompt + greedy in one batch reproduces the last-step argmax path
    llm.reset()
    llm.eval(ids + greedy)
    batch_top = int(np.argmax(np.array(llm.scores[len(ids) - 1])))
    if batch_top != greedy[0]:
        log(f"note: batched eval argmax {batch_top} != step-0 greedy {greedy[0]} for {text!r}")
    return {"text": text, "prompt_ids": ids, "greedy": greedy, "steps": steps}


def dump_json(obj):
    """Compact JSON with one line per list entry of the top-level lists (diff-friendly, small)."""

    def c(v):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))

    parts = []
    for k, v in obj.items():
        if isinstance(v, list):
            body = ",\n".join(" " + c(e) for e in v)
            parts.append(f"{c(k)}:[\n{body}\n]")
        else:
            parts.append(f"{c(k)}:{c(v)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=default_model_path())
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures", "llamacpp_smollm2.json"))
    args = ap.parse_args()
    if not os.path.exists(args.model):
        raise SystemExit(f"model not found: {args.model} (run scripts/fetch-smollm2.sh)")

    import llama_cpp

    llm = open_model(args.model)
    bos_id = int(llm.token_bos())
    probe = tokenize(llm, "Hello", add_bos=True)
    plain = tokenize(llm, "Hello", add_bos=False)
    add_bos = probe[:1] == [bos_id] and probe[1:] == plain
    assert add_bos or probe == plain, (probe, plain)
    log(f"bos id {bos_id} ({llm.detokenize([bos_id])!r}); tokenize(add_bos=True) prepends it: {add_bos}")

    tok_cases = []
    for s in TOKENIZER_STRINGS:
        ids = tokenize(llm, s, add_bos=False)
        tok_cases.append({"text": s, "ids": ids})
    assert len(tok_cases) >= 60
    im_start = tokenize(llm, "<|im_start|>", add_bos=False)
    assert len(im_start) == 1, im_start

    prompts = []
    for text in PROMPTS:
        p = run_prompt(llm, text)
        log(f"{text[:40]!r}: {len(p['prompt_ids'])} prompt ids -> "
            f"{llm.detokenize(p['greedy']).decode('utf-8', errors='replace')[:60]!r}")
        prompts.append(p)

    out = {
        "generator": "scripts/llamacpp_reference.py",
        "llama_cpp_python": llama_cpp.__version__,
        "model": os.path.basename(args.model),
        "add_bos": add_bos,
        "bos_id": bos_id,
        "tokenizer": tok_cases,
        "prompts": prompts,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(dump_json(out))
    log(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
