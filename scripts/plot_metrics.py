#!/usr/bin/env python3
"""Plot a run's metrics.jsonl (training loss, held-out loss) as an SVG, with no dependencies.

    python3 scripts/plot_metrics.py RUN_DIR/metrics.jsonl [OUT.svg]   (default: next to the metrics)
    python3 scripts/plot_metrics.py --passkey results.json OUT.svg     (scripts/ipd_experiment.sh's results:
                                                                        pass-key accuracy against length per arm)
"""
import json
import math
import os
import sys


def write_svg(out, svg):
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(svg) + "\n")
    os.replace(tmp, out)
    print(out)


COLORS = ["#7f7f7f", "#08519c", "#d94801", "#238b45", "#6a51a3", "#b8860b"]
LABELS = {"none": "no extension", "ipd": "IPD (distilled, packed short docs)", "ce_long": "CE on long documents",
          "teacher": "teacher (28M, trained at 4096)"}


def plot_passkey(path, out):
    """Pass-key accuracy (%) against prompt length (log2 axis), one line per arm of results["arms"]; below it,
    where the results have it, the answer's negative log-likelihood (nats per token) on the same axis."""
    res = json.load(open(path))
    arms = list(res["arms"].items())
    lengths = sorted({p["length"] for _, v in arms for p in v["passkey"]})
    has_nll = any("answer_nll" in p for _, v in arms for p in v["passkey"])
    W, PH, L, R, T, B = 720, 300, 70, 250, 30, 50
    H = T + (2 * PH if has_nll else PH) + B
    lx0 = math.log2(lengths[0])
    lx1 = math.log2(lengths[-1]) if len(lengths) > 1 else lx0 + 1
    X = lambda x: L + (math.log2(x) - lx0) / (lx1 - lx0) * (W - L - R)
    s = res.get("settings", {})
    title = f"pass-key retrieval (student pre-trained at T={s.get('T', '?')}; arms at L={s.get('L', '?')})"
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{(W - R + L) / 2}" y="18" text-anchor="middle" font-size="14">{title}</text>']

    def panel(top, key, lo, hi, ticks, fmt, label):
        Y = lambda v: top + 10 + (hi - v) / (hi - lo) * (PH - 40)
        svg.append(f'<text x="16" y="{top + PH / 2}" transform="rotate(-90 16 {top + PH / 2})" '
                   f'text-anchor="middle">{label}</text>')
        for v in ticks:
            svg.append(f'<line x1="{L}" x2="{W - R}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#ddd"/>'
                       f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{fmt(v)}</text>')
        for x in lengths:
            svg.append(f'<line x1="{X(x):.1f}" x2="{X(x):.1f}" y1="{top + 10}" y2="{top + PH - 30}" stroke="#eee"/>'
                       f'<text x="{X(x):.1f}" y="{top + PH - 14}" text-anchor="middle">{x}</text>')
        if "T" in s:
            svg.append(f'<line x1="{X(s["T"]):.1f}" x2="{X(s["T"]):.1f}" y1="{top + 10}" y2="{top + PH - 30}" '
                       f'stroke="#999" stroke-dasharray="4,3"/>')
        for i, (arm, v) in enumerate(arms):
            pts = [(p["length"], key(p)) for p in v["passkey"] if key(p) is not None]
            c = COLORS[i % len(COLORS)]
            dash = ' stroke-dasharray="6,4"' if arm == "teacher" else ""
            poly = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts)
            svg.append(f'<polyline fill="none" stroke="{c}" stroke-width="2"{dash} points="{poly}"/>')
            svg.extend(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="3" fill="{c}"/>' for x, y in pts)

    panel(T, lambda p: 100.0 * p["accuracy"], -5, 105, range(0, 101, 20), lambda v: f"{v}%", "retrieved")
    if has_nll:
        nll = [p["answer_nll"] for _, v in arms for p in v["passkey"] if "answer_nll" in p]
        hi = max(1.0, math.ceil(max(nll)))
        panel(T + PH, lambda p: p.get("answer_nll"), 0, hi, [hi * i / 5 for i in range(6)], lambda v: f"{v:.1f}",
              "answer NLL (nats/token)")
    svg.append(f'<text x="{(L + W - R) / 2}" y="{H - 10}" text-anchor="middle">prompt length (tokens)</text>')
    for i, (arm, _) in enumerate(arms):
        svg.append(f'<text x="{W - R + 12}" y="{T + 20 + 18 * i}" fill="{COLORS[i % len(COLORS)]}">'
                   f'{LABELS.get(arm, arm)}</text>')
    svg.append("</svg>")
    write_svg(out, svg)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--passkey":
        return plot_passkey(sys.argv[2], sys.argv[3])
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
    write_svg(out, svg)


if __name__ == "__main__":
    main()
