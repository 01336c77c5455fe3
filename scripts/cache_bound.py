"""How far any row-cache policy can go on a text: the hit rate of Belady's optimal (offline)
cache, which knows every future request, warmed like the row store (the most frequent
training tokens first) and cold, against the LRU the row store runs (warmed, as `tide bench
--cache-sweep` does) and LRU beside a pinned set of the most frequent training tokens (a share
of the capacity that is never evicted).

Also, for each size: the share of requests that no demand cache warmed this way can serve (the
first request for each token outside the warm set), and, with TRAIN_TEXT, LRU that also
prefetches the training text's most frequent successors of each token read (an online policy
that may beat Belady's demand bound, at the cost of the bytes it prefetches), and LRU with or
without pinning warmed from counts that do not fit the text (the counts shuffled among ids).
And two online policies that weigh frequency as well as recency, ARC and W-TinyLFU (the
latter with or without the training counts as a prior), to show how close a better policy
than LRU gets to the bound.

One request per token, as the row store sees them (K rows of a token travel together).
Usage: cache_bound.py TOKENIZER_JSON TEXT MEMORY_SAFETENSORS [SHARES [TRAIN_TEXT]]
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


def arc(ids, order, cap):
    """Hit rate of ARC (Megiddo and Modha's adaptive replacement cache: a recency list and a
    frequency list whose split adapts to ghost hits), its frequency list warmed with the most
    frequent training tokens."""
    t1, b1, b2 = collections.OrderedDict(), collections.OrderedDict(), collections.OrderedDict()
    t2 = collections.OrderedDict((t, None) for t in reversed(order[:cap].tolist()))
    p = hits = 0

    def replace(x):
        if t1 and (len(t1) > p or (x in b2 and len(t1) == p)):
            b1[t1.popitem(last=False)[0]] = None
        else:
            b2[t2.popitem(last=False)[0]] = None

    for x in ids:
        if x in t1 or x in t2:
            hits += 1
            t1.pop(x, None)
            t2[x] = None
            t2.move_to_end(x)
        elif x in b1 or x in b2:
            if x in b1:
                p = min(cap, p + max(len(b2) // len(b1), 1))
            else:
                p = max(0, p - max(len(b1) // len(b2), 1))
            replace(x)
            b1.pop(x, None)
            b2.pop(x, None)
            t2[x] = None
        else:
            if len(t1) + len(b1) == cap:
                if len(t1) < cap:
                    b1.popitem(last=False)
                    replace(x)
                else:
                    t1.popitem(last=False)
            elif len(t1) + len(t2) + len(b1) + len(b2) >= cap:
                if len(t1) + len(t2) + len(b1) + len(b2) == 2 * cap:
                    b2.popitem(last=False)
                replace(x)
            t1[x] = None
    return hits / len(ids)


def w_tinylfu(ids, order, counts, cap, window, prior):
    """Hit rate of W-TinyLFU (a small LRU window admits every token; a token leaving it enters
    the main LRU only if it has been requested more often than the main LRU's victim), with
    exact counts in place of the sketch, each token's count starting at `prior` times its share
    of the training counts. The main LRU starts with the most frequent training tokens."""
    seen = collections.Counter()
    share = counts / counts.sum() * prior
    w = max(1, int(cap * window))
    m = cap - w
    main = collections.OrderedDict((t, None) for t in reversed(order[:m].tolist()))
    win = collections.OrderedDict()
    hits = 0
    for t in ids:
        seen[t] += 1
        if t in main:
            hits += 1
            main.move_to_end(t)
        elif t in win:
            hits += 1
            win.move_to_end(t)
        else:
            win[t] = None
            if len(win) > w:
                cand = win.popitem(last=False)[0]
                victim = next(iter(main))
                if seen[cand] + share[cand] > seen[victim] + share[victim]:
                    main.popitem(last=False)
                    main[cand] = None
    return hits / len(ids)


def first_sightings(ids, warm):
    """Share of requests for a token outside `warm` seen for the first time: misses for any
    demand cache that starts holding `warm`, whatever its size or policy."""
    warm, seen, n = set(warm), set(), 0
    for t in ids:
        if t not in warm and t not in seen:
            n += 1
        seen.add(t)
    return n / len(ids)


def successors(train_ids, vocab, top):
    """For each token, its `top` most frequent successors in the training ids (ties by id)."""
    a = np.asarray(train_ids, dtype=np.int64)
    pairs, counts = np.unique(a[:-1] * vocab + a[1:], return_counts=True)
    prev, nxt = pairs // vocab, pairs % vocab
    o = np.lexsort((nxt, -counts, prev))
    prev, nxt = prev[o], nxt[o]
    start = np.searchsorted(prev, np.arange(vocab))
    end = np.searchsorted(prev, np.arange(vocab), side="right")
    return [nxt[s:min(e, s + top)].tolist() for s, e in zip(start, end)]


def lru_prefetch(ids, order, cap, succ):
    """LRU warmed as the row store, which after each request also fetches the request's
    successors `succ[token]` that are not cached (most recent first). Returns the hit rate and
    the rows fetched per request (misses + prefetches)."""
    lru = collections.OrderedDict((t, None) for t in reversed(order[:cap].tolist()))
    hits = fetched = 0

    def put(t):
        nonlocal fetched
        fetched += 1
        lru[t] = None
        if len(lru) > cap:
            lru.popitem(last=False)

    for t in ids:
        if t in lru:
            hits += 1
            lru.move_to_end(t)
        else:
            put(t)
        for s in succ[t]:
            if s not in lru:
                put(s)
    return hits / len(ids), fetched / len(ids)


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
    tok = Tokenizer.from_file(tok_path)
    ids = tok.encode(open(text_path, encoding="utf-8").read()).ids
    train = sys.argv[5] if len(sys.argv) > 5 else None
    counts = token_counts(mem_path)
    vocab = len(counts)
    order = np.lexsort((np.arange(vocab), -counts))
    # Counts that do not fit the text (the same counts given to other ids, from a fixed seed):
    # what pinning costs when the warm-up's guess is wrong.
    shuffled = np.random.default_rng(0).permutation(counts)
    wrong = np.lexsort((np.arange(vocab), -shuffled))
    distinct = len(set(ids))
    succ = None
    if train:
        succ = successors(tok.encode(open(train, encoding="utf-8").read()).ids, vocab, 4)
    for share in shares:
        cap = int(vocab * share)
        row = {
            "share": share,
            "cache_tokens": cap,
            "text_tokens": len(ids),
            "distinct_tokens": distinct,
            # Requests for tokens the training split never had: a count-based warm-up skips them.
            "requests_unseen_in_training": float(np.mean(counts[np.asarray(ids)] == 0)),
            "belady_optimal_warmed": belady(ids, cap, order[:cap].tolist()),
            "belady_optimal_cold": belady(ids, cap),
            "lru_warmed": lru_with_pinned(ids, order, cap, 0.0),
            "first_sightings_outside_warm": first_sightings(ids, order[:cap].tolist()),
        }
        for p in (0.5, 0.8, 1.0):
            row[f"lru_pinned_{int(p * 100)}"] = lru_with_pinned(ids, order, cap, p)
        # Online policies that weigh how often a token came, not only how recently: none
        # gets near Belady's bound (a few settings of W-TinyLFU; the prior is in requests
        # spread over the text's length).
        row["arc_warmed"] = arc(ids, order, cap)
        for window in (0.01, 0.05):
            for prior in (0, 1, 5):
                key = f"w_tinylfu_window_{int(window * 100)}_prior_{prior}"
                row[key] = w_tinylfu(ids, order, counts, cap, window, prior * len(ids))
        row["w_tinylfu_window_5_prior_5_wrong_counts"] = w_tinylfu(
            ids, wrong, shuffled, cap, 0.05, 5 * len(ids))
        row["lru_warmed_wrong_counts"] = lru_with_pinned(ids, wrong, cap, 0.0)
        row["lru_pinned_80_wrong_counts"] = lru_with_pinned(ids, wrong, cap, 0.8)
        if succ:
            for top in (1, 2, 4):
                hit, rows = lru_prefetch(ids, order, cap, [x[:top] for x in succ])
                row[f"lru_prefetch_{top}_successors"] = {"hits": hit, "rows_per_token": rows}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
