#!/usr/bin/env python3
"""SVG charts of the SmolLM2 memory study (docs/results.md, "TIDE on SmolLM2-135M") from its raw
data, without a plotting library:

  python3 scripts/smollm2_tide_plots.py models/smollm2-tide/train_metrics.json docs/results \\
      [--finetune docs/results/smollm2_finetune.json] [--quality JSONL]

Writes smollm2_curve.svg (held-out and out-of-domain CE against training tokens, with the
backbone's level), smollm2_ce_by_decile.svg, smollm2_null.svg (NULL weight by decile and by
layer), smollm2_ablate.svg (perplexity with one layer's memory off), and with --quality
smollm2_quality.svg (perplexity against the tables' bytes).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_plots import bars  # noqa: E402

BLUE, ORANGE, GREEN, GREY, RED = "#1f77b4", "#ff7f0e", "#2ca02c", "#888888", "#d62728"


def lines(path, title, series, xlabel, ylabel, hlines=()):
    """series: [(name, colour, [(x, y)])]; hlines: [(name, colour, y)] drawn dashed."""
    # Room under the axis for two columns of legend lines.
    rows = (len(series) + len(hlines) + 1) // 2
    w, left, top, right = 640, 60, 40, 20
    bottom = 42 + 14 * rows
    h = 270 + bottom
    xs = [x for _, _, pts in series for x, _ in pts]
    ys = [y for _, _, pts in series for _, y in pts] + [y for _, _, y in hlines]
    x0, x1 = min(xs), max(xs) or 1
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.08 or 0.1
    y0, y1 = y0 - pad, y1 + pad
    pw, ph = w - left - right, h - bottom - top
    X = lambda x: left + pw * (x - x0) / (x1 - x0 or 1)  # noqa: E731
    Y = lambda y: top + ph * (1 - (y - y0) / (y1 - y0))  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>',
           f'<text x="{w/2}" y="18" text-anchor="middle" font-size="13">{title}</text>',
           f'<text x="14" y="{top + ph/2}" transform="rotate(-90 14 {top + ph/2})" '
           f'text-anchor="middle">{ylabel}</text>',
           f'<text x="{left + pw/2}" y="{h - bottom + 30}" text-anchor="middle">{xlabel}</text>']
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        xv = x0 + (x1 - x0) * i / 4
        out.append(f'<line x1="{left}" x2="{w-right}" y1="{Y(yv)}" y2="{Y(yv)}" stroke="#ddd"/>'
                   f'<text x="{left-4}" y="{Y(yv)+4}" text-anchor="end">{yv:.2f}</text>'
                   f'<text x="{X(xv)}" y="{h-bottom+14}" text-anchor="middle">{xv/1e6:.2f}M</text>')
    for name, colour, y in hlines:
        out.append(f'<line x1="{left}" x2="{w-right}" y1="{Y(y)}" y2="{Y(y)}" stroke="{colour}" '
                   f'stroke-dasharray="5,4"><title>{name}: {y:.4f}</title></line>')
    for name, colour, pts in series:
        d = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in pts:
            out.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="2.5" fill="{colour}">'
                       f'<title>{name}: {y:.4f} after {x} tokens</title></circle>')
    legend = [(n, c, False) for n, c, _ in series] + [(n, c, True) for n, c, _ in hlines]
    for i, (name, colour, dashed) in enumerate(legend):
        # Two columns of legend lines under the axis.
        lx, ly = left + (i % 2) * 290, h - bottom + 50 + 14 * (i // 2)
        dash = ' stroke-dasharray="5,4"' if dashed else ""
        out.append(f'<line x1="{lx}" x2="{lx+18}" y1="{ly-4}" y2="{ly-4}" stroke="{colour}" '
                   f'stroke-width="2"{dash}/><text x="{lx+24}" y="{ly}">{name}</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


def quality(path, rows):
    """Perplexity against the tables' bytes, one labelled point per stored form, the backbone
    alone as a dashed line."""
    base = [r["eval"]["ppl"] for r in rows if not r["table_bytes"]]
    rows = [r for r in rows if r["table_bytes"]]
    w, h, left, right, top, bottom = 680, 380, 60, 30, 40, 60
    xs = [r["table_bytes"] / 1e6 for r in rows]
    ys = [r["eval"]["ppl"] for r in rows]
    x0, x1 = 0, max(xs) * 1.05
    y0 = min(ys) - 0.3
    y1 = max(ys + base) + 0.3
    pw, ph = w - left - right, h - top - bottom
    X = lambda x: left + pw * (x - x0) / (x1 - x0)  # noqa: E731
    Y = lambda y: top + ph * (1 - (y - y0) / (y1 - y0))  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>',
           f'<text x="{w/2}" y="18" text-anchor="middle" font-size="13">Held-out perplexity '
           f'against the bytes of the stored tables</text>',
           f'<text x="14" y="{top + ph/2}" transform="rotate(-90 14 {top + ph/2})" '
           f'text-anchor="middle">perplexity (lower is better)</text>',
           f'<text x="{left + pw/2}" y="{h - 18}" text-anchor="middle">table bytes (MB)</text>']
    for i in range(5):
        yv, xv = y0 + (y1 - y0) * i / 4, x0 + (x1 - x0) * i / 4
        out.append(f'<line x1="{left}" x2="{w-right}" y1="{Y(yv)}" y2="{Y(yv)}" stroke="#ddd"/>'
                   f'<text x="{left-4}" y="{Y(yv)+4}" text-anchor="end">{yv:.1f}</text>'
                   f'<text x="{X(xv)}" y="{h-bottom+14}" text-anchor="middle">{xv:.0f}</text>')
    for b in base:
        out.append(f'<line x1="{left}" x2="{w-right}" y1="{Y(b)}" y2="{Y(b)}" stroke="{GREY}" '
                   f'stroke-dasharray="5,4"/><text x="{w-right-4}" y="{Y(b)-5}" '
                   f'text-anchor="end" fill="{GREY}">backbone alone: {b:.2f}</text>')
    placed = []  # (x0, x1, y) of the labels drawn so far
    for r, x, y in sorted(zip(rows, xs, ys), key=lambda t: t[1]):
        name = r["variant"]
        colour = GREEN if "SVD 50% + 4-bit" in name else BLUE
        label = f"{name} ({y:.2f})"
        half = 3.2 * len(label)
        # Above the point, or below, or further above: the first place no label takes.
        for dy in (-8, 16, -22, 30, -36):
            ly = Y(y) + dy
            if all(X(x) + half < a or X(x) - half > b or abs(ly - c) > 13 for a, b, c in placed):
                break
        placed.append((X(x) - half, X(x) + half, ly))
        out.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="4" fill="{colour}"><title>{name}: '
                   f'{y:.3f} with {x:.1f} MB of tables</title></circle>'
                   f'<text x="{X(x):.1f}" y="{ly:.1f}" text-anchor="middle" '
                   f'fill="{colour}">{label}</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("metrics")
    ap.add_argument("out")
    ap.add_argument("--finetune", help="metrics.json of the full fine-tuning control")
    ap.add_argument("--quality", help="smollm2_tide_quality.jsonl")
    a = ap.parse_args()
    m = json.load(open(a.metrics))
    os.makedirs(a.out, exist_ok=True)
    pts = [(c["tokens"], c["ce"]) for c in m["checks"]]
    ood = [(c["tokens"], c["ood_ce"]) for c in m["checks"] if "ood_ce" in c]
    ref = m.get("baseline_check", {})
    hl = [(f"backbone alone, held-out", BLUE, ref["ce"])] if "ce" in ref else []
    hl += [(f"backbone alone, out of domain", ORANGE, ref["ood_ce"])] if "ood_ce" in ref else []
    curves = [("held-out (memory)", BLUE, pts), ("out of domain (memory)", ORANGE, ood)]
    if a.finetune:
        # The control's curve on the same windows, from the same batches (same seed).
        ft = json.load(open(a.finetune))
        curves += [("held-out (fine-tuned)", GREEN, [(c["tokens"], c["ce"]) for c in ft["checks"]]),
                   ("out of domain (fine-tuned)", RED,
                    [(c["tokens"], c["ood_ce"]) for c in ft["checks"] if "ood_ce" in c])]
    lines(os.path.join(a.out, "smollm2_curve.svg"),
          f"SmolLM2-135M + TIDE memory (K = {m.get('k') or m['args']['k']}): CE while training",
          curves, "training tokens", "cross-entropy (nats)", hl)
    if "trained" not in m:
        print(f"{a.metrics}: a run in progress (no final evaluation): the curve only")
        return
    dec = [str(i) for i in range(10)]
    seen = lambda r: f"{r.get('train_tokens_seen', 0) / 1e6:.1f}M tokens"  # noqa: E731
    series = [("backbone alone", GREY, m["baseline"]["ce_by_decile"]),
              (f"with memory ({seen(m)})", BLUE, m["trained"]["ce_by_decile"])]
    if a.finetune:
        ft = json.load(open(a.finetune))
        series.append((f"fine-tuned backbone ({seen(ft)})", GREEN, ft["trained"]["ce_by_decile"]))
    bars(os.path.join(a.out, "smollm2_ce_by_decile.svg"),
         "Held-out CE by training-frequency decile (0 = rarest)", dec, series, "CE (nats)")
    bars(os.path.join(a.out, "smollm2_null.svg"),
         "Mean NULL weight by decile of the token read (0 = rarest)", dec,
         [("NULL weight", GREY, m["trained"]["null_by_decile"])], "NULL weight", "{:.3f}")
    layers = [str(i) for i in range(len(m["trained"]["null_by_layer"]))]
    bars(os.path.join(a.out, "smollm2_null_by_layer.svg"), "Mean NULL weight by layer", layers,
         [("NULL weight", GREY, m["trained"]["null_by_layer"])], "NULL weight", "{:.3f}")
    if m.get("ablate_ppl"):
        base = m["ablate_ppl_all"]
        bars(os.path.join(a.out, "smollm2_ablate.svg"),
             f"Perplexity change with one layer's memory off (all on: {base:.3f})", layers,
             [("change", RED, [100 * (p / base - 1) for p in m["ablate_ppl"]])], "% perplexity",
             "{:.1f}")
    if a.quality:
        quality(os.path.join(a.out, "smollm2_quality.svg"),
                [json.loads(l) for l in open(a.quality)])
    print(f"wrote the charts to {a.out}")


if __name__ == "__main__":
    main()
