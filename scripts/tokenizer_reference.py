#!/usr/bin/env python3
"""llama.cpp's token ids for real vocabularies -> tests/fixtures/tokenizers/<vocab>.json.

    python3 scripts/tokenizer_reference.py [--vocabs DIR] [--out tests/fixtures/tokenizers]

The vocabularies are llama.cpp's vocab-only GGUF files that scripts/fetch-vocabs.sh puts in
${TIDE_CACHE:-<repo root>/.cache}/vocabs: llama-bpe (Llama 3), qwen2 (Qwen2/2.5/3) and
llama-spm (Llama 2, SentencePiece). For each, llama-cpp-python (vocab_only) tokenizes, with
add_bos=False and special=True (control tokens written in the text match whole):
  - the edge-case strings of scripts/llamacpp_reference.py (whitespace runs, digits, code,
    contractions, many scripts, emoji, ZWJ sequences, special-token look-alikes);
  - llama.cpp's own test strings for that vocabulary (the .inp file beside it);
  - text around the vocabulary's own control tokens.
It also records what tokenize(text, add_bos=True) prepends, and detokenizes every id list back
(the text llama.cpp gives for the ids).

Needs: llama-cpp-python (scripts/requirements-llamacpp.txt).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llamacpp_reference import TOKENIZER_STRINGS  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCABS = ["llama-bpe", "qwen2", "llama-spm"]
EXTRA = [
    "Hello world",
    " Hello world",
    "Hello\nworld",
    "  leading and trailing  ",
    "numbers 1 12 123 1234 12345 123456",
    "snake_case_identifier and camelCaseIdentifier",
    "ALL CAPS SENTENCE WITH 123 NUMBERS",
    "Tabs\tand\nnewlines\r\nmixed",
    "Ünïcödé äccents everywhere",
    "∀x ∈ ℝ: x² ≥ 0",
]


def log(msg):
    print(f"[tokenizer_reference] {msg}", file=sys.stderr, flush=True)


def inp_strings(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n__ggml_vocab_test__\n")[:-1]


def main():
    ap = argparse.ArgumentParser()
    cache = os.environ.get("TIDE_CACHE") or os.path.join(REPO_ROOT, ".cache")
    ap.add_argument("--vocabs", default=os.path.join(cache, "vocabs"))
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures", "tokenizers"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    import llama_cpp

    for name in VOCABS:
        path = os.path.join(args.vocabs, f"ggml-vocab-{name}.gguf")
        llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        n_vocab = llm.n_vocab()
        controls = []
        for i in range(n_vocab):
            if llama_cpp.llama_vocab_get_attr(llm._model.vocab, i) & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL:
                controls.append(llm.detokenize([i], special=True).decode("utf-8", errors="replace"))
        controls = [c for c in controls if c][:4]
        strings = list(TOKENIZER_STRINGS) + EXTRA + inp_strings(path + ".inp")
        strings += [f"{c}Hi there{c} end" for c in controls]
        seen, cases = set(), []
        for s in strings:
            if s in seen:
                continue
            seen.add(s)
            ids = [int(t) for t in llm.tokenize(s.encode("utf-8"), add_bos=False, special=True)]
            text = llm.detokenize(ids, special=True).decode("utf-8", errors="replace")
            cases.append({"text": s, "ids": ids, "decoded": text})
        with_bos = [int(t) for t in llm.tokenize(b"Hi", add_bos=True, special=True)]
        plain = [int(t) for t in llm.tokenize(b"Hi", add_bos=False, special=True)]
        out = {
            "generator": "scripts/tokenizer_reference.py",
            "llama_cpp_python": llama_cpp.__version__,
            "vocab": f"ggml-vocab-{name}.gguf",
            "n_vocab": n_vocab,
            "bos_prefix": with_bos[: len(with_bos) - len(plain)],
            "cases": cases,
        }
        dest = os.path.join(args.out, f"{name}.json")
        with open(dest, "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, indent=0)
            f.write("\n")
        log(f"{name}: {len(cases)} strings, {n_vocab} tokens, controls {controls} -> {dest}")


if __name__ == "__main__":
    main()
