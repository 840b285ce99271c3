#!/usr/bin/env python3
"""The recipe's report (scripts/recipe.sh, docs/recipe.md) from its output folder, standard library only.

    recipe_report.py OUT

Reads OUT/state (each phase's seconds and metrics), OUT/eval/*.json (held-out loss per domain),
OUT/passkey/*.json (pass-key accuracy per length) and the runs' metrics.jsonl, and writes
OUT/report.json, OUT/report.md and the plots it shows (OUT/plots/*.svg, drawn by scripts/plot_metrics.py).
A phase that has not run is an error: the report is written after the last phase.
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot_metrics import grouped_bars, line_chart, read_metrics, smooth, stacked_bars  # noqa: E402

PHASES = ["data", "tokenizer", "mixture", "teacher", "pretrain", "distill", "ipd", "specialists", "merge", "qat", "export"]
# the models in the order of the pipeline (specialists are added per domain)
LABELS = ["teacher", "warm-up", "ce", "distilled", "ipd", "ce-long", "merged", "merged-uniform", "ptq", "qat"]
# runs whose loss curves are drawn: (phase, run directory under OUT, label, loss): cross-entropy runs and
# distillation runs (their loss is the KL divergence to the teacher) go to separate plots
RUNS = [("teacher", "teacher/teacher_warm_run", "teacher: retrieval warm-up", "ce"), ("teacher", "teacher/run", "teacher", "ce"),
        ("pretrain", "pretrain/pretrain_warm_run", "student: retrieval warm-up", "ce"),
        ("pretrain", "pretrain/run", "ce (pre-training)", "ce"),
        ("distill", "distill/run", "distilled", "kd"), ("ipd", "ipd/run", "IPD at L", "kd"),
        ("ipd", "ipd/ce_long_run", "CE on long documents at L", "ce"), ("qat", "qat/run", "QAT q4_0", "kd")]


def load(path):
    with open(path) as f:
        return json.load(f)


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def collect(out):
    phases = []
    for p in PHASES:
        st = os.path.join(out, "state", p)
        if not os.path.exists(st + ".done"):
            sys.exit(f"recipe_report.py: {out}: phase {p} has not finished")
        phases.append({"name": p, "seconds": int(open(st + ".seconds").read()), "metrics": load(st + ".metrics.json")})
    ev = {}
    for f in sorted(os.listdir(os.path.join(out, "eval"))):
        r = load(os.path.join(out, "eval", f))
        ev[r["label"]] = r["loss"]
    pk = {}
    for f in sorted(os.listdir(os.path.join(out, "passkey"))):
        r = load(os.path.join(out, "passkey", f))
        pk[f[:-5]] = {str(p["length"]): p["accuracy"] for p in r["results"]}
        pk[f[:-5] + ":answer_nll"] = {str(p["length"]): p.get("answer_nll") for p in r["results"]}
    export = phases[-1]["metrics"]
    art = {"gguf": "export/model-q4_0.gguf", "hf": "export/hf"}
    pte = export.get("executorch", {}).get("pte") or ("export/et/model.pte"
                                                      if os.path.exists(os.path.join(out, "export/et/model.pte")) else None)
    art["pte"] = pte
    return phases, ev, pk, art


def order(labels):
    spec = sorted(l for l in labels if l.startswith("specialist:"))
    base = [l for l in LABELS if l in labels]
    cut = next((i for i, l in enumerate(base) if l.startswith("merged")), len(base))  # specialists before merges
    return base[:cut] + spec + base[cut:] + sorted(set(labels) - set(base) - set(spec))


def plots(out, phases, ev, pk, corpus):
    pd = os.path.join(out, "plots")
    os.makedirs(pd, exist_ok=True)
    made = {}
    # loss curves per phase (training loss, smoothed)
    runs = RUNS + [("specialists", f"specialists/run_{d}", f"specialist {d}", "ce") for d in corpus["domains"]]
    for kind, title in (("ce", "cross-entropy training loss per phase (smoothed)"),
                        ("kd", "distillation loss per phase: KL to the teacher (smoothed)")):
        series = []
        for phase, run, label, k in runs:
            p = os.path.join(out, run, "metrics.jsonl")
            if k == kind and os.path.exists(p):
                train, _ = read_metrics(p)
                series.append((f"{phase}: {label}", smooth(train, 0.8), {}))
        if series and line_chart(os.path.join(pd, f"loss_curves_{kind}.svg"), title, "step", "loss (nats/token)", series):
            made[f"loss_curves_{kind}"] = f"plots/loss_curves_{kind}.svg"
    labels = order(list(ev))
    domains = [d for d in corpus["domains"]] + ["avg"]
    if grouped_bars(os.path.join(pd, "heldout_loss.svg"), "held-out loss per domain of every model", "loss (nats/token)",
                    domains, [(l, ev[l]) for l in labels]):
        made["heldout_loss"] = "plots/heldout_loss.svg"
    acc = [(l, pk[l]) for l in order([k for k in pk if ":answer_nll" not in k])]
    if acc:
        line_chart(os.path.join(pd, "passkey.svg"), "pass-key accuracy against prompt length", "prompt length (tokens)",
                   "retrieved (fraction)", [(l, sorted((int(k), v) for k, v in a.items()), {"markers": True}) for l, a in acc],
                   logx=True, xticks=[(int(k), k) for k in sorted(acc[0][1], key=int)], y_range=(-0.05, 1.05))
        made["passkey"] = "plots/passkey.svg"
        nll = [(l, pk[l + ":answer_nll"]) for l, _ in acc if any(v is not None for v in pk[l + ":answer_nll"].values())]
        if nll and line_chart(os.path.join(pd, "passkey_nll.svg"), "pass-key answer NLL against prompt length (lower: "
                              "closer to retrieving)", "prompt length (tokens)", "answer NLL (nats/token)",
                              [(l, sorted((int(k), v) for k, v in a.items() if v is not None), {"markers": True})
                               for l, a in nll], logx=True, xticks=[(int(k), k) for k in sorted(acc[0][1], key=int)]):
            made["passkey_nll"] = "plots/passkey_nll.svg"
    q = [(l, ev[l]) for l in ("merged", "ptq", "qat") if l in ev]
    if q and grouped_bars(os.path.join(pd, "qat_vs_ptq.svg"), "4-bit q4_0: PTQ against QAT (held-out loss)",
                          "loss (nats/token)", domains, q):
        made["qat_vs_ptq"] = "plots/qat_vs_ptq.svg"
    mix = phases[PHASES.index("mixture")]["metrics"]
    tok = phases[PHASES.index("tokenizer")]["metrics"]
    natural = {d: tok.get("tokens_" + d) or 0 for d in mix}
    tot = sum(natural.values()) or 1
    bars = [("influence (mix)", mix), ("uniform", {d: 1 / len(mix) for d in mix}),
            ("natural (tokens)", {d: v / tot for d, v in natural.items()})]
    stacked_bars(os.path.join(pd, "mixture.svg"), "domain weights", bars, list(mix))
    made["mixture"] = "plots/mixture.svg"
    return made


def fmt(v, nd=3):
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{nd}f}"


def markdown(out, phases, ev, pk, art, made, corpus):
    total = sum(p["seconds"] for p in phases)
    md = ["# MobileLLM recipe report", "",
          f"Output folder `{os.path.basename(os.path.abspath(out))}`, {total} s in all. Corpus: {corpus['source']} "
          f"({', '.join(corpus['sources'])}). The numbers and what they mean: docs/recipe.md.", "",
          "## Phases", "", "| phase | seconds | metrics |", "|---|---|---|"]
    for p in phases:
        md.append(f"| {p['name']} | {p['seconds']} | `{json.dumps(p['metrics'])[:300]}` |")
    domains = corpus["domains"] + ["avg"]
    md += ["", "## Held-out loss per domain (nats/token)", "", "| model | " + " | ".join(domains) + " |",
           "|---" * (len(domains) + 1) + "|"]
    for l in order(list(ev)):
        md.append(f"| {l} | " + " | ".join(fmt(ev[l].get(d)) for d in domains) + " |")
    lengths = sorted({k for l, a in pk.items() if ":answer_nll" not in l for k in a}, key=int)
    md += ["", "## Pass-key retrieval (fraction retrieved; answer NLL in nats/token)", "",
           "| model | " + " | ".join(lengths) + " |", "|---" * (len(lengths) + 1) + "|"]
    for l in order([k for k in pk if ":answer_nll" not in k]):
        nll = pk.get(l + ":answer_nll", {})
        md.append(f"| {l} | " + " | ".join(f"{fmt(pk[l].get(k), 2)} ({fmt(nll.get(k), 2)})" for k in lengths) + " |")
    md += ["", "## Exports", ""]
    for k, v in art.items():
        md.append(f"- {k}: `{v}`" if v else f"- {k}: not made")
    for eng, r in phases[-1]["metrics"].items():
        md.append(f"- {eng}: {r.get('status')}" + (f", max |diff|/max |logit| {r['max_rel_diff']}, top-1 agreement "
                                                    f"{r['top1_agreement']:.3f}" if r.get("status") == "checked" else ""))
    md += ["", "## Plots", ""]
    for name, path in made.items():
        md.append(f"![{name}]({path})")
        md.append("")
    return "\n".join(md) + "\n"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: recipe_report.py OUT")
    out = sys.argv[1]
    corpus = load(os.path.join(out, "data", "text", "corpus.json"))
    phases, ev, pk, art = collect(out)
    made = plots(out, phases, ev, pk, corpus)
    bad = [f"{l}/{d}" for l, r in ev.items() for d, v in r.items() if not math.isfinite(v)]
    if bad:
        print(f"recipe_report.py: warning: non-finite held-out loss: {', '.join(bad)}", file=sys.stderr)
    report = {"phases": phases, "eval": ev, "passkey": {k: v for k, v in pk.items() if ":answer_nll" not in k},
              "passkey_answer_nll": {k[:-11]: v for k, v in pk.items() if k.endswith(":answer_nll")},
              "artifacts": art, "plots": made, "corpus": corpus}
    write_atomic(os.path.join(out, "report.json"), json.dumps(report, indent=1) + "\n")
    write_atomic(os.path.join(out, "report.md"), markdown(out, phases, ev, pk, art, made, corpus))
    print(os.path.join(out, "report.md"))


if __name__ == "__main__":
    main()
