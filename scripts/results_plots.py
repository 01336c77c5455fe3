#!/usr/bin/env python3
"""SVG bar charts for docs/results.md from docs/results/*.json (no plotting library needed).

  python3 scripts/results_plots.py docs/results
"""
import json
import os
import sys


def bars(path, title, groups, series, ylabel, fmt="{:.2f}"):
    """groups: x labels; series: [(name, colour, values)]."""
    w, h, left, bottom, top = 640, 300, 60, 40, 40
    n, m = len(groups), len(series)
    vmax = max(v for _, _, vals in series for v in vals if v is not None) * 1.1
    cw = (w - left - 20) / n
    bw = cw * 0.8 / m
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>',
           f'<text x="{w/2}" y="18" text-anchor="middle" font-size="13">{title}</text>',
           f'<text x="14" y="{h/2}" transform="rotate(-90 14 {h/2})" text-anchor="middle">{ylabel}</text>']
    ph = h - bottom - top
    for i in range(5):
        y = top + ph - ph * i / 4
        out.append(f'<line x1="{left}" x2="{w-20}" y1="{y}" y2="{y}" stroke="#ddd"/>'
                   f'<text x="{left-4}" y="{y+4}" text-anchor="end">{fmt.format(vmax*i/4)}</text>')
    for gi, g in enumerate(groups):
        x0 = left + gi * cw + cw * 0.1
        out.append(f'<text x="{left + gi*cw + cw/2}" y="{h-bottom+14}" text-anchor="middle">{g}</text>')
        for si, (name, colour, vals) in enumerate(series):
            v = vals[gi]
            if v is None:
                continue
            bh = ph * v / vmax
            out.append(f'<rect x="{x0 + si*bw}" y="{top+ph-bh}" width="{bw-1}" height="{bh}" '
                       f'fill="{colour}"><title>{name}: {fmt.format(v)}</title></rect>')
    for si, (name, colour, _) in enumerate(series):
        out.append(f'<rect x="{left + 10 + si*150}" y="{h-16}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{left + 24 + si*150}" y="{h-7}">{name}</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


def main():
    d = sys.argv[1]
    k0 = json.load(open(os.path.join(d, "eval_k0.json")))
    k4 = json.load(open(os.path.join(d, "eval_k4.json")))
    dec = [str(i + 1) for i in range(10)]
    bars(os.path.join(d, "ce_by_decile.svg"),
         "held-out cross-entropy by token-frequency decile (1 = rarest)", dec,
         [("K=0 baseline", "#999", k0["ce_by_decile"]), ("TIDE K=4", "#36c", k4["ce_by_decile"])],
         "nats")
    bars(os.path.join(d, "null_by_decile.svg"),
         "TIDE K=4: mean NULL weight by input-token frequency decile (1 = rarest)", dec,
         [("NULL weight", "#36c", k4["null_by_decile"])], "weight")
    ab = json.load(open(os.path.join(d, "ablate_k4.json")))
    bars(os.path.join(d, "ablate.svg"), "TIDE K=4: perplexity change with one layer's memory removed",
         [str(r["layer"]) for r in ab["layers"]],
         [("ppl change (%)", "#c63", [100 * r["ppl_change"] for r in ab["layers"]])], "%",
         fmt="{:.1f}")
    print("wrote plots to", d)


if __name__ == "__main__":
    main()
