"""Decode cost of structured output (issue 36): `tide serve` streams greedy replies with and
without a JSON schema, taking turns request by request on one server; the time between
consecutive content chunks (one token each, but for a partial character) is the decode cost
per token. The schema's mask is computed by llguidance at every token and applied to the
logits (or, on a GPU, to its top-64 candidates).

Usage: python scripts/bench_schema.py TIDE_BIN MODEL --out FILE [--backend cpu] [--rounds 3]
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_bench import Server, content, write_run  # noqa: E402

PROMPTS = ["Describe a city.", "Tell me about a river.", "Name a famous scientist.",
           "Give me a recipe.", "Describe your favourite book."]
SCHEMA = {"type": "object", "properties": {
    "title": {"type": "string", "maxLength": 40},
    "summary": {"type": "string", "maxLength": 80},
    "year": {"type": "integer", "minimum": 1000, "maximum": 2100},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 4}},
    "required": ["title", "summary", "year", "tags"], "additionalProperties": False}
MAX_TOKENS = 160


def ask(server, prompt, schema):
    """(gaps between content chunks in s, the reply, tokens generated)"""
    body = {"max_tokens": MAX_TOKENS, "temperature": 0,
            "messages": [{"role": "user", "content": prompt}]}
    if schema:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "card", "schema": SCHEMA}}
    pieces, usage = content(server.stream(body)[1])
    times = [t for t, _ in pieces]
    return ([b - a for a, b in zip(times, times[1:])], "".join(p for _, p in pieces),
            usage["completion_tokens"] if usage else 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tide")
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    server = Server(a.tide, a.model, a.backend)
    rows = []
    try:
        ask(server, "Warm up.", True)
        ask(server, "Warm up.", False)
        for rnd in range(a.rounds):
            for prompt in PROMPTS:
                for schema in (False, True):
                    gaps, text, tokens = ask(server, prompt, schema)
                    if schema:
                        json.loads(text)  # a cut reply would raise: every one must be whole
                    rows.append({"round": rnd, "prompt": prompt, "schema": schema,
                                 "tokens": tokens, "gap_median_ms": 1e3 * statistics.median(gaps),
                                 "gaps_ms": [round(1e3 * g, 3) for g in gaps], "reply": text})
                    print(json.dumps({k: v for k, v in rows[-1].items() if k != "gaps_ms"}))
    finally:
        server.close()
    med = {s: statistics.median(g for r in rows if r["schema"] == s for g in r["gaps_ms"])
           for s in (False, True)}
    summary = {"summary": True, "model": a.model, "backend": a.backend, "max_tokens": MAX_TOKENS,
               "ms_per_token_free": med[False], "ms_per_token_schema": med[True],
               "schema_over_free": med[True] / med[False]}
    write_run(a.out, rows, summary)

if __name__ == "__main__":
    main()
