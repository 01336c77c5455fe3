"""Decode cost of structured output (issue 36): `tide serve` streams greedy replies with and
without a JSON schema, taking turns request by request on one server; the time between
consecutive content chunks (one token each, but for a partial character) is the decode cost
per token. The schema's mask is computed by llguidance at every token and applied to the
logits (or, on a GPU, to its top-64 candidates).

Usage: python scripts/bench_schema.py TIDE_BIN MODEL --out FILE [--backend cpu] [--rounds 3]
"""
import argparse
import http.client
import json
import statistics
import subprocess
import time

PROMPTS = ["Describe a city.", "Tell me about a river.", "Name a famous scientist.",
           "Give me a recipe.", "Describe your favourite book."]
SCHEMA = {"type": "object", "properties": {
    "title": {"type": "string", "maxLength": 40},
    "summary": {"type": "string", "maxLength": 80},
    "year": {"type": "integer", "minimum": 1000, "maximum": 2100},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 4}},
    "required": ["title", "summary", "year", "tags"], "additionalProperties": False}
MAX_TOKENS = 160


def start(tide, model, backend):
    p = subprocess.Popen([tide, "serve", "--port", "0", "--model", model, "--backend", backend,
                          "--parallel", "1", "--web", "web"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    url = p.stdout.readline().strip()
    host, port = url[len("http://"):].rstrip("/").split(":")
    deadline = time.time() + 300
    while True:
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=10)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        assert time.time() < deadline, "the model did not load"
        time.sleep(0.2)
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("GET", "/v1/models")
    return p, host, int(port), json.loads(c.getresponse().read())["data"][0]["id"]


def ask(host, port, model, prompt, schema):
    """(gaps between content chunks in s, the reply, tokens generated)"""
    body = {"model": model, "stream": True, "max_tokens": MAX_TOKENS, "temperature": 0,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": prompt}]}
    if schema:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "card", "schema": SCHEMA}}
    c = http.client.HTTPConnection(host, port, timeout=600)
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    times, text, tokens = [], "", 0
    for line in r:
        line = line.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[len("data: "):])
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        for ch in chunk.get("choices", []):
            if ch.get("delta", {}).get("content"):
                times.append(time.perf_counter())
                text += ch["delta"]["content"]
    return [b - a for a, b in zip(times, times[1:])], text, tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tide")
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    p, host, port, model = start(a.tide, a.model, a.backend)
    rows = []
    try:
        ask(host, port, model, "Warm up.", True)
        ask(host, port, model, "Warm up.", False)
        for rnd in range(a.rounds):
            for prompt in PROMPTS:
                for schema in (False, True):
                    gaps, text, tokens = ask(host, port, model, prompt, schema)
                    if schema:
                        json.loads(text)  # a cut reply would raise: every one must be whole
                    rows.append({"round": rnd, "prompt": prompt, "schema": schema,
                                 "tokens": tokens, "gap_median_ms": 1e3 * statistics.median(gaps),
                                 "gaps_ms": [round(1e3 * g, 3) for g in gaps], "reply": text})
                    print(json.dumps({k: v for k, v in rows[-1].items() if k != "gaps_ms"}))
    finally:
        p.terminate()
        p.wait(10)
    med = {s: statistics.median(g for r in rows if r["schema"] == s for g in r["gaps_ms"])
           for s in (False, True)}
    summary = {"summary": True, "model": a.model, "backend": a.backend, "max_tokens": MAX_TOKENS,
               "ms_per_token_free": med[False], "ms_per_token_schema": med[True],
               "schema_over_free": med[True] / med[False]}
    print(json.dumps(summary))
    with open(a.out, "w") as f:
        for r in rows + [summary]:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
