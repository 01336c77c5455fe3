"""Held-out evaluation: perplexity, cross-entropy by token-frequency decile, NULL weight by decile.

Deciles (the same definition as `tide eval`, docs/format.md): the vocabulary ids seen in training,
sorted by training count (ties by id), cut into 10 groups of equal size, rarest first; ids never
seen in training join the rarest decile. A target position counts in the decile of its target
token; the NULL weight at a position counts in the decile of the input token whose memory rows
are read there. The held-out ids are cut into consecutive windows of `seq` tokens (the last,
shorter window included); each window is one independent sequence.
"""
import numpy as np
import torch
import torch.nn.functional as F


def deciles(counts):
    seen = np.flatnonzero(counts > 0)
    order = seen[np.lexsort((seen, counts[seen]))]
    dec = np.zeros(counts.size, dtype=np.int64)
    for i, ids in enumerate(np.array_split(order, 10)):
        dec[ids] = i
    return dec


def spread(n_tokens, want, seq):
    """Start positions of about want // seq windows of `seq` tokens spread evenly over a text of
    n_tokens (every window whole, with the token after it as its last target), so that a
    subset samples every part of a text whose sources come one after another."""
    n = (n_tokens - 1) // seq
    k = max(1, min(n, want // seq))
    return [int(i * n / k) * seq for i in range(k)]


@torch.no_grad()
def evaluate(model, held, counts, seq, layers_off=(), starts=None):
    """`starts`: the windows' first positions (default: consecutive windows over all of held)."""
    model.eval()
    device = next(model.parameters()).device
    dec = deciles(counts)
    null_layer = 0.0  # sum over positions of the NULL weight, per layer
    ce_sum = np.zeros(10)
    ce_n = np.zeros(10)
    null_sum = np.zeros(10)
    null_n = np.zeros(10)
    total, n = 0.0, 0
    for s in (range(0, held.size - 1, seq) if starts is None else starts):
        window = held[s:s + seq + 1].astype(np.int64)
        if window.size < 2:
            break
        x = torch.from_numpy(window[None, :-1]).to(device)
        y = window[1:]
        logits, alpha = model(x, layers_off=layers_off, return_alpha=True)
        ce = F.cross_entropy(logits[0].float(), torch.from_numpy(y).to(device),
                             reduction="none").cpu().numpy()
        total += ce.sum()
        n += ce.size
        np.add.at(ce_sum, dec[y], ce)
        np.add.at(ce_n, dec[y], 1)
        if alpha is not None:
            per_layer = alpha[0, :, :, -1].double().cpu()  # [T, L]
            null_layer = null_layer + per_layer.sum(0)
            null = per_layer.mean(dim=1).numpy()  # mean over layers
            np.add.at(null_sum, dec[window[:-1]], null)
            np.add.at(null_n, dec[window[:-1]], 1)
    model.train()
    out = {
        "tokens": int(n),
        "ce": float(total / n),
        "ppl": float(np.exp(total / n)),
        "ce_by_decile": (ce_sum / np.maximum(ce_n, 1)).tolist(),
        "count_by_decile": ce_n.astype(int).tolist(),
        "null_by_decile": (null_sum / np.maximum(null_n, 1)).tolist() if null_n.sum() else None,
        "null_by_layer": (null_layer / n).tolist() if null_n.sum() else None,
    }
    return out
