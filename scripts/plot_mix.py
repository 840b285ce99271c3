#!/usr/bin/env python3
"""Table and SVG of the mixing experiment (scripts/mix_experiment.sh), standard library only.

    plot_mix.py RUN_DIR OUT.svg > results.md
    plot_mix.py --mixture OUT_DIR/mixture.json OUT.svg    (one `mobilellm mix` output: weights, and the
        influence utilities or, for simulate, each run's measured against predicted target loss)

Reads RUN_DIR/ARM/mixture.json (weights) and RUN_DIR/student_ARM/eval.jsonl (held-out loss per domain and
on the target mix) for ARM in uniform, natural, influence, simulate; writes RUN_DIR/results.json, the SVG
(left: each arm's weights as a stacked bar; right: held-out loss per domain and arm) and a Markdown report
on stdout (weights, losses, influence utilities and cost, the regression's held-out fit, LOO).
"""
import json
import os
import sys



def write(path, parts):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(parts + ["</svg>"]) + "\n")
    os.replace(tmp, path)


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
    write(out, p)


if sys.argv[1] == "--mixture":
    plot_one(sys.argv[2], sys.argv[3])
    sys.exit(0)
run, out = sys.argv[1], sys.argv[2]
ARMS = ["uniform", "natural", "influence", "simulate"]
COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]
mix, ev = {}, {}
for a in ARMS:
    p = os.path.join(run, a, "mixture.json")
    if os.path.exists(p):
        mix[a] = json.load(open(p))
    p = os.path.join(run, f"student_{a}", "eval.jsonl")
    if os.path.exists(p):
        ev[a] = {}
        for line in open(p):
            r = json.loads(line)
            ev[a][r.get("domain", "all")] = r["loss"]
arms = [a for a in ARMS if a in mix]
doms = [d["name"] for d in mix[arms[0]]["domains"]]
W = {a: {d["name"]: d["weight"] for d in mix[a]["domains"]} for a in arms}
cols = doms + ["target_mix"]
json.dump({"weights": W, "heldout_loss": ev}, open(os.path.join(run, "results.json"), "w"), indent=1)

print("### Mixture weights\n")
print("| arm | " + " | ".join(doms) + " |")
print("|---|" + "---|" * len(doms))
for a in arms:
    print(f"| {a} | " + " | ".join(f"{W[a][d]:.3f}" for d in doms) + " |")
print("\n### Held-out loss of the student (nats per byte; lower is better)\n")
print("| arm | " + " | ".join(cols) + " | real-domain mean |")
print("|---|" + "---|" * (len(cols) + 1))
for a in arms:
    if a not in ev:
        continue
    real = [ev[a][d] for d in doms if d != "junk" and d in ev[a]]
    print(f"| {a} | " + " | ".join(f"{ev[a].get(c, float('nan')):.3f}" for c in cols) +
          f" | {sum(real) / max(len(real), 1):.3f} |")
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

# ---- SVG
Wd, H = 980, 420
parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{Wd}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{Wd}" height="{H}" fill="white"/>',
         '<text x="20" y="22" font-size="14">Mixture weights</text>',
         '<text x="400" y="22" font-size="14">Student held-out loss by domain (nats/byte)</text>']
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
if ev:
    vals = [ev[a][c] for a in arms if a in ev for c in cols if c in ev[a]]
    lo, hi = min(vals) * 0.95, max(vals) * 1.02
    px0, py0, pw, ph = 430, 40, 520, 300
    gw = pw / len(cols)
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        yy = py0 + ph - (v - lo) / (hi - lo) * ph
        parts.append(f'<line x1="{px0}" x2="{px0 + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>'
                     f'<text x="{px0 - 4}" y="{yy + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    ea = [a for a in arms if a in ev]
    for ci, c in enumerate(cols):
        for ai, a in enumerate(ea):
            v = ev[a].get(c)
            if v is None:
                continue
            bx = px0 + ci * gw + 4 + ai * (gw - 8) / len(ea)
            hh = (v - lo) / (hi - lo) * ph
            parts.append(f'<rect x="{bx:.1f}" y="{py0 + ph - hh:.1f}" width="{(gw - 8) / len(ea) - 1:.1f}" height="{hh:.1f}" '
                         f'fill="{["#999", "#f28e2b", "#59a14f", "#4e79a7"][ai % 4]}"><title>{a} {c} {v:.3f}</title></rect>')
        parts.append(f'<text x="{px0 + ci * gw + gw / 2:.1f}" y="{py0 + ph + 14}" text-anchor="middle">{c}</text>')
    for ai, a in enumerate(ea):
        parts.append(f'<rect x="{px0 + ai * 110}" y="{py0 + ph + 30}" width="10" height="10" fill="{["#999", "#f28e2b", "#59a14f", "#4e79a7"][ai % 4]}"/>'
                     f'<text x="{px0 + ai * 110 + 14}" y="{py0 + ph + 39}">{a}</text>')
parts.append("</svg>")
tmp = out + ".tmp"
with open(tmp, "w") as f:
    f.write("\n".join(parts) + "\n")
os.replace(tmp, out)
