#!/usr/bin/env python3
"""SVG of the merging experiment (scripts/merge_experiment.sh), standard library only.

    plot_merge.py RESULTS.tsv MC.tsv OUT.svg

Left: test loss per domain and the mean for every model (base, specialists, merges). Right: zero-shot
multiple-choice accuracy per task with ±1 standard error bars and the chance level (dashed). RESULTS.tsv:
model, one column per domain, mean; MC.tsv: name, task, n, acc, acc_se, acc_norm, acc_norm_se, chance
(scripts/mc_summary.py's columns). Written atomically.
"""
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot_metrics import write_svg  # noqa: E402

COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f", "#bab0ac"]


def read_tsv(path):
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def panel_axes(parts, x0, y0, w, h, lo, hi, fmt):
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        y = y0 + h - (v - lo) / (hi - lo) * h
        parts.append(f'<line x1="{x0}" x2="{x0 + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end">{fmt(v)}</text>')


def main():
    res, mc, out = read_tsv(sys.argv[1]), read_tsv(sys.argv[2]), sys.argv[3]
    models = [r["model"] for r in res]
    cols = [c for c in res[0] if c != "model"]
    W, H = 1180, 470
    p = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         '<text x="70" y="22" font-size="14">Test loss by domain (nats/byte, lower is better)</text>',
         '<text x="650" y="22" font-size="14">Zero-shot accuracy (±1 s.e.; dashed: chance)</text>']
    # left: grouped bars, one group per domain column, one bar per model
    vals = [float(r[c]) for r in res for c in cols]
    lo, hi = min(vals) - 0.05, max(vals) + 0.05
    x0, y0, w, h = 70, 40, 500, 300
    panel_axes(p, x0, y0, w, h, lo, hi, lambda v: f"{v:.2f}")
    gw = w / len(cols)
    bw = (gw - 10) / len(models)
    for ci, c in enumerate(cols):
        for mi, r in enumerate(res):
            v = float(r[c])
            bh = (v - lo) / (hi - lo) * h
            p.append(f'<rect x="{x0 + ci * gw + 5 + mi * bw:.1f}" y="{y0 + h - bh:.1f}" width="{bw - 1:.1f}" '
                     f'height="{bh:.1f}" fill="{COLORS[mi % len(COLORS)]}"><title>{r["model"]} {c} {v:.4f}</title></rect>')
        p.append(f'<text x="{x0 + ci * gw + gw / 2:.1f}" y="{y0 + h + 16}" text-anchor="middle">{c}</text>')
    # right: per task, one bar per model with error bars
    tasks = list(dict.fromkeys(r["task"] for r in mc))
    acc = {(r["name"], r["task"]): r for r in mc}
    ys = [float(r["acc"]) + float(r["acc_se"]) for r in mc] + [float(r["chance"]) for r in mc]
    lo2, hi2 = 0.0, min(1.0, max(ys) + 0.05)
    x0, w = 650, 500
    panel_axes(p, x0, y0, w, h, lo2, hi2, lambda v: f"{v:.2f}")
    gw = w / max(len(tasks), 1)
    bw = (gw - 10) / len(models)
    for ti, t in enumerate(tasks):
        for mi, m in enumerate(models):
            r = acc.get((m, t))
            if not r:
                continue
            a, se = float(r["acc"]), float(r["acc_se"])
            bx = x0 + ti * gw + 5 + mi * bw
            top = y0 + h - (a - lo2) / (hi2 - lo2) * h
            p.append(f'<rect x="{bx:.1f}" y="{top:.1f}" width="{bw - 1:.1f}" height="{y0 + h - top:.1f}" '
                     f'fill="{COLORS[mi % len(COLORS)]}"><title>{m} {t} {a:.3f} ± {se:.3f} (n={r["n"]})</title></rect>')
            e1 = y0 + h - (a + se - lo2) / (hi2 - lo2) * h
            e0 = y0 + h - (a - se - lo2) / (hi2 - lo2) * h
            cx = bx + (bw - 1) / 2
            p.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{e1:.1f}" y2="{e0:.1f}" stroke="black"/>')
        ch = float(next(r["chance"] for r in mc if r["task"] == t))
        cy = y0 + h - (ch - lo2) / (hi2 - lo2) * h
        p.append(f'<line x1="{x0 + ti * gw + 3:.1f}" x2="{x0 + (ti + 1) * gw - 3:.1f}" y1="{cy:.1f}" y2="{cy:.1f}" '
                 f'stroke="black" stroke-dasharray="4 3"/>')
        n = next(r["n"] for r in mc if r["task"] == t)
        p.append(f'<text x="{x0 + ti * gw + gw / 2:.1f}" y="{y0 + h + 16}" text-anchor="middle">{t} (n={n})</text>')
    # legend
    for mi, m in enumerate(models):
        lx, ly = 70 + (mi % 5) * 200, y0 + h + 40 + (mi // 5) * 20
        p.append(f'<rect x="{lx}" y="{ly}" width="10" height="10" fill="{COLORS[mi % len(COLORS)]}"/>'
                 f'<text x="{lx + 14}" y="{ly + 9}">{m}</text>')
    write_svg(out, p, announce=False)


if __name__ == "__main__":
    main()
