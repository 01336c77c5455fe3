"""Time to first token with and without the prefix cache (issue 36): `tide serve` with a
~1,000-token system prompt repeated with different questions, one request at a time, streamed
over loopback; the time from sending a request to its first content chunk.

Each server (prefix cache on, then --no-prefix-cache) first answers one warm-up request (the
kernels compiled, the system prompt held by a slot when the cache is on); then every question
runs once. Each request's greedy reply must be equal in both runs. One JSON line per request
and a summary line go to --out.

Usage: python scripts/bench_prefix_cache.py TIDE_BIN MODEL --out FILE [--backend cpu]
"""
import argparse
import http.client
import json
import statistics
import subprocess
import time

QUESTIONS = [
    "Who is the main character?", "Where does the story take place?",
    "What happens at the end?", "Summarise the second paragraph.", "What is the mood?",
    "Name two places in the text.", "What did the miller want?", "Is the king kind?",
]


def system_prompt(words=700):
    """A long, varied English text (about 1,000 tokens for SmolLM2's tokenizer)."""
    parts = ["the king", "the miller", "an old river", "three daughters", "a stone bridge",
             "the winter market", "a lantern", "the northern road", "a quiet bell", "the harvest"]
    out = []
    i = 0
    while len(" ".join(out).split()) < words:
        a, b = parts[i % len(parts)], parts[(i * 7 + 3) % len(parts)]
        out.append(f"In the {i + 1}th part of the tale, {a} met {b} and spoke of day {i * 3 + 1}.")
        i += 1
    return "You answer questions about this story.\n" + " ".join(out)


class Server:
    def __init__(self, tide, model, backend, *extra):
        self.p = subprocess.Popen([tide, "serve", "--port", "0", "--model", model, "--backend",
                                   backend, "--parallel", "1", "--ctx", "2048", "--web", "web",
                                   *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True)
        url = self.p.stdout.readline().strip()
        self.host, port = url[len("http://"):].rstrip("/").split(":")
        self.port = int(port)
        deadline = time.time() + 300
        while True:
            try:
                c = http.client.HTTPConnection(self.host, self.port, timeout=10)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "the model did not load"
            time.sleep(0.2)
        c = http.client.HTTPConnection(self.host, self.port, timeout=10)
        c.request("GET", "/v1/models")
        self.model = json.loads(c.getresponse().read())["data"][0]["id"]

    def ask(self, system, question):
        """(seconds to the first content chunk, reply text, usage)"""
        body = json.dumps({"model": self.model, "stream": True, "max_tokens": 8,
                           "temperature": 0, "stream_options": {"include_usage": True},
                           "messages": [{"role": "system", "content": system},
                                        {"role": "user", "content": question}]})
        c = http.client.HTTPConnection(self.host, self.port, timeout=600)
        t0 = time.perf_counter()
        c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        r = c.getresponse()
        ttft, text, usage = None, "", None
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: "):])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for ch in chunk.get("choices", []):
                piece = ch.get("delta", {}).get("content")
                if piece:
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    text += piece
        return ttft, text, usage

    def close(self):
        self.p.terminate()
        self.p.wait(10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tide")
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--backend", default="cpu")
    a = ap.parse_args()
    system = system_prompt()
    rows, replies = [], {}
    for cache in (True, False):
        s = Server(a.tide, a.model, a.backend, *([] if cache else ["--no-prefix-cache"]))
        try:
            s.ask(system, "Warm up.")
            for q in QUESTIONS:
                ttft, text, usage = s.ask(system, q)
                rows.append({"prefix_cache": cache, "question": q, "ttft_s": ttft,
                             "prompt_tokens": usage["prompt_tokens"],
                             "cached_tokens": usage["prompt_tokens_details"]["cached_tokens"],
                             "reply": text})
                if cache:
                    replies[q] = text
                else:
                    assert replies[q] == text, f"replies differ for {q!r}: {replies[q]!r} {text!r}"
                print(json.dumps(rows[-1]))
        finally:
            s.close()
    med = {c: statistics.median(r["ttft_s"] for r in rows if r["prefix_cache"] == c)
           for c in (True, False)}
    summary = {"summary": True, "model": a.model, "backend": a.backend,
               "prompt_tokens_median": statistics.median(r["prompt_tokens"] for r in rows),
               "ttft_median_cached_s": med[True], "ttft_median_uncached_s": med[False],
               "speedup": med[False] / med[True], "replies_equal": True}
    print(json.dumps(summary))
    with open(a.out, "w") as f:
        for r in rows + [summary]:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
