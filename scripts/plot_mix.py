#!/usr/bin/env python3
"""Table and SVG of the mixing experiment (scripts/mix_experiment.sh), standard library only.

    plot_mix.py RUN_DIR OUT.svg > results.md
    plot_mix.py --mixture OUT_DIR/mixture.json OUT.svg    (one `mobilellm mix` output: weights, and the
        influence utilities or, for simulate, each run's measured against predicted target loss)

Reads RUN_DIR/ARM/mixture.json (weights) and, for every seed S of the students, RUN_DIR/student_ARM_sS/eval.jsonl
(held-out loss per domain and on the target mix) and RUN_DIR/student_ARM_sS/mc_TASK.json (zero-shot multiple
choice) for ARM in uniform, natural, influence, simulate. Writes RUN_DIR/results.json (weights, every seed's
losses and accuracies, their mean and standard deviation over seeds, the influence and simulate diagnostics
and RUN_DIR/times.txt), the SVG (weights as stacked bars; held-out loss per domain and arm, mean over seeds
with min-max bars; MC accuracy per task, mean over seeds with min-max bars, chance dashed) and a Markdown
report on stdout (weights, losses as mean ± sd over seeds, pairwise gaps on the target against the seed
spread, MC accuracy, influence utilities and cost, the regression's held-out fit, LOO).
"""
import glob
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mc_summary import TASKS, summary  # noqa: E402
from plot_metrics import write_svg  # noqa: E402



def plot_one(path, out):
    m = json.load(open(path))
    doms = [d["name"] for d in m["domains"]]
    w = [d["weight"] for d in m["domains"]]
    p = ['<svg xmlns="http://www.w3.org/2000/svg" width="900" height="360" font-family="sans-serif" font-size="12">',
         '<rect width="900" height="360" fill="white"/>',
         f'<text x="20" y="22" font-size="14">{m.get("method", "")} mixture weights</text>']
    bw = 380 / len(doms)
    for i, (d, v) in enumerate(zip(doms, w)):
        h = v / max(w) * 260
        p.append(f'<rect x="{30 + i * bw:.1f}" y="{300 - h:.1f}" width="{bw - 6:.1f}" height="{h:.1f}" fill="#4e79a7"/>'
                 f'<text x="{30 + i * bw + bw / 2 - 3:.1f}" y="{296 - h:.1f}" text-anchor="middle">{v:.3f}</text>'
                 f'<text x="{30 + i * bw + bw / 2 - 3:.1f}" y="316" text-anchor="middle">{d}</text>')
    runs = [r for r in m.get("runs", []) if r.get("predicted_loss")]
    tg = m["targets"][0]["name"]
    if runs:  # simulate: measured vs predicted loss of the first target
        pts = [(r["target_loss"][tg], r["predicted_loss"][tg], r.get("heldout")) for r in runs
               if r["predicted_loss"].get(tg) is not None]
        lo = min(min(a, b) for a, b, _ in pts); hi = max(max(a, b) for a, b, _ in pts)
        sc = lambda v: (v - lo) / ((hi - lo) or 1) * 260
        p.append(f'<text x="470" y="22" font-size="14">runs: measured vs predicted loss on {tg} (red: held out)</text>'
                 f'<line x1="480" y1="300" x2="740" y2="40" stroke="#ccc"/>')
        for a, b, h in pts:
            p.append(f'<circle cx="{480 + sc(a):.1f}" cy="{300 - sc(b):.1f}" r="4" fill="{"#e15759" if h else "#4e79a7"}"/>')
        p.append(f'<text x="480" y="320">measured {lo:.3f} .. {hi:.3f}</text>')
    elif "influence" in m:
        u = [m["influence"]["utility"][d] for d in doms]
        mx = max(abs(x) for x in u) or 1
        p.append('<text x="470" y="22" font-size="14">utility per domain (Eq. 6)</text>'
                 '<line x1="470" y1="170" x2="880" y2="170" stroke="#999"/>')
        for i, (d, v) in enumerate(zip(doms, u)):
            h = v / mx * 120
            p.append(f'<rect x="{475 + i * 400 / len(doms):.1f}" y="{170 - max(h, 0):.1f}" width="{400 / len(doms) - 6:.1f}" '
                     f'height="{abs(h):.1f}" fill="{"#59a14f" if v > 0 else "#e15759"}"/>'
                     f'<text x="{475 + (i + 0.5) * 400 / len(doms) - 3:.1f}" y="316" text-anchor="middle">{d}</text>')
    write_svg(out, p, announce=False)


