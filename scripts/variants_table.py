#!/usr/bin/env python3
"""The variants table of docs/results.md (issue 16): baseline, TIDE, Engram, LIMe and the
parameter-matched wide baseline side by side, from each model's train_metrics.json (PyTorch,
full held-out split), the runtime's `tide eval` sample and one `tide bench --variants` run.

  python3 scripts/variants_table.py docs/results

Writes docs/results/variants.json (every figure of the table), docs/results/variants_ce.svg
(CE change against the baseline by frequency decile) and prints the Markdown table.
Parameters "active per token": every parameter except the memory tables (the LM head is tied
and reads the whole embedding each token), plus the table values one token reads (TIDE: K rows
of d; Engram: per Engram layer 2 H rows of Dh).
"""
import json
import os
import sys

VARIANTS = [("tide-k0", "baseline (K=0)"), ("tide-k4", "TIDE K=4"),
            ("tide-engram", "Engram"), ("tide-lime", "LIMe"),
            ("tide-k0-wide", "K=0 wide (params of K=4)"),
            ("tide-k4-deep", "TIDE K=4, 12 layers")]


def active(m):
    conf = m["config"]["model"]
    read = 0
    if conf.get("k", 0):
        read += conf["k"] * conf["dim"]
    if conf.get("engram_layers"):
        read += len(conf["engram_layers"]) * 2 * conf["engram_heads"] * conf["engram_head_dim"]
    return m["parameters"] - m["memory_parameters"] + read


def line_plot(path, title, deciles, series, ylabel):
    w, h, left, bottom, top = 840, 320, 60, 56, 36
    vals = [v for _, _, vs in series for v in vs]
    lo, hi = min(vals + [0.0]), max(vals + [0.0])
    pad = (hi - lo) * 0.08 or 0.1
    lo, hi = lo - pad, hi + pad
    pw, ph = w - left - 20, h - top - bottom
    x = lambda i: left + pw * i / (len(deciles) - 1)  # noqa: E731
    y = lambda v: top + ph * (hi - v) / (hi - lo)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>',
           f'<text x="{w/2}" y="18" text-anchor="middle" font-size="13">{title}</text>',
           f'<text x="14" y="{top+ph/2}" transform="rotate(-90 14 {top+ph/2})" '
           f'text-anchor="middle">{ylabel}</text>']
    for i in range(6):
        v = lo + (hi - lo) * i / 5
        out.append(f'<line x1="{left}" x2="{w-20}" y1="{y(v)}" y2="{y(v)}" stroke="#ddd"/>'
                   f'<text x="{left-4}" y="{y(v)+4}" text-anchor="end">{v:.2f}</text>')
    out.append(f'<line x1="{left}" x2="{w-20}" y1="{y(0)}" y2="{y(0)}" stroke="#888"/>')
    for i, d in enumerate(deciles):
        out.append(f'<text x="{x(i)}" y="{top+ph+14}" text-anchor="middle">{d}</text>')
    out.append(f'<text x="{left+pw/2}" y="{top+ph+28}" text-anchor="middle">'
               f'target frequency decile (1 = rarest)</text>')
    for si, (name, colour, vs) in enumerate(series):
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(vs))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for i, v in enumerate(vs):
            out.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}">'
                       f'<title>{name}, decile {i+1}: {v:+.3f}</title></circle>')
        out.append(f'<rect x="{left + 10 + si*150}" y="{h-16}" width="10" height="10" '
                   f'fill="{colour}"/><text x="{left + 24 + si*150}" y="{h-7}">{name}</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


def main(out_dir):
    bench = json.load(open(os.path.join(out_dir, "variants_bench.json")))
    by_model = {os.path.basename(r["model"].rstrip("/")): r for r in bench["variants"]}
    rows = []
    for name, label in VARIANTS:
        mdir = os.path.join("models", name)
        if not os.path.exists(os.path.join(mdir, "train_metrics.json")):
            continue
        m = json.load(open(os.path.join(mdir, "train_metrics.json")))
        # tide-k0 and tide-k4: scripts/results.sh's evaluations.
        ev_name = {"tide-k0": "eval_k0.json", "tide-k4": "eval_k4.json"}.get(name,
                                                                         f"eval_{name}.json")
        ev_path = os.path.join(out_dir, ev_name)
        ev = json.load(open(ev_path)) if os.path.exists(ev_path) else None
        b = by_model.get(name, {})
        rows.append({
            "model": name, "label": label, "ppl": m["ppl"], "ce": m["ce"],
            "ce_by_decile": m["ce_by_decile"], "null_by_decile": m.get("null_by_decile"),
            "runtime_ppl": ev["ppl"] if ev else None,
            "runtime_tokens": ev["tokens"] if ev else None,
            "parameters": m["parameters"], "memory_parameters": m["memory_parameters"],
            "active_per_token": active(m), "train_seconds": m["train_seconds"],
            "decode_tokens_per_s": b.get("decode_tokens_per_s"),
            "decode_overhead": b.get("overhead_vs_first"),
            "round_overhead": [b.get("round_overhead_min"), b.get("round_overhead_max")],
            "gpu_bytes": b.get("gpu_bytes"), "extra_gpu_bytes": b.get("extra_gpu_bytes"),
            "host_table_bytes": b.get("host_table_bytes"),
            "host_cache_bytes": b.get("host_cache_bytes"),
        })
    base = rows[0]
    summary = {"bench": {k: bench[k] for k in ("adapter", "gen", "ctx", "rounds")},
               "variants": rows}
    json.dump(summary, open(os.path.join(out_dir, "variants.json"), "w"), indent=1)
    print("| variant | held-out PPL (PyTorch, full split) | `tide eval` PPL (sample) | "
          "CE rarest decile | CE most common decile | parameters (total) | active per token "
          "| decode tok/s (overhead) | extra GPU memory | host tables (cached after the run) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        d1 = r["ce_by_decile"][0] - base["ce_by_decile"][0]
        d10 = r["ce_by_decile"][9] - base["ce_by_decile"][9]
        rt = f'{r["runtime_ppl"]:.2f}' if r["runtime_ppl"] else "-"
        tok = (f'{r["decode_tokens_per_s"]:.1f} ({r["decode_overhead"]*100:+.1f}%)'
               if r["decode_tokens_per_s"] else "-")
        gpu = (f'{r["extra_gpu_bytes"]/1e6:+.2f} MB' if r["extra_gpu_bytes"] is not None
               else "-")
        host = (f'{r["host_table_bytes"]/1e6:.2f} MB ({r["host_cache_bytes"]/1e6:.2f} MB)'
                if r["host_table_bytes"] is not None else "-")
        print(f'| {r["label"]} | {r["ppl"]:.2f} | {rt} | {r["ce_by_decile"][0]:.3f} ({d1:+.3f}) '
              f'| {r["ce_by_decile"][9]:.3f} ({d10:+.3f}) | {r["parameters"]/1e6:.2f}M '
              f'| {r["active_per_token"]/1e6:.2f}M | {tok} | {gpu} | {host} |')
    colours = ["#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    series = [(r["label"], colours[i % len(colours)],
               [a - b for a, b in zip(r["ce_by_decile"], base["ce_by_decile"])])
              for i, r in enumerate(rows[1:])]
    line_plot(os.path.join(out_dir, "variants_ce.svg"),
              "Cross-entropy change against the K=0 baseline (PyTorch, full held-out split)",
              list(range(1, 11)), series, "CE change (nats)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/results")
