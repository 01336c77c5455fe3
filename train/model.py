"""A LLaMA-style decoder with TIDE memory (K token-indexed tables + a per-layer router).

K = 0 is the plain backbone. The maths is ../shared/spec/models.md §1-2 as recorded in docs/format.md:
  M_k(v)  = RMSNorm(E_k[v]) * gamma_k                      (computed once per token)
  alpha^l = softmax(W_r^l n) over K+1 slots, slot K = NULL  (n = RMSNorm_ffn(h~), the FFN input)
  h       = h~ + FFN(n) + sum_k alpha^l_k M_k(x_t)
RoPE uses the "rotate half" pairing, as Hugging Face LLaMA does, so exports load as HF checkpoints.

LIMe (v2, ../shared/spec/models.md §4, `lime=True`): layer l >= 1 replaces its raw (pre-RoPE) K
and V by a static linear mix over the KV heads of layers 0..l of the same token,
  KV_mix^l = S^l @ [KV_0; ...; KV_l],  S^l [R, (l+1) R]  (R = KV heads; layer-major columns),
one S^l for K and V alike, no softmax; RoPE and attention follow as usual. S^l starts as the
identity on the layer's own heads, so an untrained LIMe model is the backbone.

Engram (`engram_layers`, train/engram.py): hashed 2- and 3-gram tables read through a scalar
context gate and a short causal convolution, added to the residual before attention at those
layers.
"""
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from engram import Engram, layer_primes


@dataclass
class ModelConfig:
    vocab: int = 8192
    dim: int = 192
    n_layers: int = 6
    n_heads: int = 6
    n_kv_heads: int = 2
    ffn_dim: int = 512
    ctx: int = 256
    rope_theta: float = 10000.0
    eps: float = 1e-5
    k: int = 0
    lime: bool = False
    # Engram: the layers it is injected at (none: off), hash heads per n-gram order, the width
    # of one head's table row, the smallest table size (each table takes the next free prime)
    # and the seed of the hash multipliers.
    engram_layers: tuple = ()
    engram_heads: int = 4
    engram_head_dim: int = 32
    engram_rows: int = 12289
    engram_seed: int = 0

    def __post_init__(self):
        self.engram_layers = tuple(self.engram_layers)

    @property
    def head_dim(self):
        return self.dim // self.n_heads

    def to_dict(self):
        return asdict(self)


def rms_norm(x, weight, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * weight


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


def rope_tables(cfg, positions):
    hd = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = positions.double()[:, None] * inv[None, :]
    return ang.cos().float(), ang.sin().float()


def apply_rope(x, cos, sin):
    # x [B, heads, T, hd]; rotate-half: element i pairs with i + hd/2.
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg, layer=0):
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.q_proj = nn.Linear(cfg.dim, cfg.n_heads * hd, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * hd, cfg.dim, bias=False)
        # LIMe's S^l [R, (l+1) R]; the identity on this layer's own heads to start.
        self.lime_mix = None
        if cfg.lime and layer > 0:
            r = cfg.n_kv_heads
            s = torch.zeros(r, (layer + 1) * r)
            s[:, layer * r:] = torch.eye(r)
            self.lime_mix = nn.Parameter(s)

    def forward(self, x, cos, sin, kv_raw=None):
        """kv_raw (LIMe): the raw (k, v) [B, R, T, hd] of the layers before; this layer's are
        appended."""
        c = self.cfg
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, c.n_heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, c.n_kv_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, c.n_kv_heads, c.head_dim).transpose(1, 2)
        if kv_raw is not None:
            kv_raw.append((k, v))
            if self.lime_mix is not None:
                ks = torch.cat([kr for kr, _ in kv_raw], dim=1)  # [B, (l+1) R, T, hd]
                vs = torch.cat([vr for _, vr in kv_raw], dim=1)
                mix = self.lime_mix.type_as(ks)
                k = torch.einsum("rj,bjtd->brtd", mix, ks)
                v = torch.einsum("rj,bjtd->brtd", mix, vs)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rep = c.n_heads // c.n_kv_heads
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg, layer=0, engram_primes=None):
        super().__init__()
        self.engram = Engram(cfg, layer, engram_primes) if engram_primes else None
        self.input_layernorm = RMSNorm(cfg.dim, cfg.eps)
        self.self_attn = Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.eps)
        self.mlp = MLP(cfg)
        # Router W_r^l [K+1, d], no bias; zero init gives every slot 1/(K+1) at the start.
        self.router = nn.Linear(cfg.dim, cfg.k + 1, bias=False) if cfg.k > 0 else None
        if self.router is not None:
            nn.init.zeros_(self.router.weight)

    def forward(self, h, cos, sin, mem, use_memory=True, kv_raw=None, xc=None):
        if self.engram is not None:
            h = h + self.engram(h, xc)
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, kv_raw)
        n = self.post_attention_layernorm(h)
        out = h + self.mlp(n)
        alpha = None
        if self.router is not None:
            alpha = torch.softmax(self.router(n).float(), dim=-1)
            if use_memory:
                # NULL (last slot) has a zero vector: it only takes weight away from the blocks.
                out = out + torch.einsum("btk,btkd->btd", alpha[..., :-1].type_as(mem), mem)
        return out, alpha


