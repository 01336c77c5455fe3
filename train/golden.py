"""Golden fixtures for the Rust tests, from the PyTorch model (an independent implementation).

  python train/golden.py tiny            -> tests/fixtures/tiny_tide/
  python train/golden.py lime            -> tests/fixtures/tiny_lime/
  python train/golden.py engram          -> tests/fixtures/tiny_engram/
  python train/golden.py tide_lime       -> tests/fixtures/tiny_tide_lime/
  python train/golden.py model DIR OUT   -> OUT (golden.json for a committed model)
  python train/golden.py memory HF DIR OUT  -> OUT (a memory model's folder DIR, e.g.
                                             models/smollm2-tide, on the backbone's HF folder
                                             HF, e.g. scripts/smollm2-hf.sh's)

`tiny` builds a small random TIDE model (K=3, random gammas and routers so every term matters),
exports it with 4-bit rows inline (model.safetensors, f32 backbone) plus two separate memory
files (memory_q8_0.safetensors raw rows + gamma; memory_f16_normalized.safetensors pre-normalised
rows), then reloads each export (decoding the rows with numpy) and records, in float64, the
logits at every position and the router weights [token][layer][K+1] for fixed id sequences.
`lime` does the same for a small random LIMe model (K = 0, 3 layers, random mixes S^l).
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import export, memory_tensors  # noqa: E402
from load import load  # noqa: E402
from model import ModelConfig, TideLM  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABLATE_TOKENS = 1024


@torch.no_grad()
def run(model, seqs):
    model = model.double()
    out = []
    for ids in seqs:
        logits, alpha = model(torch.tensor([ids]), return_alpha=True)
        out.append({
            "ids": ids,
            "logits": logits[0].tolist(),
            "router": alpha[0].tolist() if alpha is not None else None,
        })
    return out


def small_model(seed, **kw):
    """A small random model (vocab 96, width 64, 4 heads over 2 KV heads) with every matrix
    drawn from N(0, 0.15), so that every term of the forward matters."""
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab=96, dim=64, n_heads=4, n_kv_heads=2, ffn_dim=128, ctx=64,
                      rope_theta=10000.0, eps=1e-5, **kw)
    model = TideLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.15)
    return cfg, model


def tiny():
    out = os.path.join(REPO, "tests/fixtures/tiny_tide")
    cfg, model = small_model(7, n_layers=2, k=3)
    with torch.no_grad():
        for blk in model.layers:
            blk.router.weight.normal_(0, 0.3)
            blk.input_layernorm.weight.uniform_(0.5, 1.5)
            blk.post_attention_layernorm.weight.uniform_(0.5, 1.5)
        model.memory.tables.normal_(0, 0.5)
        model.memory.gamma.uniform_(0.2, 1.5)
    counts = np.arange(cfg.vocab, dtype=np.int64)[::-1] * 3
    export(model, None, counts, out, rows="q4_1", backbone_dtype=np.float32)
    sd = model.state_dict()
    tables = sd["memory.tables"].numpy()
    gammas = sd["memory.gamma"].numpy()
    routers = np.stack([sd[f"layers.{i}.router.weight"].numpy() for i in range(cfg.n_layers)])
    for name, rows, norm in [("memory_q8_0.safetensors", "q8_0", False),
                             ("memory_f16_normalized.safetensors", "f16", True)]:
        t, meta = memory_tensors(tables, gammas, routers, cfg.eps, rows=rows, normalized=norm)
        save_file(t, os.path.join(out, name), metadata=meta)
    seqs = [[5, 17, 3, 88, 42, 42, 9, 0, 61, 95, 30, 12], [1]]
    golden = {"config": cfg.to_dict(), "seqs": {}}
    for variant in ["model.safetensors", "memory_q8_0.safetensors",
                    "memory_f16_normalized.safetensors"]:
        mem = None if variant == "model.safetensors" else os.path.join(out, variant)
        m, _ = load(out, memory_file=mem)
        golden["seqs"][variant] = run(m, seqs)
    # The backbone alone (memory removed), for the "K=0 equals the plain backbone" check.
    m, _ = load(out)
    m.memory = None
    for blk in m.layers:
        blk.router = None
    golden["seqs"]["backbone"] = run(m, seqs)
    json.dump(golden, open(os.path.join(out, "golden.json"), "w"))
    print("wrote", out)


def export_small(cfg, model, out):
    """Export a small random model with an f32 backbone and write golden.json beside it: its
    logits and router weights, reloaded from the export, for two fixed sequences."""
    export(model, None, None, out, backbone_dtype=np.float32)
    seqs = [[5, 17, 3, 88, 42, 42, 9, 0, 61, 95, 30, 12], [1]]
    m, _ = load(out)
    golden = {"config": cfg.to_dict(), "seqs": run(m, seqs)}
    json.dump(golden, open(os.path.join(out, "golden.json"), "w"))
    print("wrote", out)


def tiny_lime():
    out = os.path.join(REPO, "tests/fixtures/tiny_lime")
    cfg, model = small_model(11, n_layers=3, lime=True)
    with torch.no_grad():
        for blk in model.layers:
            blk.input_layernorm.weight.uniform_(0.5, 1.5)
            blk.post_attention_layernorm.weight.uniform_(0.5, 1.5)
            if blk.self_attn.lime_mix is not None:
                blk.self_attn.lime_mix.normal_(0, 0.7)
    export_small(cfg, model, out)


def tiny_tide_lime():
    """TIDE and LIMe in one small random model (K = 3, 3 layers, random routers, gammas and
    mixes): both terms at once, as the runtime must run them."""
    out = os.path.join(REPO, "tests/fixtures/tiny_tide_lime")
    cfg, model = small_model(17, n_layers=3, k=3, lime=True)
    with torch.no_grad():
        for blk in model.layers:
            blk.router.weight.normal_(0, 0.3)
            blk.input_layernorm.weight.uniform_(0.5, 1.5)
            if blk.self_attn.lime_mix is not None:
                blk.self_attn.lime_mix.normal_(0, 0.7)
        model.memory.tables.normal_(0, 0.5)
        model.memory.gamma.uniform_(0.2, 1.5)
    export_small(cfg, model, out)


def tiny_engram():
    """A small random Engram model: Engram at layers 0 and 2 of 3, 2 heads per order of 32-wide
    rows, tables of 31+ rows (so hashes collide), a compression table that folds ids in pairs,
    4-bit rows as exported. The sequences are longer than the convolution's reach (9)."""
    out = os.path.join(REPO, "tests/fixtures/tiny_engram")
    cfg, model = small_model(13, n_layers=3, engram_layers=(0, 2), engram_heads=2,
                             engram_head_dim=32, engram_rows=31, engram_seed=5)
    with torch.no_grad():
        for blk in model.layers:
            blk.input_layernorm.weight.uniform_(0.5, 1.5)
            if blk.engram is not None:
                blk.engram.tables.normal_(0, 1.0)
                blk.engram.key_proj.bias.normal_(0, 0.3)
                blk.engram.value_proj.bias.normal_(0, 0.3)
                for n in (blk.engram.norm_h, blk.engram.norm_k, blk.engram.norm_c):
                    n.weight.uniform_(0.5, 1.5)
        model.set_compression(np.arange(cfg.vocab) // 2)
    export(model, None, None, out, backbone_dtype=np.float32)
    seqs = [[5, 17, 3, 88, 42, 42, 9, 0, 61, 95, 30, 12, 4, 5, 17, 3, 88, 2, 7], [1]]
    m, _ = load(out)
    golden = {"config": {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in cfg.to_dict().items()}, "seqs": run(m, seqs)}
    json.dump(golden, open(os.path.join(out, "golden.json"), "w"))
    print("wrote", out)


def sample_text(corpus=".cache/corpus", out="tests/fixtures/heldout_sample.txt"):
    """A small, fixed sample of the held-out split: the first 3 chunks of each source's share."""
    docs = open(os.path.join(REPO, corpus, "heldout.txt"), encoding="utf-8").read().split(
        "\n<|endoftext|>\n")
    picks = [docs[0], docs[1], docs[len(docs) // 3], docs[len(docs) // 2], docs[-2], docs[-1]]
    text = "\n<|endoftext|>\n".join(picks)
    with open(os.path.join(REPO, out), "w", encoding="utf-8") as f:
        f.write(text)
    return text


def committed(model_dir, out_path, backbone=None, texts=None, eval_tokens=None, ablate=True):
    """golden.json of a committed model: top-32 logits and router weights of a few texts, and
    `tide eval`'s figures on the held-out sample. With `backbone` (an HF folder), model_dir is a
    memory model's folder whose memory.safetensors goes on that backbone."""
    if backbone:
        m, counts = load(backbone, memory_file=os.path.join(model_dir, "memory.safetensors"))
    else:
        m, counts = load(model_dir)
    from tokenizers import Tokenizer
    import evaluate
    tok = Tokenizer.from_file(os.path.join(backbone or model_dir, "tokenizer.json"))
    sample = os.path.join(REPO, "tests/fixtures/heldout_sample.txt")
    if not os.path.exists(sample):
        sample_text()
    ids = np.asarray(tok.encode(open(sample, encoding="utf-8").read()).ids, dtype=np.int64)
    window = min(m.cfg.ctx, 256)
    starts = None
    if eval_tokens:
        # `tide eval --windows N`'s choice: N of the text's windows, evenly spaced (src/eval.rs).
        every = list(range(0, ids.size - 1, window))
        n = eval_tokens // window
        starts = [every[i * len(every) // n] for i in range(n)]
    ev = evaluate.evaluate(m.double(), ids, counts, seq=window, starts=starts)
    if starts:
        ev["windows"] = len(starts)
    if m.cfg.k and ablate:
        # Layer-wise ablation on the first ABLATE_TOKENS tokens (keeps the Rust test short).
        ev["ablate_tokens"] = ABLATE_TOKENS
        ev["ablate_ppl_all"] = evaluate.evaluate(m, ids[:ABLATE_TOKENS], counts, seq=window)["ppl"]
        ev["ablate_ppl"] = [evaluate.evaluate(m, ids[:ABLATE_TOKENS], counts, seq=window,
                                              layers_off={l})["ppl"]
                            for l in range(m.cfg.n_layers)]
    texts = texts or ["In the beginning God created", "def main():\n    return 0",
                      "To be, or not to be"]
    seqs = [tok.encode(t).ids for t in texts]
    res = run(m, seqs)
    # Keep the fixture small: the 32 largest logits per position, and the router weights.
    for r, t in zip(res, texts):
        r["text"] = t
        top = []
        for row in r.pop("logits"):
            row = np.asarray(row)
            idx = np.argsort(-row)[:32]
            top.append({"ids": idx.tolist(), "logits": row[idx].tolist()})
        r["top"] = top
    json.dump({"model": os.path.basename(model_dir.rstrip("/")), "seqs": res,
               "eval": {"data": "tests/fixtures/heldout_sample.txt", "window": window, **ev}},
              open(out_path, "w"))
    print("wrote", out_path)


if __name__ == "__main__":
    if sys.argv[1] == "tiny":
        tiny()
    elif sys.argv[1] == "lime":
        tiny_lime()
    elif sys.argv[1] == "engram":
        tiny_engram()
    elif sys.argv[1] == "tide_lime":
        tiny_tide_lime()
    elif sys.argv[1] == "memory":
        committed(sys.argv[3], sys.argv[4], backbone=sys.argv[2], eval_tokens=1024, ablate=False,
                  texts=["In the beginning God created", "def main():\n    return 0",
                         "The quokka and the aardvark met in Ljubljana"])
    else:
        committed(sys.argv[2], sys.argv[3])
