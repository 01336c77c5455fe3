"""Train TIDE memory on a frozen pretrained backbone (SmolLM2-135M): only the K tables, their
gammas and the per-layer routers learn; every backbone weight stays as shipped.

  python3 scripts/gguf_to_safetensors.py SmolLM2-135M-Instruct.Q4_1.gguf /tmp/smollm2
  python3 train/smollm2_memory.py --backbone /tmp/smollm2 --corpus .cache/corpus --k 4 \
      --tokens 12000000 --out /tmp/smollm2-tide-k4

--corpus is train/corpus.py's output (train.txt, heldout.txt), tokenised here with the backbone's
own tokenizer. Writes to --out:
  memory.safetensors  the trained memory (docs/format.md; 4-bit rows by default) with
                      tide.token_counts, ready for `tide ... --model X.gguf --memory memory.safetensors`
  metrics.json        held-out results of the backbone alone and with the memory (perplexity, CE and
                      NULL weight by frequency decile, NULL weight by layer), the same with the exported
                      (quantised) rows, a per-layer ablation on the first --ablate-tokens, training log

Initialisation (a documented choice, models.md §2): E_k ~ N(0, 0.02), W_r = 0 (every slot 1/(K+1)),
and gamma_k = --gamma-init (0.05) rather than 1: a pretrained residual stream is small at the
bottom (SmolLM2's embedding rows have RMS ~0.14), and unit-RMS memory rows would start by drowning
it. The metrics record the held-out CE at initialisation so the choice can be judged.
Training runs in bf16 autocast on a GPU (f32 master weights; AdamW without weight decay, train.py's
warmup + cosine schedule and batch sampler);
evaluation runs in f32.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

import evaluate
import export
import train
from load import load
from model import TideLM


def tokenize(tok_path, text_path, whole):
    """Ids of a text file. `whole`: one encode of the whole text (as `tide eval` does);
    otherwise paragraph by paragraph in parallel batches (training data, boundaries don't matter)."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tok_path)
    text = open(text_path, encoding="utf-8").read()
    if whole:
        return np.asarray(tok.encode(text, add_special_tokens=False).ids, dtype=np.uint16)
    paras = [p + "\n\n" for p in text.split("\n\n")]
    ids = []
    for i in range(0, len(paras), 4096):
        for e in tok.encode_batch(paras[i:i + 4096], add_special_tokens=False):
            ids.extend(e.ids)
    return np.asarray(ids, dtype=np.uint16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", required=True, help="HF directory of the frozen model")
    ap.add_argument("--corpus", required=True, help="directory with train.txt and heldout.txt")
    ap.add_argument("--out", required=True)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=12_000_000)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--gamma-init", type=float, default=0.05)
    ap.add_argument("--z-loss", type=float, default=1e-6)
    ap.add_argument("--rows", default="q4_1", choices=["q4_1", "q8_0", "f16", "f32"])
    ap.add_argument("--eval-tokens", type=int, default=0, help="held-out tokens to evaluate (0: all)")
    ap.add_argument("--ablate-tokens", type=int, default=16384)
    ap.add_argument("--eval-every", type=int, default=0, help="steps between held-out checks")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-train-seconds", type=float, default=0,
                    help="stop training early after this long (0: no limit); the log says so")
    args = ap.parse_args()
    if args.k < 1 or args.seq < 1 or args.batch < 1 or args.warmup < 1:
        ap.error("--k, --seq, --batch and --warmup must each be at least 1")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()

    tok_path = os.path.join(args.backbone, "tokenizer.json")
    train_ids = tokenize(tok_path, os.path.join(args.corpus, "train.txt"), whole=False)
    held = tokenize(tok_path, os.path.join(args.corpus, "heldout.txt"), whole=True)
    backbone, _ = load(args.backbone)
    cfg = backbone.cfg
    counts = np.bincount(train_ids, minlength=cfg.vocab)
    if args.eval_tokens:
        held = held[:args.eval_tokens]
    print(f"tokens: {train_ids.size} train, {held.size} held-out; vocab {cfg.vocab}, "
          f"{int((counts > 0).sum())} ids seen in training ({time.time() - t_start:.0f} s)", flush=True)

    cfg.k = args.k
    model = TideLM(cfg)
    missing, unexpected = model.load_state_dict(backbone.state_dict(), strict=False)
    assert not unexpected and all(m.startswith("memory.") or ".router." in m for m in missing), missing
    del backbone
    with torch.no_grad():
        model.memory.tables.normal_(0.0, 0.02)
        model.memory.gamma.fill_(args.gamma_init)
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = list(model.memory.parameters()) + [b.router.weight for b in model.layers]
    for p in trainable:
        p.requires_grad_(True)
    model.to(device)
    n_train = sum(p.numel() for p in trainable)
    n_all = sum(p.numel() for p in model.parameters())
    torch.backends.cuda.matmul.allow_tf32 = False

    everything_off = tuple(range(cfg.n_layers))
    base = evaluate.evaluate(model, held, counts, args.seq, layers_off=everything_off)
    base["null_by_decile"] = base["null_by_layer"] = None  # the routers don't act with memory off
    at_init = evaluate.evaluate(model, held[:args.ablate_tokens], counts, args.seq)
    print(f"backbone alone: held-out ppl {base['ppl']:.3f} (CE {base['ce']:.4f}); with untrained "
          f"memory on the first {args.ablate_tokens} tokens: CE {at_init['ce']:.4f}", flush=True)

    # train.py's schedule (linear warmup, cosine down to 10%) and batch sampler.
    opt = torch.optim.AdamW(trainable, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    schedule = {"lr": args.lr, "warmup_steps": args.warmup, "min_lr_frac": 0.1}
    per_step = args.batch * args.seq
    steps = max(1, args.tokens // per_step)
    batches = train.batches(train_ids, args.batch, args.seq, np.random.default_rng(args.seed))
    print(f"training {n_train/1e6:.1f}M of {n_all/1e6:.1f}M parameters (K={args.k}): {steps} steps "
          f"x {per_step} tokens on {device}", flush=True)
    log, checks = [], []
    stopped_early = None
    t0 = time.time()
    model.train()
    for step in range(steps):
        lr = train.lr_at(step, steps, schedule)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = (t.to(device) for t in next(batches))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x).float()
        ce = F.cross_entropy(logits.view(-1, cfg.vocab), y.reshape(-1))
        loss = ce + args.z_loss * torch.logsumexp(logits, dim=-1).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        if step % 25 == 0 or step == steps - 1:
            done = (step + 1) * per_step
            rate = done / (time.time() - t0)
            print(f"step {step + 1}/{steps}  tokens {done/1e6:.2f}M  loss {ce.item():.4f}  "
                  f"lr {lr:.2e}  {rate:.0f} tok/s  eta {(steps - step - 1) * per_step / rate:.0f} s",
                  flush=True)
            log.append({"step": step + 1, "tokens": done, "loss": ce.item(), "lr": lr})
        if args.eval_every and (step + 1) % args.eval_every == 0 and step + 1 < steps:
            ev = evaluate.evaluate(model, held, counts, args.seq)
            checks.append({"step": step + 1, "tokens": (step + 1) * per_step, "ce": ev["ce"]})
            print(f"  held-out CE {ev['ce']:.4f} (backbone {base['ce']:.4f})", flush=True)
        if args.max_train_seconds and time.time() - t0 > args.max_train_seconds and step + 1 < steps:
            stopped_early = step + 1
            print(f"stopping after {step + 1} of {steps} steps: --max-train-seconds", flush=True)
            break
    train_s = time.time() - t0

    tide = evaluate.evaluate(model, held, counts, args.seq)
    print(f"with memory: held-out ppl {tide['ppl']:.3f} (CE {tide['ce']:.4f})", flush=True)
    ablate_all = evaluate.evaluate(model, held[:args.ablate_tokens], counts, args.seq)["ppl"]
    ablate = [evaluate.evaluate(model, held[:args.ablate_tokens], counts, args.seq,
                                layers_off=(li,))["ppl"] for li in range(cfg.n_layers)]

    # Export what the runtime reads, then evaluate exactly those (quantised) rows.
    sd = model.state_dict()
    tables = sd["memory.tables"].float().cpu().numpy()
    gammas = sd["memory.gamma"].float().cpu().numpy()
    routers = np.stack([sd[f"layers.{i}.router.weight"].float().cpu().numpy()
                        for i in range(cfg.n_layers)])
    tensors, meta = export.memory_tensors(tables, gammas, routers, cfg.eps, rows=args.rows)
    tensors["tide.token_counts"] = counts.astype(np.int64)
    mem_path = os.path.join(args.out, "memory.safetensors")
    save_file(tensors, mem_path, metadata=meta)
    exported, _ = load(args.backbone, memory_file=mem_path)
    exported.to(device)
    tide_exported = evaluate.evaluate(exported, held, counts, args.seq)
    first_exported = evaluate.evaluate(exported, held[:args.ablate_tokens], counts, args.seq)
    print(f"exported ({args.rows}) rows: held-out ppl {tide_exported['ppl']:.3f}; on the first "
          f"{args.ablate_tokens} tokens {first_exported['ppl']:.4f}", flush=True)

    metrics = {
        "backbone": os.path.basename(args.backbone.rstrip("/")), "k": args.k, "rows": args.rows,
        "train_tokens_seen": (stopped_early or steps) * per_step, "stopped_early_at_step": stopped_early, "corpus_train_tokens": int(train_ids.size),
        "heldout_tokens": int(held.size), "seq": args.seq, "batch": args.batch, "lr": args.lr,
        "gamma_init": args.gamma_init, "trained_parameters": n_train, "device": str(device),
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
        "train_seconds": round(train_s, 1), "baseline": base, "tide": tide,
        "tide_exported": tide_exported, "tide_exported_first_tokens": first_exported, "ce_at_init_first_tokens": at_init["ce"],
        "ablate_tokens": min(args.ablate_tokens, int(held.size)), "ablate_ppl_all": ablate_all,
        "ablate_ppl": ablate, "checks": checks, "log": log,
    }
    json.dump(metrics, open(os.path.join(args.out, "metrics.json"), "w"), indent=1)
    print(json.dumps({"ppl": [base["ppl"], tide["ppl"], tide_exported["ppl"]],
                      "rarest_ce": [base["ce_by_decile"][0], tide["ce_by_decile"][0]],
                      "common_ce": [base["ce_by_decile"][9], tide["ce_by_decile"][9]]}), flush=True)
    print(f"done in {time.time() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
