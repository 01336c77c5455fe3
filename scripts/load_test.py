"""Load test of `tide serve`'s OpenAI-compatible API on loopback (issue 15), with the official
`openai` client: 1, 4 and 16 concurrent streams of mixed lengths.

Every request is greedy, so each has one right answer: first every request runs alone, one
after the other (the reference); then the same requests run again with C streams at a time,
and each streamed reply must equal its reference (no stream dropped, cut or mixed with
another). Per level it records time to first token (request sent -> first content chunk),
inter-token latency (gaps between content chunks) at p50 and p99, and aggregate completion
tokens per second over the level's wall time. Bounded: a fixed set of requests, a timeout per
request, and the server is stopped at the end.

With --mix prefix, every other request is a chat with one long system prompt (~250 tokens)
and its own question (what a prefix cache serves); with --mix all, of those chats one in four
asks for JSON by a schema (its reply must parse) and one in four declares a tool and forces a
call of it by name (its streamed call must come back whole, finish_reason "tool_calls", with
arguments that parse; what is compared with the request alone is the call's name and
arguments). --mix all needs a model whose chat template shows tools (Llama 3.x, Qwen2.5: e.g.
the tiny .cache/tool-models/qwen25-tools.gguf of scripts/make_tool_models.py). --mix plain
(the default) is the completions alone.

Usage: python scripts/load_test.py TIDE_BIN MODEL [--out FILE.jsonl] [--levels 1,4,16]
       [--requests N] [--parallel SLOTS] [--ctx N] [--mix plain|prefix|all]
Needs scripts/requirements-api.txt (scripts/venv.sh installs it); `bash scripts/bench-serve.sh`
runs it on SmolLM2 and writes docs/bench-data/load_test.jsonl.
"""
import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import openai

# Mixed lengths: short and long prompts, few and many tokens asked for.
PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived",
    "List three colours:",
    "The history of the city begins",
    "Explain why the sky is blue in one sentence.",
    "To be, or not to be",
    "def fibonacci(n):",
    "The best way to learn a language is",
]
MAX_TOKENS = [8, 48, 16, 32, 24, 40, 12, 32]
SYSTEM = "You are a careful assistant for a library. " + " ".join(
    f"Shelf {i} holds books on {t}." for i, t in enumerate(
        ["history", "rivers", "kings", "mills", "astronomy", "cooking", "poetry", "law"] * 3))
QUESTIONS = ["Where are the books on rivers?", "What is on shelf 3?", "Which shelf has poetry?",
             "Is there a shelf on law?"]
SCHEMA = {"type": "object", "properties": {"shelf": {"type": "integer", "minimum": 0, "maximum": 23},
                                          "topic": {"type": "string", "maxLength": 16}},
          "required": ["shelf", "topic"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {
    "name": "find_shelf", "description": "The shelf of a topic.",
    "parameters": {"type": "object", "properties": {
        "topic": {"type": "string", "enum": ["history", "rivers", "kings", "law"]},
        "shelf": {"type": "integer", "minimum": 0, "maximum": 23}},
        "required": ["topic", "shelf"], "additionalProperties": False}}}]


def kind(i, mix):
    """What request i is: "plain" (a completion), "prefix" (a chat with the long system
    prompt), "schema" (that chat, answered in JSON) or "tools" (that chat, answered by a forced
    tool call)."""
    if mix == "plain" or i % 2 == 0:
        return "plain"
    if mix == "all" and i % 4 == 3:
        return "schema" if i % 8 == 3 else "tools"
    return "prefix"


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    i = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[i]


