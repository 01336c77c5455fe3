"""How far any row-cache policy can go on a text: the hit rate of Belady's optimal (offline)
cache, which knows every future request, warmed like the row store (the most frequent
training tokens first) and cold, against the LRU the row store runs (warmed, as `tide bench
--cache-sweep` does) and LRU beside a pinned set of the most frequent training tokens (a share
of the capacity that is never evicted).

One request per token, as the row store sees them (K rows of a token travel together).
Usage: cache_bound.py TOKENIZER_JSON TEXT MEMORY_SAFETENSORS [SHARES]
Prints one JSON object per cache size.
"""
import collections
import heapq
import json
import struct
import sys

import numpy as np
from tokenizers import Tokenizer


def token_counts(path):
    """tide.token_counts of a memory file, read alone (the tables stay on disk)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        e = header["tide.token_counts"]
        b, end = e["data_offsets"]
        f.seek(8 + n + b)
        types = {"I64": "<i8", "U64": "<u8", "I32": "<i4", "U32": "<u4", "F32": "<f4"}
        return np.frombuffer(f.read(end - b), dtype=types[e["dtype"]]).astype(np.float64)


def lru_with_pinned(ids, order, cap, pinned_share):
    """Hit rate of a cache whose first cap * pinned_share slots hold the most frequent tokens
    for good and whose rest is an LRU warmed with the next most frequent."""
    p = int(cap * pinned_share)
    pinned = set(order[:p].tolist())
    warm = order[p:cap].tolist()
    # The most frequent end up most recently used, as RowStore::warm leaves them.
    lru = collections.OrderedDict((t, None) for t in reversed(warm))
    free = cap - p
    hits = 0
    for t in ids:
        if t in pinned:
            hits += 1
        elif t in lru:
            hits += 1
            lru.move_to_end(t)
        elif free > 0:
            lru[t] = None
            if len(lru) > free:
                lru.popitem(last=False)
    return hits / len(ids)


def belady(ids, cap, warm=()):
    """Hit rate of the optimal offline cache (evict the token needed furthest ahead), starting
    with the tokens `warm` in it."""
    never = len(ids) + 1
    nxt = [never] * len(ids)
    last = {}
    for i in range(len(ids) - 1, -1, -1):
        nxt[i] = last.get(ids[i], never)
        last[ids[i]] = i
    cache, heap, hits = {}, [], 0
    for t in list(warm)[:cap]:
        # A token never requested gets a distinct "never" so it goes first.
        cache[t] = last.get(t, never + t)
        heapq.heappush(heap, (-cache[t], t))
    for i, t in enumerate(ids):
        if t in cache:
            hits += 1
        elif len(cache) >= cap:
            while True:
                nu, v = heapq.heappop(heap)
                if cache.get(v) == -nu:
                    del cache[v]
                    break
        cache[t] = nxt[i]
        heapq.heappush(heap, (-nxt[i], t))
    return hits / len(ids)


def main():
    tok_path, text_path, mem_path = sys.argv[1:4]
    shares = [float(s) for s in (sys.argv[4] if len(sys.argv) > 4 else "0.05,0.1,0.2").split(",")]
    ids = Tokenizer.from_file(tok_path).encode(open(text_path, encoding="utf-8").read()).ids
    counts = token_counts(mem_path)
    vocab = len(counts)
    order = np.lexsort((np.arange(vocab), -counts))
    distinct = len(set(ids))
    for share in shares:
        cap = int(vocab * share)
        row = {
            "share": share,
            "cache_tokens": cap,
            "text_tokens": len(ids),
            "distinct_tokens": distinct,
            "belady_optimal_warmed": belady(ids, cap, order[:cap].tolist()),
            "belady_optimal_cold": belady(ids, cap),
            "lru_warmed": lru_with_pinned(ids, order, cap, 0.0),
        }
        for p in (0.5, 0.8, 1.0):
            row[f"lru_pinned_{int(p * 100)}"] = lru_with_pinned(ids, order, cap, p)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
