"""Train TIDE memory on a frozen pretrained backbone (SmolLM2-135M): only the K tables, their
gammas and the per-layer routers learn; every backbone weight stays as shipped. With
--mode finetune the same loop fine-tunes the whole backbone instead (K = 0): the control a user
would try instead of memory.

  scripts/smollm2-hf.sh                                  # prints the backbone's folder
  python3 train/smollm2_memory.py --backbone <folder> --corpus .cache/corpus --k 4 \\
      --tokens 2000000 --out runs/smollm2-k4 --checkpoint runs/smollm2-k4.ckpt
  ... the same command with --resume continues an interrupted run

--corpus is train/corpus.py's output (train.txt, heldout.txt, ood.txt), tokenised here with the
backbone's own tokenizer (cached beside the checkpoint). Writes to --out:
  memory.safetensors      the trained memory (docs/format.md; --rows, 4-bit by default) with
                          tide.token_counts, ready for `tide ... --model X.gguf --memory ...`
  memory-f16.safetensors  the same memory with f16 rows: the source `tide compress --memory` cuts
                          the shipped file from (memory mode)
  metrics.json            held-out and out-of-domain results of the backbone alone and trained
                          (perplexity, CE and NULL weight by frequency decile, NULL by layer),
                          the same with the exported rows, a per-layer ablation on the first
                          --ablate-tokens, the held-out CE curve against tokens, the training log

Resuming (a run of hours outlives a session): the checkpoint (--checkpoint) holds the trained
parameters, the optimiser's moments, the batch sampler's state, the log and the curve. It is
written every --checkpoint-every seconds, after the last step, and at SIGTERM / SIGINT / SIGHUP
(after the step in flight; exit status 75). --resume continues from it to the same result as an
uninterrupted run; it refuses a checkpoint of another mode, K, backbone or schedule and names
what differs. A checkpoint is replaced atomically (written beside it, then renamed).

Initialisation (a documented choice, models.md §2): E_k ~ N(0, 0.02), W_r = 0 (every slot 1/(K+1)),
and gamma_k = --gamma-init (0.05) rather than 1: a pretrained residual stream is small at the
bottom (SmolLM2's embedding rows have RMS ~0.14), and unit-RMS memory rows would start by drowning
it. Rows of ids never seen in training start (and stay) zero, so the memory adds nothing for
them: RMSNorm of a zero row is zero. The metrics record the held-out CE at initialisation.
AdamW without weight decay, train.py's warmup + cosine schedule and batch sampler; bf16 autocast
(f32 master weights) on a GPU and on CPUs with AMX (--precision), f32 in every evaluation.
"""
import argparse
import hashlib
import json
import os
import signal
import sys
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

CKPT_FORMAT = 1
# Arguments that shape the result: a resumed run must be given the same ones.
SCHEDULE = ("mode", "k", "tokens", "seq", "batch", "lr", "warmup", "gamma_init", "z_loss", "seed",
            "precision")
EXIT_INTERRUPTED = 75


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