class Memory(nn.Module):
    """K tables E_k [V, d] with one RMSNorm gamma per block."""

    def __init__(self, cfg):
        super().__init__()
        self.eps = cfg.eps
        self.tables = nn.Parameter(torch.randn(cfg.k, cfg.vocab, cfg.dim) * 0.02)
        self.gamma = nn.Parameter(torch.ones(cfg.k, cfg.dim))
        # Pre-normalised rows (an export form): the tables already hold RMSNorm(E) * gamma.
        self.normalized = False

    def forward(self, ids):
        rows = self.tables[:, ids]  # [K, B, T, d]
        if self.normalized:
            return rows.permute(1, 2, 0, 3)
        m = rms_norm(rows, self.gamma[:, None, None, :], self.eps)
        return m.permute(1, 2, 0, 3)  # [B, T, K, d]


class TideLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab, cfg.dim)
        primes = layer_primes(cfg)
        self.layers = nn.ModuleList(Block(cfg, li, primes.get(li)) for li in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.eps)
        self.memory = Memory(cfg) if cfg.k > 0 else None
        # Engram's token-id compression (identity until set_compression gives the tokenizer's).
        self.register_buffer("engram_compress", torch.arange(cfg.vocab) if cfg.engram_layers
                             else None)
        keep = ("router", "lime_mix", "engram.tables", "engram.conv")
        for name, p in self.named_parameters():
            if p.dim() == 2 and not any(k in name for k in keep):
                nn.init.normal_(p, std=0.02)
        # Scale the residual-writing projections by depth (GPT-2 style) for stable small-model training.
        for blk in self.layers:
            nn.init.normal_(blk.self_attn.o_proj.weight, std=0.02 / (2 * cfg.n_layers) ** 0.5)
            nn.init.normal_(blk.mlp.down_proj.weight, std=0.02 / (2 * cfg.n_layers) ** 0.5)

    def forward(self, ids, layers_off=(), return_alpha=False):
        """ids [B, T] -> logits [B, T, V] (tied LM head); with return_alpha, also the router
        weights [B, T, L, K+1]. `layers_off` removes those layers' memory injection (ablation)."""
        b, t = ids.shape
        cos, sin = rope_tables(self.cfg, torch.arange(t, device=ids.device))
        cos, sin = cos.to(ids.device), sin.to(ids.device)
        h = self.embed_tokens(ids)
        mem = self.memory(ids).type_as(h) if self.memory is not None else None
        alphas = []
        kv_raw = [] if self.cfg.lime else None
        xc = self.engram_compress[ids] if self.engram_compress is not None else None
        for li, blk in enumerate(self.layers):
            h, a = blk(h, cos, sin, mem, use_memory=li not in layers_off, kv_raw=kv_raw, xc=xc)
            alphas.append(a)
        logits = F.linear(self.norm(h), self.embed_tokens.weight)
        if return_alpha:
            al = torch.stack(alphas, dim=2) if self.memory is not None else None
            return logits, al
        return logits

    def set_compression(self, table):
        """Engram's token-id compression table (int64 [vocab], engram.compression_table)."""
        self.engram_compress.copy_(torch.as_tensor(table, dtype=torch.int64))