if sys.argv[1] == "--mixture":
    plot_one(sys.argv[2], sys.argv[3])
    sys.exit(0)
run, out = sys.argv[1], sys.argv[2]
ARMS = ["uniform", "natural", "influence", "simulate"]
ARM_COLORS = ["#999", "#f28e2b", "#59a14f", "#4e79a7"]
COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]


def mean_sd(xs):
    m = sum(xs) / len(xs)
    return m, (math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0)


mix, ev, mc = {}, {}, {}
for a in ARMS:
    p = os.path.join(run, a, "mixture.json")
    if os.path.exists(p):
        mix[a] = json.load(open(p))
    for sdir in sorted(glob.glob(os.path.join(run, f"student_{a}_s*"))):
        seed = re.sub(r".*_s", "", sdir)
        p = os.path.join(sdir, "eval.jsonl")
        if os.path.exists(p):
            ev.setdefault(a, {})[seed] = {(r := json.loads(line)).get("domain", "all"): r["loss"] for line in open(p)}
        for t in TASKS:
            p = os.path.join(sdir, f"mc_{t}.json")
            if os.path.exists(p):
                mc.setdefault(a, {}).setdefault(t, {})[seed] = summary(p)
arms = [a for a in ARMS if a in mix]
doms = [d["name"] for d in mix[arms[0]]["domains"]]
W = {a: {d["name"]: d["weight"] for d in mix[a]["domains"]} for a in arms}
cols = doms + ["target_mix"]
ea = [a for a in arms if a in ev]
# per arm and column: mean, sd, min, max over seeds
stat = {a: {c: (*mean_sd(v := [ev[a][s][c] for s in ev[a] if c in ev[a][s]]), min(v), max(v))
            for c in cols} for a in ea}
for a in ea:
    v = [sum(ev[a][s][d] for d in doms if d != "junk") / sum(d != "junk" for d in doms) for s in ev[a]]
    stat[a]["real_mean"] = (*mean_sd(v), min(v), max(v))
mtasks = [t for t in TASKS if any(t in mc.get(a, {}) for a in ea)]
mcstat = {a: {t: (*mean_sd([x["acc"] for x in mc[a][t].values()]), min(x["acc"] for x in mc[a][t].values()),
                  max(x["acc"] for x in mc[a][t].values()))
              for t in mtasks if t in mc.get(a, {})} for a in ea}
times = {}
if os.path.exists(os.path.join(run, "times.txt")):
    for line in open(os.path.join(run, "times.txt")):
        k, v = line.split()
        times[k] = times.get(k, 0.0) + float(v)  # "total" once per invocation of a restarted run
diag = {}
for a in ("influence", "simulate"):
    if a in mix:
        diag[a] = {k: mix[a][k] for k in ("settings", "influence", "regression", "loo", "runs", "seconds") if k in mix[a]}
res = {"weights": W, "heldout_loss": ev,
       "heldout_loss_over_seeds": {a: {c: dict(zip(("mean", "sd", "min", "max"), v)) for c, v in stat[a].items()} for a in ea},
       "mc": {a: {t: mc[a][t] for t in mtasks if t in mc.get(a, {})} for a in ea},
       "mc_over_seeds": {a: {t: dict(zip(("mean", "sd", "min", "max"), v)) for t, v in mcstat[a].items()} for a in ea},
       "diagnostics": diag, "times_s": times}
tmp = os.path.join(run, "results.json.tmp")
json.dump(res, open(tmp, "w"), indent=1)
os.replace(tmp, os.path.join(run, "results.json"))

print("### Mixture weights\n")
print("| arm | " + " | ".join(doms) + " |")
print("|---|" + "---|" * len(doms))
for a in arms:
    print(f"| {a} | " + " | ".join(f"{W[a][d]:.3f}" for d in doms) + " |")