class Server:
    def __init__(self, tide, model, queue, parallel, ctx):
        self.p = subprocess.Popen(
            [tide, "serve", "--port", "0", "--model", model, "--queue", str(queue),
             "--parallel", str(parallel), "--ctx", str(ctx)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = self.p.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"no URL from tide serve: {self.url!r}")
        deadline = time.time() + 300
        while True:
            try:
                with urllib.request.urlopen(self.url + "health", timeout=10) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("the model did not load within 300 s")
            time.sleep(0.2)
        self.client = openai.OpenAI(base_url=self.url + "v1", api_key="none", max_retries=0,
                                    timeout=600)
        self.model = self.client.models.list().data[0].id

    def close(self):
        self.p.terminate()
        self.p.wait(10)


def stream(srv, i, mix="plain"):
    """Request i, streamed: its text, chunk times and usage."""
    sent = time.perf_counter()
    times, parts, usage = [], [], None
    k = kind(i, mix)
    if k == "plain":
        chunks = srv.client.completions.create(
            model=srv.model, prompt=PROMPTS[i % len(PROMPTS)],
            max_tokens=MAX_TOKENS[i % len(MAX_TOKENS)], temperature=0, stream=True,
            stream_options={"include_usage": True})
    else:
        extra = {}
        if k == "schema":
            extra["response_format"] = {"type": "json_schema",
                                        "json_schema": {"name": "answer", "schema": SCHEMA}}
        if k == "tools":
            extra["tools"] = TOOLS
            extra["tool_choice"] = {"type": "function", "function": {"name": "find_shelf"}}
        chunks = srv.client.chat.completions.create(
            model=srv.model, messages=[{"role": "system", "content": SYSTEM},
                                       {"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            max_tokens=96 if k == "tools" else 48, temperature=0, stream=True,
            stream_options={"include_usage": True},
            **extra)
    calls, finish = {}, None
    for chunk in chunks:
        if chunk.usage is not None:
            usage = chunk.usage
        piece = None
        if chunk.choices:
            c = chunk.choices[0]
            piece = c.text if k == "plain" else c.delta.content
            finish = c.finish_reason or finish
            for tc in (None if k == "plain" else c.delta.tool_calls) or []:
                d = calls.setdefault(tc.index, ["", ""])
                d[0] += tc.function.name or ""
                d[1] += tc.function.arguments or ""
                piece = piece or "<call>"
        if piece:
            times.append(time.perf_counter())
            parts.append(piece)
    text = "".join(parts)
    if k == "schema":
        json.loads(text)  # a schema's reply must parse (a failure counts as an error)
    if k == "tools":
        # One call, whole, its arguments JSON (ids differ per request: not compared).
        assert finish == "tool_calls" and len(calls) == 1, (finish, calls)
        json.loads(calls[0][1])
        text = json.dumps([calls[0], text])
    cached = None
    if usage is not None and getattr(usage, "prompt_tokens_details", None) is not None:
        cached = usage.prompt_tokens_details.cached_tokens
    return {"i": i, "kind": k, "sent": sent, "times": times, "text": text,
            "tokens": usage.completion_tokens if usage else None, "cached": cached}


def level(srv, n, c, mix="plain"):
    """Requests 0..n with c in flight at a time."""
    results, errors = [None] * n, []
    nxt = iter(range(n))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(nxt, None)
            if i is None:
                return
            try:
                results[i] = stream(srv, i, mix)
            except Exception as e:  # recorded and reported: a dropped stream fails the run
                errors.append(f"request {i}: {e!r}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tide")
    ap.add_argument("model")
    ap.add_argument("--out")
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--parallel", type=int, help="the server's slots (default: the most streams)")
    ap.add_argument("--ctx", type=int, default=512, help="each slot's context (default 512)")
    ap.add_argument("--mix", choices=["plain", "prefix", "all"], default="plain")
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    parallel = a.parallel or max(levels)
    srv = Server(a.tide, a.model, queue=max(levels) * 2, parallel=parallel, ctx=a.ctx)
    rows, failed = [], False
    try:
        print(f"[load] {srv.model}: {a.requests} requests, each alone first", file=sys.stderr)
        ref, errors, _ = level(srv, a.requests, 1, a.mix)
        if errors:
            raise SystemExit("the reference run failed: " + "; ".join(errors))
        for c in levels:
            print(f"[load] {c} concurrent streams", file=sys.stderr)
            res, errors, wall = level(srv, a.requests, c, a.mix)
            mismatched = [r["i"] for r, want in zip(res, ref)
                          if r is not None and r["text"] != want["text"]]
            done = [r for r in res if r is not None]
            ttft = [r["times"][0] - r["sent"] for r in done if r["times"]]
            ttft_prefix = [r["times"][0] - r["sent"] for r in done
                           if r["times"] and r["kind"] != "plain"]
            itl = [b - a for r in done for a, b in zip(r["times"], r["times"][1:])]
            tokens = sum(r["tokens"] or 0 for r in done)
            row = {
                "streams": c, "parallel": parallel, "ctx": a.ctx, "requests": a.requests,
                "mix": a.mix, "completed": len(done),
                "kinds": {k: sum(r["kind"] == k for r in done) for k in ("plain", "prefix", "schema", "tools")},
                "cached_tokens": sum(r["cached"] or 0 for r in done),
                "ttft_chat_p50_s": percentile(ttft_prefix, 50),
                "errors": errors, "mismatched": mismatched, "completion_tokens": tokens,
                "wall_s": wall, "tokens_per_s": tokens / wall,
                "ttft_p50_s": percentile(ttft, 50), "ttft_p99_s": percentile(ttft, 99),
                "itl_p50_s": percentile(itl, 50), "itl_p99_s": percentile(itl, 99),
            }
            rows.append(row)
            failed |= bool(errors or mismatched)
    finally:
        srv.close()
    base = rows[0]["tokens_per_s"] if rows else 1
    print(f"{'streams':>7} {'tok/s':>7} {'x 1':>5} {'TTFT p50':>9} {'p99':>7} "
          f"{'ITL p50':>8} {'p99':>7}  errors/mismatched")
    for r in rows:
        r["over_one_stream"] = r["tokens_per_s"] / base
        print(f"{r['streams']:>7} {r['tokens_per_s']:>7.2f} {r['over_one_stream']:>5.2f} "
              f"{r['ttft_p50_s']:>9.3f} {r['ttft_p99_s']:>7.3f} {r['itl_p50_s']:>8.3f} "
              f"{r['itl_p99_s']:>7.3f}  {len(r['errors'])}/{len(r['mismatched'])}")
    if a.out:
        with open(a.out, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    if failed:
        raise SystemExit("streams were dropped or mixed up: see errors/mismatched")


if __name__ == "__main__":
    main()
