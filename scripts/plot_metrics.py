#!/usr/bin/env python3
"""SVG plots with no dependencies: a run's training curves, and the benchmark curves.

    python3 scripts/plot_metrics.py RUN_DIR/metrics.jsonl [OUT.svg]   (default: loss.svg next to the metrics)
    python3 scripts/plot_metrics.py --curves bench/plots/curves.json [OUT_DIR]   (default: the JSON's folder)
    python3 scripts/plot_metrics.py --compare A/metrics.jsonl B/metrics.jsonl ... --out OUT.svg \
        [--labels fp32,bf16,...] [--title TEXT]   (loss curves of several runs and their per-step differences)
    python3 scripts/plot_metrics.py --passkey results.json OUT.svg   (scripts/ipd_experiment.sh's results:
                                                                      pass-key accuracy against length per arm)

Other tools import line_chart, stacked_bars and grouped_bars from here (scripts/recipe_report.py).
The first draws the training loss (raw and smoothed) and the held-out loss against the step. The
second reads what bench/curves.sh collects and writes tokens_vs_seq.svg, tokens_vs_size.svg,
tokens_vs_threads.svg (each curve it holds) and kernel_share.svg (the share of step time per kernel
group, one stacked bar per profiled run).
"""
import json
import math
import os
import sys

