#!/usr/bin/env python3
"""SVG of the QAT experiment (scripts/qat_experiment.sh), drawn with scripts/plot_metrics.py's helpers.

    plot_qat.py RESULTS.json OUT.svg

One column per arm (full precision, PTQ, QAT): the held-out loss of each domain minus the full-precision model's
(dots), and their mean (line). Zero is the full-precision model; below zero a quantized arm beats it on that
domain (QAT adapting to the training mixture, not only to the grid).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot_metrics import PALETTE, line_chart  # noqa: E402

NAMES = {"fp": "fp", "ptq-q4_0": "PTQ q4_0", "ptq-int4": "PTQ int4-g32", "ptq-chan": "PTQ channel",
         "qat-ce": "QAT CE", "qat-sd": "QAT SD",
         "qat-lsq": "QAT LSQ", "qat-q4_0": "QAT q4_0"}


def main(path, out):
    r = json.load(open(path))
    loss = r["loss"]
    arms = list(loss)
    doms = [d for d in loss["fp"] if d not in ("mean", "train_seconds")]
    series = []
    for k, d in enumerate(doms):
        pts = [(i, loss[a][d] - loss["fp"][d]) for i, a in enumerate(arms)]
        series.append((d, pts, {"color": PALETTE[k + 1], "line": False, "markers": True}))
    series.append(("mean of the domains", [(i, loss[a]["mean"] - loss["fp"]["mean"]) for i, a in enumerate(arms)],
                   {"color": PALETTE[0], "width": 3, "markers": True}))
    series.append(("", [(0, 0.0), (len(arms) - 1, 0.0)], {"color": "#999", "width": 1, "dash": "4 3"}))
    labels = [(i, loss[a]["mean"] - loss["fp"]["mean"], f"{loss[a]['mean'] - loss['fp']['mean']:+.3f}")
              for i, a in enumerate(arms) if a != "fp"]
    title = (f"28M teacher, 4-bit: held-out loss minus full precision ({r['steps']} QAT steps of "
             f"{r['batch']}x{r['seq']}, lr {r['lr']:g})")
    line_chart(out, title, "arm", "loss - fp loss (nats/token)", series, labels=labels,
               xticks=[(i, NAMES.get(a, a)) for i, a in enumerate(arms)])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: plot_qat.py RESULTS.json OUT.svg")
    main(*sys.argv[1:])
