"""Engram (../shared/spec/models.md §4): hashed n-gram memory injected before attention.

Per Engram layer l and position t, with x'_t the compressed id of token t (a token-id
compression table folds ids whose normalised text is equal) and PAD = vocab for positions
before the start:
  s_n   = XOR_{j<n} (x'_{t-j} * r^l_j)                 n in {2, 3}; r^l odd, seeded per layer
  z_n,k = s_n mod p^l_{n,k}                            H heads per order, distinct primes
  e_t   = concat_{n,k} T^l_{n,k}[z_n,k]                [2 * H * Dh]
  k, v  = W_K e + b_K, W_V e + b_V                     [d] each
  g     = sigmoid(signed_sqrt(RMSNorm_h(h) . RMSNorm_k(k) / sqrt(d)))
  v~    = g v
  Y     = v~ + SiLU(sum_i w[:, i] * RMSNorm_c(v~)_{t - 9 + 3 i})   (depthwise, kernel 4,
                                                                   dilation 3, causal)
  h     = h + Y   (before the layer's attention)
The multipliers are drawn below 2^63 / (vocab + 1), so x' * r never overflows a signed 64-bit
integer and the runtime's u64 arithmetic gives the same s. Multipliers and primes are
exported as tensors: the runtime reads them rather than re-deriving them from the seed.
"""
import math
import re
import unicodedata

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ORDERS = (2, 3)
KERNEL, DILATION = 4, 3


def is_prime(n):
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def layer_primes(cfg):
    """{layer: [[p per head] per order]}: distinct primes >= cfg.engram_rows, taken in
    order (layer, order, head) so every table of the model has its own modulus."""
    out, p = {}, cfg.engram_rows - 1
    for layer in cfg.engram_layers:
        rows = []
        for _ in ORDERS:
            heads = []
            for _ in range(cfg.engram_heads):
                p += 1
                while not is_prime(p):
                    p += 1
                heads.append(p)
            rows.append(heads)
        out[layer] = rows
    return out


def multipliers(cfg, layer):
    half = (2**63 - 1) // (cfg.vocab + 1) // 2
    rng = np.random.default_rng(cfg.engram_seed + 1_000_003 * layer)
    return rng.integers(0, half, size=max(ORDERS), dtype=np.int64) * 2 + 1


def normalise(text):
    """NFKC, NFD, accents stripped, lowercase, whitespace runs to one space; a token that is
    all whitespace stays one space, any other is stripped."""
    s = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text))
    s = "".join(c for c in s if not unicodedata.combining(c)).lower()
    s = re.sub(r"\s+", " ", s)
    return s if s == " " else s.strip()


def compression_table(tokenizer, vocab):
    """int64 [vocab]: the compressed id of every token id (first-seen order). Ids whose
    decoded text is not whole UTF-8, special tokens and ids the tokenizer lacks keep an id
    of their own."""
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values()}
    keys, out = {}, np.zeros(vocab, dtype=np.int64)
    for i in range(vocab):
        piece = tokenizer.id_to_token(i)
        text = tokenizer.decode([i], skip_special_tokens=False) if piece is not None else None
        if piece is None or piece in special or text is None or "\ufffd" in text:
            key = ("id", i)
        else:
            key = ("text", normalise(text))
        out[i] = keys.setdefault(key, len(keys))
    return out


class Engram(nn.Module):
    def __init__(self, cfg, layer, primes):
        super().__init__()
        from model import RMSNorm  # model.py imports this module
        self.vocab, self.dim = cfg.vocab, cfg.dim
        h, dh = cfg.engram_heads, cfg.engram_head_dim
        self.register_buffer("multipliers", torch.from_numpy(multipliers(cfg, layer)))
        p = torch.tensor(primes, dtype=torch.int64)  # [orders, H]
        self.register_buffer("primes", p)
        self.register_buffer("offsets", (torch.cumsum(p.flatten(), 0) - p.flatten()).view_as(p))
        # All heads' tables in one matrix (rows at `offsets`); exported one tensor per head.
        # N(0, 0.02) like the other embeddings: with N(0, 1) rows (and Conv1d's default taps)
        # the untrained branch added noise 20x the embeddings' scale, and a first training run
        # stalled (loss 6.9 against the baseline's 5.9 after 0.5M tokens).
        self.tables = nn.Parameter(torch.randn(int(p.sum()), dh) * 0.02)
        d_mem = len(ORDERS) * h * dh
        self.key_proj = nn.Linear(d_mem, cfg.dim)
        self.value_proj = nn.Linear(d_mem, cfg.dim)
        nn.init.zeros_(self.key_proj.bias)
        nn.init.zeros_(self.value_proj.bias)
        self.norm_h = RMSNorm(cfg.dim, cfg.eps)
        self.norm_k = RMSNorm(cfg.dim, cfg.eps)
        self.norm_c = RMSNorm(cfg.dim, cfg.eps)
        # Depthwise conv taps [d, 4]; tap i reads position t - 9 + 3 i. Zero to start, so an
        # untrained branch adds only the (small) gated value.
        self.conv = nn.Parameter(torch.zeros(cfg.dim, KERNEL))

    def indices(self, xc):
        """xc [B, T] compressed ids -> table rows [B, T, orders * H] (offsets included)."""
        t = xc.shape[1]
        m = self.multipliers
        s = xc * m[0]
        out = []
        for oi, n in enumerate(ORDERS):
            for j in range(1 if oi == 0 else ORDERS[oi - 1], n):
                prev = F.pad(xc, (j, 0), value=self.vocab)[:, :t]
                s = s ^ (prev * m[j])
            out.append((s[..., None] % self.primes[oi]) + self.offsets[oi])
        return torch.cat(out, dim=-1)

    def forward(self, h, xc):
        b, t = xc.shape
        e = self.tables[self.indices(xc)].reshape(b, t, -1).type_as(h)
        k = self.key_proj(e)
        v = self.value_proj(e)
        dot = (self.norm_h(h) * self.norm_k(k)).sum(-1, keepdim=True) / math.sqrt(self.dim)
        g = torch.sigmoid(dot.abs().clamp_min(1e-6).sqrt() * dot.sign())
        vt = g * v
        c = F.pad(self.norm_c(vt).transpose(1, 2), ((KERNEL - 1) * DILATION, 0))  # [B, d, T+9]
        w = self.conv.type_as(h)
        conv = sum(w[:, i, None] * c[:, :, DILATION * i:DILATION * i + t] for i in range(KERNEL))
        return vt + F.silu(conv.transpose(1, 2))