W, H, L, R, TOP, BOT = 720, 420, 80, 20, 30, 50
PALETTE = ["#08519c", "#d94801", "#238b45", "#6a51a3", "#cb181d", "#525252", "#e7298a", "#66a61e",
           "#e6ab02", "#1b9e77", "#a6761d", "#7570b3", "#9ecae1", "#fdae6b", "#bdbdbd", "#74c476"]


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_svg(path, parts, announce=True):
    """The one SVG writer of the project's plots: closes the document, writes it atomically."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(parts) + "\n</svg>\n")
    os.replace(tmp, path)
    if announce:
        print(path)


def svg_start(title, width=W, height=H):
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
            f'font-size="12">', f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{esc(title)}</text>']


def fmt_num(v):
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g}G"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    return f"{v:.4g}"


def line_chart(path, title, xlabel, ylabel, series, logx=False, y_from_zero=False, labels=None, xticks=None, y_range=None):
    """series: [(name, [(x, y), ...], style)], style a dict with color, width, dash, markers.
    labels: optional [(x, y, text)] drawn above points. xticks: optional [(x, text)]. y_range: optional fixed
    (low, high) of the y axis (e.g. (0, 1) for an accuracy)."""
    pts = [p for _, s, _ in series for p in s]
    if not pts:
        return False
    tx = (lambda x: math.log(x)) if logx else (lambda x: x)
    xs, ys = [tx(x) for x, _ in pts], [y for _, y in pts]
    x0, x1 = min(xs), max(xs)
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    if labels or (xticks and any(t for _, t in xticks)):  # room for text centred on the outer points
        xpad = (x1 - x0) * 0.07
        x0, x1 = x0 - xpad, x1 + xpad
    y0, y1 = (0.0 if y_from_zero else min(ys)), max(ys)
    pad = (y1 - y0) * 0.08 or max(abs(y1) * 0.1, 0.5)
    y0, y1 = (y0 if y_from_zero else y0 - pad), y1 + pad
    if y_range:
        y0, y1 = y_range
    X = lambda x: L + (tx(x) - x0) / (x1 - x0) * (W - L - R)
    Y = lambda v: TOP + (y1 - v) / (y1 - y0) * (H - TOP - BOT)
    svg = svg_start(title)
    for i in range(6):
        v = y0 + (y1 - y0) * i / 5
        svg.append(f'<line x1="{L}" x2="{W - R}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{fmt_num(v)}</text>')
    if xticks is None:
        xticks = [(math.exp(x0 + (x1 - x0) * i / 5) if logx else x0 + (x1 - x0) * i / 5, None) for i in range(6)]
    for x, text in xticks:
        svg.append(f'<text x="{X(x):.1f}" y="{H - BOT + 18}" text-anchor="middle">{esc(text or fmt_num(x))}</text>')
    svg.append(f'<text x="{(L + W - R) / 2}" y="{H - 10}" text-anchor="middle">{esc(xlabel)}</text>')
    svg.append(f'<text x="16" y="{(TOP + H - BOT) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(TOP + H - BOT) / 2})">{esc(ylabel)}</text>')
    for k, (name, s, st) in enumerate(series):
        color = st.get("color", PALETTE[k % len(PALETTE)])
        if len(s) > 1 and st.get("line", True):
            dash = f' stroke-dasharray="{st["dash"]}"' if st.get("dash") else ""
            poly = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in s)
            svg.append(f'<polyline fill="none" stroke="{color}" stroke-width="{st.get("width", 2)}"{dash} points="{poly}"/>')
        if st.get("markers", False) or len(s) == 1:
            svg += [f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="3.5" fill="{color}"/>' for x, y in s]
        if name:
            svg.append(f'<text x="{W - R - 220}" y="{TOP + 16 * (k + 1)}" fill="{color}">{esc(name)}</text>')
    for x, y, text in labels or []:
        svg.append(f'<text x="{X(x):.1f}" y="{Y(y) - 8:.1f}" text-anchor="middle" font-size="10">{esc(text)}</text>')
    write_svg(path, svg)
    return True


def stacked_bars(path, title, bars, groups):
    """bars: [(label, {group: share})] drawn as horizontal 100% bars; groups: ordered group names."""
    row, top, left, right = 22, 40, 190, 20
    legend_rows = (len(groups) + 3) // 4
    height = top + row * len(bars) + 30 + 16 * legend_rows + 10
    svg = svg_start(title, W, height)
    scale = W - left - right
    for i, (label, shares) in enumerate(bars):
        y = top + i * row
        svg.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" font-size="11">{esc(label)}</text>')
        x = float(left)
        for k, g in enumerate(groups):
            w = max(0.0, shares.get(g, 0.0)) * scale
            if w > 0:
                svg.append(f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{row - 4}" '
                           f'fill="{PALETTE[k % len(PALETTE)]}"><title>{esc(g)} {100 * shares[g]:.1f}%</title></rect>')
                if w > 28:
                    svg.append(f'<text x="{x + w / 2:.1f}" y="{y + 15}" text-anchor="middle" font-size="9" '
                               f'fill="white">{100 * shares[g]:.0f}</text>')
            x += w
    ly = top + row * len(bars) + 20
    for k, g in enumerate(groups):
        cx, cy = left - 150 + (k % 4) * 170, ly + (k // 4) * 16
        svg.append(f'<rect x="{cx}" y="{cy - 9}" width="10" height="10" fill="{PALETTE[k % len(PALETTE)]}"/>'
                   f'<text x="{cx + 14}" y="{cy}" font-size="11">{esc(g)}</text>')
    write_svg(path, svg)


def grouped_bars(path, title, ylabel, groups, series, y_from=None):
    """Vertical bars: for each group (x axis) one bar per series. series: [(name, {group: value})]; a missing
    value leaves a gap. The y axis starts at y_from (default: a little below the smallest value, since losses
    differ by less than their size)."""
    vals = [v for _, d in series for v in d.values() if v is not None and math.isfinite(v)]
    if not vals or not groups:
        return False
    lo, hi = min(vals), max(vals)
    y0 = y_from if y_from is not None else max(0.0, lo - 0.15 * (hi - lo or abs(hi) * 0.1 or 1))
    y1 = hi + 0.08 * (hi - y0 or 1)
    legend_rows = (len(series) + 2) // 3
    height = H + 16 * legend_rows
    bottom = height - BOT - 16 * legend_rows
    Y = lambda v: TOP + (y1 - v) / (y1 - y0) * (bottom - TOP)
    svg = svg_start(title, W, height)
    for i in range(6):
        v = y0 + (y1 - y0) * i / 5
        svg.append(f'<line x1="{L}" x2="{W - R}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{fmt_num(v)}</text>')
    svg.append(f'<text x="16" y="{(TOP + bottom) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(TOP + bottom) / 2})">{esc(ylabel)}</text>')
    gw = (W - L - R) / len(groups)
    bw = gw * 0.8 / len(series)
    for g, name in enumerate(groups):
        x0 = L + g * gw + gw * 0.1
        svg.append(f'<text x="{L + (g + 0.5) * gw:.1f}" y="{bottom + 18}" text-anchor="middle">{esc(name)}</text>')
        for k, (sname, d) in enumerate(series):
            v = d.get(name)
            if v is None or not math.isfinite(v):
                continue
            top = Y(max(v, y0))
            svg.append(f'<rect x="{x0 + k * bw:.1f}" y="{top:.1f}" width="{bw * 0.92:.1f}" height="{bottom - top:.1f}" '
                       f'fill="{PALETTE[k % len(PALETTE)]}"><title>{esc(sname)} {esc(name)}: {v:.4f}</title></rect>')
    for k, (sname, _) in enumerate(series):
        cx, cy = L + (k % 3) * 210, bottom + 36 + (k // 3) * 16
        svg.append(f'<rect x="{cx}" y="{cy - 9}" width="10" height="10" fill="{PALETTE[k % len(PALETTE)]}"/>'
                   f'<text x="{cx + 14}" y="{cy}" font-size="11">{esc(sname)}</text>')
    write_svg(path, svg)
    return True


# ------------------------------------------------------------------ pass-key results (IPD experiment)

COLORS = ["#7f7f7f", "#08519c", "#d94801", "#238b45", "#6a51a3", "#b8860b"]
LABELS = {"none": "no extension", "ipd": "IPD (distilled, packed short docs)", "ce_long": "CE on long documents", "kd_short": "KD at T (control)",
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
    write_svg(out, svg)



# ------------------------------------------------------------------ runs compared (e.g. fp32 vs bf16)

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
        c = PALETTE[k % len(PALETTE)]
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
        c = PALETTE[(k + 1) % len(PALETTE)]
        svg.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.2" points="{poly(d, Yd)}"/>')
        svg.append(f'<text x="{L + 10}" y="{top2 + 12 + 14 * k}" fill="{c}">loss({lab}) - loss({labels[0]}) per step</text>')
    write_svg(out, svg)
    print(json.dumps({"plot": out, "batch_noise_rms": round(noise, 6), "comparisons": summary}, indent=1))


# ------------------------------------------------------------------ a run's metrics.jsonl

def plot_loss(path, out):
    train, val = read_metrics(path)
    sm = smooth(train)  # exponential moving average over the raw per-step losses
    series = [("", train, {"color": "#9ecae1", "width": 1}),
              ("training (smoothed)", sm, {"color": "#08519c"})]
    if val:
        series.append(("held-out", val, {"color": "#d94801", "markers": True}))
    run = os.path.basename(os.path.dirname(os.path.abspath(path)))
    line_chart(out, f"{run}: loss (nats/token)", "step", "loss", series)


# ------------------------------------------------------------------ bench/curves.sh output

# kernel timers (common/prof.h names) grouped for the stacked bars
KERNEL_GROUPS = [
    ("matmul qkv", ("matmul.qkv.",)), ("matmul o", ("matmul.o.",)), ("matmul gate+up", ("matmul.gate_up.",)),
    ("matmul down", ("matmul.down.",)), ("matmul LM head", ("matmul.lm_head.",)),
    ("attention fwd", ("attention.fwd",)), ("attention bwd", ("attention.bwd",)),
    ("cross-entropy", ("head.loss",)), ("rmsnorm", ("rmsnorm.",)), ("rope + qk-norm", ("rope.", "qknorm.")),
    ("swiglu", ("swiglu.",)), ("embedding", ("embedding.",)), ("residual", ("residual.",)),
    ("optimizer + zero/clip", ("optimizer", "zero_grad", "clip_grad")), ("other", ("other",)),
]


def kernel_shares(profile):
    out = {}
    for p in profile:
        for g, prefixes in KERNEL_GROUPS:
            if p["name"].startswith(prefixes):
                out[g] = out.get(g, 0.0) + p["share"]
                break
    return out


def plot_curves(path, out_dir):
    with open(path) as f:
        d = json.load(f)
    os.makedirs(out_dir, exist_ok=True)
    where = f"{d.get('commit', '?')}, {d.get('threads', '?')} threads"
    seq = sorted(d.get("seq", []), key=lambda r: r["seq"])
    if seq:
        line_chart(os.path.join(out_dir, "tokens_vs_seq.svg"),
                   f"{seq[0]['model']}: tokens/s against sequence length ({where})", "sequence length T (B·T fixed)",
                   "tokens/s", [("tokens/s", [(r["seq"], r["tokens_per_s"]) for r in seq], {"markers": True})],
                   logx=True, y_from_zero=True, xticks=[(r["seq"], f"{r['seq']} (B={r['batch']})") for r in seq],
                   labels=[(r["seq"], r["tokens_per_s"], f"MFU {100 * r['mfu']:.0f}%") for r in seq])
    size = sorted(d.get("size", []), key=lambda r: r["params"])
    if size:
        line_chart(os.path.join(out_dir, "tokens_vs_size.svg"),
                   f"tokens/s against model size, B={size[0]['batch']} T={size[0]['seq']} ({where})", "parameters",
                   "tokens/s", [("tokens/s", [(r["params"], r["tokens_per_s"]) for r in size], {"markers": True})],
                   logx=True, y_from_zero=True,
                   labels=[(r["params"], r["tokens_per_s"], f"{r['model']} MFU {100 * r['mfu']:.0f}%") for r in size])
    thr = sorted(d.get("threads_curve", []), key=lambda r: r["threads"])
    if thr:
        base = thr[0]["tokens_per_s"] / thr[0]["threads"]
        line_chart(os.path.join(out_dir, "tokens_vs_threads.svg"),
                   f"{thr[0]['model']} B={thr[0]['batch']} T={thr[0]['seq']}: tokens/s against threads "
                   f"({d.get('commit', '?')})", "threads", "tokens/s",
                   [("measured", [(r["threads"], r["tokens_per_s"]) for r in thr], {"markers": True}),
                    ("linear from the first point", [(r["threads"], base * r["threads"]) for r in thr],
                     {"color": "#bdbdbd", "dash": "4 3"})],
                   y_from_zero=True, xticks=[(r["threads"], str(r["threads"])) for r in thr],
                   labels=[(r["threads"], r["tokens_per_s"], f"{r['tokens_per_s']:.0f}") for r in thr])
    bars = []
    for curve, label in (("seq", lambda r: f"{r['model']} B={r['batch']} T={r['seq']}"),
                         ("size", lambda r: f"{r['model']} B={r['batch']} T={r['seq']}"),
                         ("threads_curve", lambda r: f"{r['model']} {r['threads']} thread(s)")):
        for r in d.get(curve, []):
            if r.get("profile"):
                bars.append((label(r), kernel_shares(r["profile"])))
    if bars:
        stacked_bars(os.path.join(out_dir, "kernel_share.svg"), f"share of step time per kernel ({where})", bars,
                     [g for g, _ in KERNEL_GROUPS])


def main():
    args = sys.argv[1:]
    if args[:1] == ["--curves"] and len(args) in (2, 3):
        plot_curves(args[1], args[2] if len(args) == 3 else os.path.dirname(os.path.abspath(args[1])))
        return
    if args[:1] == ["--compare"]:
        compare(args[1:])
        return
    if args[:1] == ["--passkey"] and len(args) == 3:
        plot_passkey(args[1], args[2])
        return
    if len(args) not in (1, 2) or args[0].startswith("--"):
        sys.exit("usage: plot_metrics.py METRICS.jsonl [OUT.svg] | --curves CURVES.json [OUT_DIR] | "
                 "--passkey RESULTS.json OUT.svg | --compare A.jsonl B.jsonl ... --out OUT.svg")
    path = args[0]
    plot_loss(path, args[1] if len(args) > 1 else os.path.join(os.path.dirname(path) or ".", "loss.svg"))


if __name__ == "__main__":
    main()