class Text:
    """Token ids and the windows of `seq` tokens evaluated over them: all consecutive windows, or
    `tokens` worth spread evenly over the text (evaluate.spread: its sources come one after
    another, so a prefix would see one source)."""

    def __init__(self, ids, seq, tokens=0, starts=None):
        self.ids, self.seq = ids, seq
        if starts is None:
            n = ids.size - 1
            starts = (evaluate.spread(ids.size, tokens, seq) if tokens and tokens < n
                      else list(range(0, n, seq)))
        self.starts = starts

    def first(self, tokens):
        """The first windows, about `tokens` of them (the curve's and the ablation's subset)."""
        return Text(self.ids, self.seq, starts=self.starts[:max(1, tokens // self.seq)])

    @property
    def tokens(self):
        return sum(min(self.seq, self.ids.size - 1 - s) for s in self.starts)


def ev(model, text, counts, **kw):
    return evaluate.evaluate(model, text.ids, counts, text.seq, starts=text.starts, **kw)


def cpu_has_amx():
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX): there bf16 training
    runs several times faster than f32 (measured: 808 against 111 GFLOPS on one core)."""
    try:
        return "amx_bf16" in open("/proc/cpuinfo").read()
    except OSError:
        return False


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def backbone_identity(folder):
    """What a checkpoint must match: the weights' and the tokenizer's hashes."""
    return {"name": os.path.basename(os.path.abspath(folder)),
            "weights_sha256": file_sha256(os.path.join(folder, "model.safetensors")),
            "tokenizer_sha256": file_sha256(os.path.join(folder, "tokenizer.json"))}


def cached_ids(cache_dir, tok_path, text_path, whole):
    """tokenize(), kept as .npy under cache_dir keyed by the text's and the tokenizer's hashes."""
    key = hashlib.sha256((file_sha256(tok_path) + file_sha256(text_path) + str(whole)).encode())
    path = os.path.join(cache_dir, f"ids-{key.hexdigest()[:16]}.npy")
    if os.path.exists(path):
        return np.load(path)
    ids = tokenize(tok_path, text_path, whole)
    np.save(path + ".tmp.npy", ids)
    os.replace(path + ".tmp.npy", path)
    return ids


def build_model(args, backbone, counts):
    """The model to train and its trainable parameters, named (a stable order: the optimiser's
    state refers to them by position)."""
    cfg = backbone.cfg
    if args.mode == "finetune":
        return backbone, list(backbone.named_parameters())
    cfg.k = args.k
    model = TideLM(cfg)
    missing, unexpected = model.load_state_dict(backbone.state_dict(), strict=False)
    assert not unexpected and all(m.startswith("memory.") or ".router." in m for m in missing), missing
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        model.memory.tables.copy_(torch.randn(model.memory.tables.shape, generator=gen) * 0.02)
        model.memory.tables[:, torch.from_numpy(counts == 0)] = 0.0
        model.memory.gamma.fill_(args.gamma_init)
    for p in model.parameters():
        p.requires_grad_(False)
    named = [("memory.tables", model.memory.tables), ("memory.gamma", model.memory.gamma)]
    named += [(f"layers.{i}.router.weight", b.router.weight) for i, b in enumerate(model.layers)]
    for _, p in named:
        p.requires_grad_(True)
    return model, named


def check_resumable(ck, args, ident, path):
    """Refuse a checkpoint this run would not continue to the same result; name what differs."""
    if ck.get("format") != CKPT_FORMAT:
        sys.exit(f"{path}: not a checkpoint of this script (format {ck.get('format')!r}, "
                 f"expected {CKPT_FORMAT})")
    for key in ("weights_sha256", "tokenizer_sha256"):
        if ck["backbone"][key] != ident[key]:
            sys.exit(f"{path}: the checkpoint was trained on backbone '{ck['backbone']['name']}' "
                     f"({key} {ck['backbone'][key][:12]}), but --backbone {args.backbone} has "
                     f"{ident[key][:12]}: another backbone")
    for key in SCHEDULE:
        want, got = ck["args"][key], getattr(args, key)
        if want != got:
            what = "K" if key == "k" else f"--{key.replace('_', '-')}"
            sys.exit(f"{path}: the checkpoint is of a run with {what} {want}, this one asks "
                     f"{got}; resume with the same value (or start a new run without --resume)")


def save_checkpoint(path, state):
    tmp = path + ".partial"
    torch.save(state, tmp)
    os.replace(tmp, path)


class Interrupt:
    """Turns SIGTERM / SIGINT / SIGHUP into a flag the loop reads after each step."""

    def __init__(self):
        self.signal = None
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, self.handle)

    def handle(self, signum, _frame):
        self.signal = signal.Signals(signum).name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", required=True, help="HF directory of the frozen model")
    ap.add_argument("--corpus", required=True, help="directory with train.txt and heldout.txt "
                    "(and ood.txt for the out-of-domain figures)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode", choices=["memory", "finetune"], default="memory")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=2_000_000)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=None,
                    help="peak learning rate (default 3e-3 for memory, 5e-5 for finetune)")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--gamma-init", type=float, default=0.05)
    ap.add_argument("--z-loss", type=float, default=1e-6)
    ap.add_argument("--rows", default="q4_1", choices=["q4_1", "q8_0", "f16", "f32"])
    ap.add_argument("--eval-tokens", type=int, default=0,
                    help="held-out tokens to evaluate, in windows spread evenly over the whole "
                         "held-out text (0: all of it)")
    ap.add_argument("--ood-tokens", type=int, default=65536,
                    help="out-of-domain tokens to evaluate, spread likewise")
    ap.add_argument("--ablate-tokens", type=int, default=16384)
    ap.add_argument("--check-every", type=int, default=100_000,
                    help="training tokens between points of the held-out CE curve (0: none)")
    ap.add_argument("--check-tokens", type=int, default=16384,
                    help="held-out (and out-of-domain) tokens each curve point evaluates")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--precision", choices=["auto", "bf16", "f32"], default="auto",
                    help="training matmuls: bf16 autocast (f32 master weights) or f32; auto: bf16 "
                         "on a GPU and on CPUs with bf16 matrix units (AMX), else f32. "
                         "Evaluation is always f32")
    ap.add_argument("--checkpoint", default=None, help="checkpoint file (default: OUT/checkpoint.pt)")
    ap.add_argument("--checkpoint-every", type=float, default=300, help="seconds between checkpoints")
    ap.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    ap.add_argument("--stop-after-steps", type=int, default=0,
                    help="checkpoint and stop (status 75) after this many steps of this invocation, "
                         "as an interruption would (tests)")
    ap.add_argument("--export-only", action="store_true",
                    help="write the memory files of the checkpoint as it stands (a run in "
                         "progress) and progress.json (its curve, log and baseline), and stop: "
                         "no training, no evaluation")
    ap.add_argument("--skip-final", action="store_true",
                    help="after training, write the exports and metrics without the ablation")
    args = ap.parse_args()
    if args.mode == "finetune":
        args.k = 0
    elif args.k < 1:
        ap.error("--k must be at least 1 (use --mode finetune for the backbone alone)")
    if args.seq < 1 or args.batch < 1 or args.warmup < 1 or args.tokens < 1:
        ap.error("--tokens, --seq, --batch and --warmup must each be at least 1")
    if args.lr is None:
        args.lr = 3e-3 if args.mode == "memory" else 5e-5
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt_path = args.checkpoint or os.path.join(args.out, "checkpoint.pt")
    if args.export_only:
        args.resume = True
    if args.resume and not os.path.exists(ckpt_path):
        sys.exit(f"{ckpt_path}: no checkpoint to resume from")
    if not args.resume and os.path.exists(ckpt_path):
        sys.exit(f"{ckpt_path}: a checkpoint is already there; pass --resume to continue it, or "
                 "remove it to start again (it is never overwritten by a new run)")
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        if not os.path.exists(os.path.join(args.backbone, f)):
            sys.exit(f"--backbone {args.backbone}: {f} is missing (scripts/smollm2-hf.sh makes "
                     "SmolLM2's folder)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.precision == "auto":
        args.precision = "bf16" if device.type == "cuda" or cpu_has_amx() else "f32"
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    ckpt_dir = os.path.dirname(os.path.abspath(ckpt_path))
    os.makedirs(ckpt_dir, exist_ok=True)
    t_start = time.time()

    ident = backbone_identity(args.backbone)
    ck = None
    if args.resume:
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if args.export_only:
            # Nothing is trained: the checkpoint's own schedule describes it.
            for key in SCHEDULE:
                setattr(args, key, ck["args"][key])
        check_resumable(ck, args, ident, ckpt_path)

    tok_path = os.path.join(args.backbone, "tokenizer.json")
    train_ids = cached_ids(ckpt_dir, tok_path, os.path.join(args.corpus, "train.txt"), whole=False)
    held = cached_ids(ckpt_dir, tok_path, os.path.join(args.corpus, "heldout.txt"), whole=True)
    ood_path = os.path.join(args.corpus, "ood.txt")
    ood = cached_ids(ckpt_dir, tok_path, ood_path, whole=True) if os.path.exists(ood_path) else None
    backbone, _ = load(args.backbone)
    cfg = backbone.cfg
    counts = np.bincount(train_ids, minlength=cfg.vocab)
    # Evaluation subsets: windows spread over the whole text (its sources come one after
    # another), the same windows at every evaluation; the curve's points use the first of them.
    held = Text(held, args.seq, args.eval_tokens)
    ood = Text(ood, args.seq, args.ood_tokens) if ood is not None else None
    print(f"tokens: {train_ids.size} train, {held.tokens} held-out, "
          f"{0 if ood is None else ood.tokens} out-of-domain (evaluated); vocab {cfg.vocab}, "
          f"{int((counts > 0).sum())} ids seen in training ({time.time() - t_start:.0f} s)", flush=True)

    model, named = build_model(args, backbone, counts)
    trainable = [p for _, p in named]
    model.to(device)
    n_train = sum(p.numel() for p in trainable)
    n_all = sum(p.numel() for p in model.parameters())
    torch.backends.cuda.matmul.allow_tf32 = False
    opt = torch.optim.AdamW(trainable, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    rng = np.random.default_rng(args.seed)
    backbone_off = tuple(range(cfg.n_layers)) if args.mode == "memory" else ()

    def curve_point(tokens):
        # With memory off the K=4 model is the backbone; the fine-tuned model is its own.
        point = {"tokens": tokens,
                 "ce": ev(model, held.first(args.check_tokens), counts)["ce"]}
        if ood is not None:
            point["ood_ce"] = ev(model, ood.first(args.check_tokens), counts)["ce"]
        return point

    if ck is None:
        base = ev(model, held, counts, layers_off=backbone_off)
        base["null_by_decile"] = base["null_by_layer"] = None  # the routers don't act with memory off
        base_ood = ev(model, ood, counts, layers_off=backbone_off) if ood is not None else None
        state = {"format": CKPT_FORMAT, "backbone": ident,
                 "args": {k: getattr(args, k) for k in SCHEDULE},
                 "step": 0, "train_seconds": 0.0, "log": [], "checks": [curve_point(0)],
                 "base": base, "base_ood": base_ood}
        print(f"backbone alone: held-out ppl {base['ppl']:.3f} (CE {base['ce']:.4f}); curve at 0 "
              f"tokens: {state['checks'][0]}", flush=True)
    else:
        state = {k: v for k, v in ck.items() if k not in ("params", "opt", "rng")}
        with torch.no_grad():
            for name, p in named:
                p.copy_(ck["params"][name].to(device))
        opt.load_state_dict(ck["opt"])
        rng.bit_generator.state = ck["rng"]
        del ck
        print(f"resumed {ckpt_path} at step {state['step']} ({state['train_seconds']:.0f} s of "
              f"training so far)", flush=True)

    if args.export_only:
        if args.mode != "memory":
            sys.exit("--export-only: a fine-tuning run has no memory to export")
        export_memory(args, model, counts)
        # The run so far: its curve, log and baseline (metrics.json comes at the end).
        progress = {k: state[k] for k in ("step", "train_seconds", "checks", "log", "base",
                                          "base_ood", "args", "backbone")}
        progress["train_tokens_seen"] = state["step"] * args.batch * args.seq
        json.dump(progress, open(os.path.join(args.out, "progress.json"), "w"), indent=1)
        print(f"wrote the memory at step {state['step']} to {args.out}", flush=True)
        return

    def checkpoint():
        full = dict(state, params={n: p.detach().cpu().clone() for n, p in named},
                    opt=opt.state_dict(), rng=rng.bit_generator.state)
        save_checkpoint(ckpt_path, full)

    schedule = {"lr": args.lr, "warmup_steps": args.warmup, "min_lr_frac": 0.1}
    per_step = args.batch * args.seq
    steps = max(1, args.tokens // per_step)
    check_steps = max(1, args.check_every // per_step) if args.check_every else 0
    batches = train.batches(train_ids, args.batch, args.seq, rng)
    print(f"training {n_train/1e6:.1f}M of {n_all/1e6:.1f}M parameters ({args.mode}, K={args.k}): "
          f"{steps} steps x {per_step} tokens on {device}, from step {state['step']}", flush=True)
    interrupt = Interrupt()
    t0 = time.time()
    seg_t0, seg_step0 = t0, state["step"]
    last_ckpt = t0
    model.train()
    while state["step"] < steps:
        step = state["step"]
        lr = train.lr_at(step, steps, schedule)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = (t.to(device) for t in next(batches))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            logits = model(x).float()
        ce = F.cross_entropy(logits.view(-1, cfg.vocab), y.reshape(-1))
        loss = ce + args.z_loss * torch.logsumexp(logits, dim=-1).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        state["step"] = step + 1
        now = time.time()
        state["train_seconds"] += now - t0
        t0 = now
        if step % 25 == 0 or step == steps - 1:
            rate = (step + 1 - seg_step0) * per_step / (now - seg_t0)
            print(f"step {step + 1}/{steps}  tokens {(step + 1) * per_step / 1e6:.3f}M  loss "
                  f"{ce.item():.4f}  lr {lr:.2e}  {rate:.0f} tok/s  eta "
                  f"{(steps - step - 1) * per_step / rate:.0f} s", flush=True)
            state["log"].append({"step": step + 1, "tokens": (step + 1) * per_step,
                                 "loss": ce.item(), "lr": lr})
        if check_steps and (step + 1) % check_steps == 0 and step + 1 < steps:
            state["checks"].append(curve_point((step + 1) * per_step))
            print(f"  curve: {state['checks'][-1]}", flush=True)
            model.train()
            t0 = time.time()  # evaluation is not training time
        stop = interrupt.signal or (args.stop_after_steps and
                                    state["step"] - seg_step0 >= args.stop_after_steps)
        if stop or state["step"] == steps or time.time() - last_ckpt > args.checkpoint_every:
            checkpoint()
            last_ckpt = time.time()
            if stop:
                why = interrupt.signal or "--stop-after-steps"
                print(f"stopped at step {state['step']} of {steps} ({why}); checkpoint "
                      f"{ckpt_path}; continue with --resume", flush=True)
                sys.exit(EXIT_INTERRUPTED)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not state["checks"] or state["checks"][-1]["tokens"] != steps * per_step:
        state["checks"].append(curve_point(steps * per_step))
    finish(args, model, named, state, held, ood, counts, n_train, device, t_start)


def export_memory(args, model, counts):
    """memory.safetensors (--rows) and memory-f16.safetensors of the model's memory, in --out."""
    cfg = model.cfg
    sd = model.state_dict()
    tables = sd["memory.tables"].float().cpu().numpy()
    gammas = sd["memory.gamma"].float().cpu().numpy()
    routers = np.stack([sd[f"layers.{i}.router.weight"].float().cpu().numpy()
                        for i in range(cfg.n_layers)])
    for rows, name in ((args.rows, "memory.safetensors"), ("f16", "memory-f16.safetensors")):
        tensors, meta = export.memory_tensors(tables, gammas, routers, cfg.eps, rows=rows)
        tensors["tide.token_counts"] = np.asarray(counts, dtype=np.int64)
        save_file(tensors, os.path.join(args.out, name + ".partial"), metadata=meta)
        os.replace(os.path.join(args.out, name + ".partial"), os.path.join(args.out, name))


def finish(args, model, named, state, held, ood, counts, n_train, device, t_start):
    """Evaluate the trained model, export it, evaluate exactly the exported rows, write metrics."""
    cfg = model.cfg
    trained = ev(model, held, counts)
    trained_ood = ev(model, ood, counts) if ood is not None else None
    print(f"trained: held-out ppl {trained['ppl']:.3f} (CE {trained['ce']:.4f}), backbone "
          f"{state['base']['ppl']:.3f}", flush=True)
    metrics = {
        "backbone": state["backbone"], "mode": args.mode, "k": args.k, "rows": args.rows,
        "train_tokens_seen": state["step"] * args.batch * args.seq,
        "corpus_train_tokens": int(np.asarray(counts).sum()), "heldout_tokens": held.tokens,
        "ood_tokens": 0 if ood is None else ood.tokens, "seq": args.seq, "batch": args.batch,
        "lr": args.lr, "warmup": args.warmup, "gamma_init": args.gamma_init, "seed": args.seed,
        "trained_parameters": n_train, "device": str(device),
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(), "precision": args.precision, "train_seconds": round(state["train_seconds"], 1),
        "baseline": state["base"], "baseline_ood": state["base_ood"],
        "trained": trained, "trained_ood": trained_ood,
        "checks": state["checks"], "log": state["log"],
    }
    if args.mode == "memory":
        # The backbone alone on the curve's windows (the curve's first point is the memory at
        # initialisation; for fine-tuning it is the backbone itself).
        off = tuple(range(cfg.n_layers))
        metrics["baseline_check"] = {"ce": ev(model, held.first(args.check_tokens), counts,
                                              layers_off=off)["ce"]}
        if ood is not None:
            metrics["baseline_check"]["ood_ce"] = ev(model, ood.first(args.check_tokens), counts,
                                                     layers_off=off)["ce"]
        export_memory(args, model, counts)
        exported, _ = load(args.backbone, memory_file=os.path.join(args.out, "memory.safetensors"))
        exported.to(device)
        metrics["exported"] = ev(exported, held, counts)
        print(f"exported ({args.rows}) rows: held-out ppl {metrics['exported']['ppl']:.3f}",
              flush=True)
        if not args.skip_final:
            first = held.first(args.ablate_tokens)
            metrics["ablate_tokens"] = first.tokens
            metrics["ablate_ppl_all"] = ev(exported, first, counts)["ppl"]
            metrics["ablate_ppl"] = []
            for li in range(cfg.n_layers):
                metrics["ablate_ppl"].append(ev(exported, first, counts, layers_off=(li,))["ppl"])
                print(f"  ablate layer {li}: ppl {metrics['ablate_ppl'][-1]:.4f} (all on "
                      f"{metrics['ablate_ppl_all']:.4f})", flush=True)
    json.dump(metrics, open(os.path.join(args.out, "metrics.json"), "w"), indent=1)
    summary = {"ppl": [state["base"]["ppl"], trained["ppl"]],
               "rarest_ce": [state["base"]["ce_by_decile"][0], trained["ce_by_decile"][0]]}
    if ood is not None:
        summary["ood_ppl"] = [state["base_ood"]["ppl"], trained_ood["ppl"]]
    print(json.dumps(summary), flush=True)
    print(f"done in {time.time() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
