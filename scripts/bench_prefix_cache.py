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
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_bench import Server, content, write_run  # noqa: E402

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


def ask(server, system, question):
    """(seconds to the first content chunk, reply text, usage)"""
    t0, chunks = server.stream({"max_tokens": 8, "temperature": 0,
                                "messages": [{"role": "system", "content": system},
                                             {"role": "user", "content": question}]})
    pieces, usage = content(chunks)
    ttft = pieces[0][0] - t0 if pieces else None
    return ttft, "".join(p for _, p in pieces), usage


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
        s = Server(a.tide, a.model, a.backend, "--ctx", "2048",
                   *([] if cache else ["--no-prefix-cache"]))
        try:
            ask(s, system, "Warm up.")
            for q in QUESTIONS:
                ttft, text, usage = ask(s, system, q)
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
    write_run(a.out, rows, summary)

if __name__ == "__main__":
    main()
