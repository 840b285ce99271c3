#!/usr/bin/env python3
"""Zero-shot multiple-choice results (`mobilellm eval --task T --json FILE`) with standard errors and chance.

    mc_summary.py NAME=FILE.json ...      one TSV row per file on stdout
    import mc_summary; mc_summary.summary(path) -> dict   (from the experiment scripts)

For each file: items n, acc and acc_norm with their standard errors sqrt(p (1 - p) / (n - 1)) (the sample
standard error that lm-evaluation-harness reports), and chance = the mean of 1 / choices over the items
scored (ARC has a few items with 3 or 5 choices). Standard library only.
"""
import json
import math
import sys

TASKS = ("hellaswag", "piqa", "arc_easy", "arc_challenge")


def stderr(p, n):
    return math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else float("nan")


def summary(path):
    r = json.load(open(path))
    sc = r["scores"]
    n = len(sc)
    if n == 0:
        raise SystemExit(f"mc_summary: {path} scores no items")
    acc = sum(s["pred"] == s["label"] for s in sc) / n
    acc_norm = sum(s["pred_norm"] == s["label"] for s in sc) / n
    return {"task": r["task"], "n": n, "acc": acc, "acc_se": stderr(acc, n), "acc_norm": acc_norm,
            "acc_norm_se": stderr(acc_norm, n), "chance": sum(1 / len(s["ll"]) for s in sc) / n}


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print("name\ttask\tn\tacc\tacc_se\tacc_norm\tacc_norm_se\tchance")
    for arg in sys.argv[1:]:
        name, sep, path = arg.partition("=")
        if not sep:
            sys.exit(f"mc_summary: {arg}: expected NAME=FILE.json")
        s = summary(path)
        print(f"{name}\t{s['task']}\t{s['n']}\t{s['acc']:.4f}\t{s['acc_se']:.4f}\t{s['acc_norm']:.4f}\t"
              f"{s['acc_norm_se']:.4f}\t{s['chance']:.4f}")
