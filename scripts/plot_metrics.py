#!/usr/bin/env python3
"""Plot a run's metrics.jsonl (training loss, held-out loss) as an SVG, with no dependencies.

    python3 scripts/plot_metrics.py RUN_DIR/metrics.jsonl [OUT.svg]   (default: next to the metrics)
"""
import json
import math
import os
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: plot_metrics.py METRICS.jsonl [OUT.svg]")
    path = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(path) or ".", "loss.svg")
    train, val = [], []
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            if "loss" in rec and math.isfinite(rec["loss"]):
                train.append((rec["step"], rec["loss"]))
            if "val_loss" in rec:
                val.append((rec["step"], rec["val_loss"]))
    if not train:
        sys.exit(f"{path}: no training loss to plot")
    W, H, L, R, T, B = 720, 420, 70, 20, 30, 50
    xs = [s for s, _ in train + val]
    ys = [v for _, v in train + val]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.05 or 0.5
    y0, y1 = y0 - pad, y1 + pad
    X = lambda s: L + (s - x0) / (x1 - x0) * (W - L - R)
    Y = lambda v: T + (y1 - v) / (y1 - y0) * (H - T - B)
    # a smoothed curve (exponential moving average) over the raw per-step losses
    ema, sm = None, []
    for s, v in train:
        ema = v if ema is None else 0.9 * ema + 0.1 * v
        sm.append((s, ema))
    poly = lambda pts: " ".join(f"{X(s):.1f},{Y(v):.1f}" for s, v in pts)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">{os.path.basename(os.path.dirname(os.path.abspath(path)))}: loss (nats/token)</text>']
    for i in range(6):
        v = y0 + (y1 - y0) * i / 5
        svg.append(f'<line x1="{L}" x2="{W - R}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
        s = x0 + (x1 - x0) * i / 5
        svg.append(f'<text x="{X(s):.1f}" y="{H - B + 18}" text-anchor="middle">{s:.0f}</text>')
    svg.append(f'<text x="{(L + W - R) / 2}" y="{H - 10}" text-anchor="middle">step</text>')
    svg.append(f'<polyline fill="none" stroke="#9ecae1" stroke-width="1" points="{poly(train)}"/>')
    svg.append(f'<polyline fill="none" stroke="#08519c" stroke-width="2" points="{poly(sm)}"/>')
    if val:
        svg.append(f'<polyline fill="none" stroke="#d94801" stroke-width="2" points="{poly(val)}"/>')
        svg += [f'<circle cx="{X(s):.1f}" cy="{Y(v):.1f}" r="3" fill="#d94801"/>' for s, v in val]
    svg.append(f'<text x="{W - R - 150}" y="{T + 16}" fill="#08519c">training (smoothed)</text>')
    if val:
        svg.append(f'<text x="{W - R - 150}" y="{T + 32}" fill="#d94801">held-out</text>')
    svg.append("</svg>")
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(svg) + "\n")
    os.replace(tmp, out)
    print(out)


if __name__ == "__main__":
    main()