if ea:
    nseeds = sorted({len(ev[a]) for a in ea})
    print(f"\n### Held-out loss of the students (nats per byte, lower is better): mean ± sd over {'/'.join(map(str, nseeds))} seeds\n")
    print("| arm | " + " | ".join(cols) + " | real-domain mean |")
    print("|---|" + "---|" * (len(cols) + 1))
    for a in ea:
        print(f"| {a} | " + " | ".join(f"{stat[a][c][0]:.3f} ± {stat[a][c][1]:.3f}" for c in cols + ["real_mean"]) + " |")
    print("\nTarget mix, every seed: " + "; ".join(
        f"{a} " + ", ".join(f"{ev[a][s]['target_mix']:.3f}" for s in sorted(ev[a])) for a in ea))
    for col in ("target_mix", "math"):
        if not all(col in stat[a] for a in ea):
            continue
        print(f"\n### Gaps on {col} against the seed spread\n")
        print("| arms | gap of the means | pooled sd | gap / pooled sd | seed ranges overlap |\n|---|---|---|---|---|")
        for i, a in enumerate(ea):
            for b in ea[i + 1:]:
                (ma, sa, loa, hia), (mb, sb, lob, hib) = stat[a][col], stat[b][col]
                pooled = math.sqrt((sa ** 2 + sb ** 2) / 2)
                print(f"| {a} − {b} | {ma - mb:+.3f} | {pooled:.3f} | {(ma - mb) / pooled if pooled else float('inf'):+.1f} | "
                      f"{'yes' if loa <= hib and lob <= hia else 'no'} |")
if mtasks:
    first = next(iter(mc[ea[0]][mtasks[0]].values()))
    print(f"\n### Zero-shot accuracy: mean ± sd over seeds (items per task and chance below)\n")
    print("| arm | " + " | ".join(mtasks) + " | mean |\n|---|" + "---|" * (len(mtasks) + 1))
    for a in ea:
        ms = [mcstat[a][t][0] for t in mtasks if t in mcstat[a]]
        print(f"| {a} | " + " | ".join(f"{mcstat[a][t][0]:.3f} ± {mcstat[a][t][1]:.3f}" for t in mtasks if t in mcstat[a]) +
              f" | {sum(ms) / len(ms):.3f} |")
    any_seed = {t: next(iter(mc[ea[0]][t].values())) for t in mtasks}
    print("\nItems, chance and the binomial standard error of one seed's accuracy at chance: " + "; ".join(
        f"{t} {x['n']}, {x['chance']:.3f}, ±{math.sqrt(x['chance'] * (1 - x['chance']) / (x['n'] - 1)):.3f}"
        for t, x in any_seed.items()))
inf = mix.get("influence", {}).get("influence")
if inf:
    print("\n### Influence: per-domain utility (Eq. 6) and cost\n")
    print("| " + " | ".join(doms) + " |\n|" + "---|" * len(doms))
    print("| " + " | ".join(f"{inf['utility'][d]:.3g}" for d in doms) + " |")
    c = inf["cost"]
    print(f"\nScored tensors: {inf['tensors']} ({inf['tensors_selected']}). {int(c['samples_scored'])} sample scores in "
          f"{c['scoring_seconds']:.1f} s: {c['ratio_to_train_pass']:.2f}x the time of one training pass over the same samples.")
reg = mix.get("simulate", {}).get("regression")
if reg:
    print(f"\n### Simulate: regression ({reg['model']}), {reg['runs']} runs, {reg['heldout_runs']} held out\n")
    print("| target | held-out MAE | held-out RMSE | RMSE of the mean | Spearman | R² (all runs) |\n|---|---|---|---|---|---|")
    for t, f in reg["fit"].items():
        print(f"| {t} | {f.get('heldout_mae', float('nan')):.4f} | {f.get('heldout_rmse', float('nan')):.4f} | "
              f"{f.get('heldout_rmse_of_mean', float('nan')):.4f} | {f.get('heldout_spearman', float('nan')):.2f} | "
              f"{f['train_r2_all_runs']:.3f} |")
loo = mix.get("simulate", {}).get("loo")
if loo:
    tg = list(next(iter(loo["delta_loss"].values())).keys())
    print("\n### Leave-one-domain-out (Eq. 1): target loss without the domain minus with it (positive = helps)\n")
    print("| left out | " + " | ".join(tg) + " |\n|---|" + "---|" * len(tg))
    for d, row in loo["delta_loss"].items():
        print(f"| {d} | " + " | ".join(f"{row[t]:+.4f}" for t in tg) + " |")
if times:
    # per phase: processes ran two at a time, so the sums of students and MC are process-seconds, not wall time
    groups = {}
    for k, v in times.items():
        g = ("tokenize" if k.startswith("tok_") else "students (sum)" if k.startswith("student_") else
             "zero-shot MC (sum)" if k.startswith("mc_") else k)
        n, t = groups.get(g, (0, 0.0))
        groups[g] = (n + 1, t + v)
    print("\n### Time (s)\n\n" + ", ".join(f"{g} {t:.0f}" + (f" ({n} runs)" if n > 1 else "") for g, (n, t) in groups.items()))

