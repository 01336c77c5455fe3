"""Train a TIDE (or K=0 baseline) model and export it to the runtime's format.

  python train/train.py --config train/configs/k4.json --out models/tide-k4
  torchrun --nproc_per_node=N train/train.py ...        # the same script under DDP

Data comes from train/corpus.py and train/tokenize_corpus.py (in --corpus). The token budget is
the config's train.tokens summed over all ranks. AdamW (betas 0.9/0.95, weight decay on matrices
only: not on embeddings, memory tables or norm gains), cosine LR with linear warmup, z-loss.
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from model import ModelConfig, TideLM
import engram
import evaluate
import export


def batches(data, batch, seq, rng):
    while True:
        starts = rng.integers(0, data.size - seq - 1, size=batch)
        x = np.stack([data[s:s + seq + 1] for s in starts]).astype(np.int64)
        yield torch.from_numpy(x[:, :-1]), torch.from_numpy(x[:, 1:])


def lr_at(step, total, tc):
    if step < tc["warmup_steps"]:
        return tc["lr"] * (step + 1) / tc["warmup_steps"]
    p = (step - tc["warmup_steps"]) / max(1, total - tc["warmup_steps"])
    lo = tc["lr"] * tc["min_lr_frac"]
    return lo + 0.5 * (tc["lr"] - lo) * (1 + math.cos(math.pi * min(1.0, p)))


def param_groups(model, wd):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # Matrices decay; embeddings, memory tables (TIDE's and Engram's), norm gains and
        # LIMe's mixing coefficients (an identity to start, not a weight to shrink) do not.
        keep = ("embed_tokens", "memory", "engram.tables", "lime_mix")
        if p.dim() == 2 and not any(k in name for k in keep):
            decay.append(p)
        else:
            no_decay.append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True, help="model directory to write")
    ap.add_argument("--corpus", default=".cache/corpus")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--tokens", type=int, default=0, help="override the config's token budget")
    args = ap.parse_args()
    conf = json.load(open(args.config))
    tc = conf["train"]
    if args.tokens:
        tc["tokens"] = args.tokens
    cfg = ModelConfig(**conf["model"])

    ddp = "RANK" in os.environ
    rank, world = 0, 1
    device = torch.device("cpu")
    if ddp:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        rank, world = dist.get_rank(), dist.get_world_size()
        if torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(tc["seed"])

    data = np.memmap(os.path.join(args.corpus, "train.bin"), dtype=np.uint16, mode="r")
    tokens_per_step = tc["batch"] * tc["seq"] * world
    steps = max(1, tc["tokens"] // tokens_per_step)
    model = TideLM(cfg)
    if cfg.engram_layers:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(os.path.join(args.corpus, "tokenizer.json"))
        comp = engram.compression_table(tok, cfg.vocab)
        model.set_compression(comp)
        print(f"engram: {cfg.vocab} token ids fold to {comp.max() + 1} compressed ids", flush=True)
    model = model.to(device)
    raw = model
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.AdamW(param_groups(raw, tc["weight_decay"]), lr=tc["lr"],
                            betas=tuple(tc["betas"]))
    rng = np.random.default_rng(tc["seed"] + rank)
    it = batches(data, tc["batch"], tc["seq"], rng)
    n_params = sum(p.numel() for p in raw.parameters())
    # Memory parameters: TIDE's tables and gammas, Engram's hashed tables.
    n_mem = sum(p.numel() for n, p in raw.named_parameters()
                if n.startswith("memory.") or "engram.tables" in n)
    if rank == 0:
        print(f"model: {n_params/1e6:.2f}M parameters ({n_mem/1e6:.2f}M in memory tables), "
              f"K={cfg.k}; {steps} steps x {tokens_per_step} tokens on {world} rank(s), {device}",
              flush=True)
    log = []
    t0 = time.time()
    for step in range(steps):
        lr = lr_at(step, steps, tc)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = next(it)
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        ce = F.cross_entropy(logits.view(-1, cfg.vocab), y.reshape(-1))
        z = torch.logsumexp(logits, dim=-1).pow(2).mean()
        loss = ce + tc["z_loss"] * z
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"])
        opt.step()
        if rank == 0 and (step % 20 == 0 or step == steps - 1):
            el = time.time() - t0
            done = (step + 1) * tokens_per_step
            rate = done / el
            eta = (steps - step - 1) * tokens_per_step / rate
            print(f"step {step+1}/{steps}  tokens {done/1e6:.2f}M  loss {ce.item():.4f}  "
                  f"lr {lr:.2e}  {rate:.0f} tok/s  eta {eta/60:.1f} min", flush=True)
            log.append({"step": step + 1, "tokens": done, "loss": ce.item(), "lr": lr})
    train_s = time.time() - t0
    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
        counts = np.load(os.path.join(args.corpus, "counts.npy"))
        held = np.fromfile(os.path.join(args.corpus, "heldout.bin"), dtype=np.uint16)
        metrics = evaluate.evaluate(raw.cpu(), held, counts, seq=cfg.ctx)
        metrics.update({"train_seconds": round(train_s, 1), "train_tokens": steps * tokens_per_step,
                        "parameters": n_params, "memory_parameters": n_mem, "config": conf,
                        "log": log})
        json.dump(metrics, open(os.path.join(args.out, "train_metrics.json"), "w"), indent=1)
        torch.save({"config": conf, "state": raw.state_dict()},
                   os.path.join(args.corpus, f"{os.path.basename(args.out.rstrip('/'))}.pt"))
        export.export(raw, os.path.join(args.corpus, "tokenizer.json"), counts, args.out)
        if cfg.k > 0:
            # The tables as trained (f16), for measuring compression against them.
            export.export_tables(raw, counts, os.path.join(args.out, "memory-f16.safetensors"))
        print(json.dumps({k: metrics[k] for k in ("ppl", "ce_by_decile", "null_by_decile")}),
              flush=True)
    if ddp:
        # Rank 0 evaluates and exports alone; the others wait here so that no rank tears the
        # gloo group down while a peer still holds it (that aborted rank 1 now and then).
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
