#!/usr/bin/env python3
"""Plot a run's metrics.jsonl (training loss, held-out loss) as an SVG, with no dependencies.

    python3 scripts/plot_metrics.py RUN_DIR/metrics.jsonl [OUT.svg]   (default: next to the metrics)

Compare runs (e.g. --precision fp32 against bf16 with the same seed): each run's loss (raw and
smoothed) and held-out loss, and below it the per-step difference of every run from the first; the
final difference, the largest |difference| and the held-out differences are printed.

    python3 scripts/plot_metrics.py --compare A/metrics.jsonl B/metrics.jsonl ... --out OUT.svg \
        [--labels fp32,bf16,...] [--title TEXT]
"""
import json
import math
import os
import sys


def read_metrics(path):
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
    return train, val


def smooth(pts, a=0.9):
    ema, out = None, []
    for s, v in pts:
        ema = v if ema is None else a * ema + (1 - a) * v
        out.append((s, ema))
    return out


COLORS = ["#08519c", "#d94801", "#238b45", "#6a51a3", "#b15928"]


def compare(args):
    paths, labels, out, title = [], None, None, "loss"
    i = 0
    while i < len(args):
        if args[i] in ("--out", "--labels", "--title") and i + 1 < len(args):
            if args[i] == "--out":
                out = args[i + 1]
            elif args[i] == "--labels":
                labels = args[i + 1].split(",")
            else:
                title = args[i + 1]
            i += 2
        else:
            paths.append(args[i])
            i += 1
    if len(paths) < 2 or not out:
        sys.exit("usage: plot_metrics.py --compare A.jsonl B.jsonl ... --out OUT.svg [--labels a,b,...] [--title T]")
    labels = labels or [os.path.basename(os.path.dirname(os.path.abspath(p))) for p in paths]
    if len(labels) != len(paths):
        sys.exit(f"{len(labels)} labels for {len(paths)} runs")
    runs = [read_metrics(p) for p in paths]
    base = dict(runs[0][0])
    base_val = dict(runs[0][1])
    diffs, summary = [], []
    for (train, val), lab in zip(runs[1:], labels[1:]):
        d = [(s, v - base[s]) for s, v in train if s in base]
        if not d:
            sys.exit(f"{lab}: no step in common with {labels[0]}")
        dv = [(s, v - base_val[s]) for s, v in val if s in base_val]
        worst = max(d, key=lambda p: abs(p[1]))
        mean = sum(v for _, v in d) / len(d)
        rms = math.sqrt(sum(v * v for _, v in d) / len(d))
        summary.append({"run": lab, "against": labels[0], "steps": len(d), "final_step": d[-1][0],
                        "final_diff": round(d[-1][1], 6), "max_abs_diff": round(abs(worst[1]), 6),
                        "max_abs_diff_step": worst[0], "mean_diff": round(mean, 6), "rms_diff": round(rms, 6),
                        "val_diffs": {s: round(v, 6) for s, v in dv}})
        diffs.append((lab, d))
    # batch-to-batch noise of the first run: RMS of the raw loss around its smoothed curve (after step 20)
    sm0 = dict(smooth(runs[0][0]))
    resid = [v - sm0[s] for s, v in runs[0][0] if s > 20]
    noise = math.sqrt(sum(r * r for r in resid) / len(resid)) if resid else float("nan")
    W, H1, H2, L, R, T, B = 760, 380, 200, 70, 20, 30, 40
    H = H1 + H2 + 20
    allx = [s for tr, va in runs for s, _ in tr + va]
    ally = [v for tr, va in runs for _, v in tr + va]
    x0, x1 = min(allx), max(allx) if max(allx) > min(allx) else min(allx) + 1
    y0, y1 = min(ally), max(ally)
    pad = (y1 - y0) * 0.05 or 0.5
    y0, y1 = y0 - pad, y1 + pad
    X = lambda s: L + (s - x0) / (x1 - x0) * (W - L - R)
    Y = lambda v: T + (y1 - v) / (y1 - y0) * (H1 - T - B)
    dmax = max([abs(v) for _, d in diffs for _, v in d] + [1e-6]) * 1.1
    top2 = H1 + 10
    Yd = lambda v: top2 + (dmax - v) / (2 * dmax) * (H2 - 30)
    poly = lambda pts, f: " ".join(f"{X(s):.1f},{f(v):.1f}" for s, v in pts)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">{title}</text>']
    for i in range(6):
        v = y0 + (y1 - y0) * i / 5
        svg.append(f'<line x1="{L}" x2="{W - R}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
        s = x0 + (x1 - x0) * i / 5
        svg.append(f'<text x="{X(s):.1f}" y="{H - 8}" text-anchor="middle">{s:.0f}</text>')
    for k, ((train, val), lab) in enumerate(zip(runs, labels)):
        c = COLORS[k % len(COLORS)]
        svg.append(f'<polyline fill="none" stroke="{c}" stroke-opacity="0.35" stroke-width="1" points="{poly(train, Y)}"/>')
        svg.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{poly(smooth(train), Y)}"/>')
        svg += [f'<circle cx="{X(s):.1f}" cy="{Y(v):.1f}" r="3.5" fill="none" stroke="{c}" stroke-width="1.5"/>'
                for s, v in val]
        svg.append(f'<text x="{W - R - 300}" y="{T + 16 + 16 * k}" fill="{c}">{lab}: loss (raw, smoothed), o held-out</text>')
    # difference panel
    for v in (-dmax / 1.1, 0.0, dmax / 1.1):
        svg.append(f'<line x1="{L}" x2="{W - R}" y1="{Yd(v):.1f}" y2="{Yd(v):.1f}" stroke="{"#999" if v == 0 else "#ddd"}"/>'
                   f'<text x="{L - 6}" y="{Yd(v) + 4:.1f}" text-anchor="end">{v:+.3f}</text>')
    for k, (lab, d) in enumerate(diffs):
        c = COLORS[(k + 1) % len(COLORS)]
        svg.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.2" points="{poly(d, Yd)}"/>')
        svg.append(f'<text x="{L + 10}" y="{top2 + 12 + 14 * k}" fill="{c}">loss({lab}) - loss({labels[0]}) per step</text>')
    svg.append("</svg>")
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(svg) + "\n")
    os.replace(tmp, out)
    print(json.dumps({"plot": out, "batch_noise_rms": round(noise, 6), "comparisons": summary}, indent=1))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--compare":
        return compare(sys.argv[2:])
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