# ---- SVG: weights (top left), held-out loss (top right), MC accuracy (bottom right)
Wd, H = 980, 780
parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{Wd}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{Wd}" height="{H}" fill="white"/>',
         '<text x="20" y="22" font-size="14">Mixture weights</text>',
         '<text x="400" y="22" font-size="14">Student held-out loss by domain (nats/byte; mean, min-max over seeds)</text>']
x0, y0, bw, bh = 90, 40, 260, 40
for i, a in enumerate(arms):
    y = y0 + i * (bh + 14)
    parts.append(f'<text x="{x0 - 8}" y="{y + bh / 2 + 4}" text-anchor="end">{a}</text>')
    x = x0
    for j, d in enumerate(doms):
        w = W[a][d] * bw
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bh}" fill="{COLORS[j % 8]}"/>')
        x += w
for j, d in enumerate(doms):
    parts.append(f'<rect x="{x0 + (j % 4) * 70}" y="{y0 + 4 * (bh + 14) + 10 + (j // 4) * 18}" width="10" height="10" fill="{COLORS[j % 8]}"/>'
                 f'<text x="{x0 + (j % 4) * 70 + 14}" y="{y0 + 4 * (bh + 14) + 19 + (j // 4) * 18}">{d}</text>')


def bars(groups, val, lo, hi, px0, py0, pw, ph, fmt):
    """Grouped bars: groups = labels; val(group, arm) -> (mean, min, max) or None."""
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        yy = py0 + ph - (v - lo) / (hi - lo) * ph
        parts.append(f'<line x1="{px0}" x2="{px0 + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>'
                     f'<text x="{px0 - 4}" y="{yy + 4:.1f}" text-anchor="end">{fmt(v)}</text>')
    gw = pw / len(groups)
    y = lambda v: py0 + ph - (v - lo) / (hi - lo) * ph
    for ci, c in enumerate(groups):
        for ai, a in enumerate(ea):
            r = val(c, a)
            if r is None:
                continue
            m, vmin, vmax = r
            bx = px0 + ci * gw + 4 + ai * (gw - 8) / len(ea)
            w = (gw - 8) / len(ea) - 1
            parts.append(f'<rect x="{bx:.1f}" y="{y(m):.1f}" width="{w:.1f}" height="{py0 + ph - y(m):.1f}" '
                         f'fill="{ARM_COLORS[ARMS.index(a)]}"><title>{a} {c} {m:.3f} ({vmin:.3f}..{vmax:.3f})</title></rect>'
                         f'<line x1="{bx + w / 2:.1f}" x2="{bx + w / 2:.1f}" y1="{y(vmax):.1f}" y2="{y(vmin):.1f}" stroke="black"/>')
        parts.append(f'<text x="{px0 + ci * gw + gw / 2:.1f}" y="{py0 + ph + 14}" text-anchor="middle">{c}</text>')
    for ai, a in enumerate(ea):
        parts.append(f'<rect x="{px0 + ai * 110}" y="{py0 + ph + 26}" width="10" height="10" fill="{ARM_COLORS[ARMS.index(a)]}"/>'
                     f'<text x="{px0 + ai * 110 + 14}" y="{py0 + ph + 35}">{a}</text>')
    return y


if ea:
    vals = [stat[a][c][k] for a in ea for c in cols for k in (2, 3)]
    bars(cols, lambda c, a: (stat[a][c][0], stat[a][c][2], stat[a][c][3]) if c in stat[a] else None,
         min(vals) * 0.95, max(vals) * 1.02, 430, 40, 520, 300, lambda v: f"{v:.2f}")
if mtasks:
    parts.append('<text x="400" y="432" font-size="14">Zero-shot accuracy (mean, min-max over seeds; dashed: chance)</text>')
    hi = max(max(mcstat[a][t][3] for a in ea for t in mcstat[a]), 0.55) + 0.05
    y = bars(mtasks, lambda t, a: (mcstat[a][t][0], mcstat[a][t][2], mcstat[a][t][3]) if t in mcstat[a] else None,
             0.0, hi, 430, 450, 520, 260, lambda v: f"{v:.2f}")
    gw = 520 / len(mtasks)
    for ti, t in enumerate(mtasks):
        ch = next(iter(mc[ea[0]][t].values()))["chance"]
        parts.append(f'<line x1="{430 + ti * gw + 2:.1f}" x2="{430 + (ti + 1) * gw - 2:.1f}" y1="{y(ch):.1f}" y2="{y(ch):.1f}" '
                     f'stroke="black" stroke-dasharray="4 3"/>')
write_svg(out, parts, announce=False)
