#!/usr/bin/env python3
"""Compare two teacher-logit caches of the same data (distill/logit_cache.h layout), e.g. one written by
`mobilellm teacher-logits` and one by scripts/teacher_logits_hf.py on a GPU:

    python3 scripts/compare_logit_caches.py A.h5 B.h5 [--max-logprob-diff X] [--min-set-agreement F]

Checks that both cover the same batches (cursor, token hash, batch, seq, topk, vocabulary) and reports, over
every position: the share whose top-K id *sets* are equal and whose id *order* is equal (near-ties may swap
places between two implementations' summation orders), the largest |log p| difference of ids present in both,
and the largest difference of the tail (log of the mass outside the top K). Exits 1 when a threshold given on
the command line is exceeded, 2 when the caches are not of the same data.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from teacher_logits_hf import read_cache  # noqa: E402  (the project's one cache reader in Python)


def compare(a_path, b_path):
    a_attrs, a = read_cache(a_path)
    b_attrs, b = read_cache(b_path)
    for key in ("batch", "seq", "topk", "vocab_size", "data_tokens", "tokenizer"):
        if a_attrs.get(key) != b_attrs.get(key):
            raise SystemExit(f"{b_path}: attribute {key} is {b_attrs.get(key)!r}, {a_path} has {a_attrs.get(key)!r}")
    n = min(a["ids"].shape[0], b["ids"].shape[0])
    if n == 0:
        raise SystemExit(f"{a_path}, {b_path}: no batch in common")
    if not (np.array_equal(a["cursor"][:n], b["cursor"][:n]) and np.array_equal(a["token_hash"][:n], b["token_hash"][:n])):
        print(f"{a_path}, {b_path}: the caches hold different batches (cursor or token hash differ)", file=sys.stderr)
        sys.exit(2)
    ia, ib = a["ids"][:n], b["ids"][:n]
    la, lb = a["logprobs"][:n].astype(np.float32), b["logprobs"][:n].astype(np.float32)
    K = ia.shape[-1]
    ia2, ib2 = ia.reshape(-1, K), ib.reshape(-1, K)
    la2, lb2 = la.reshape(-1, K), lb.reshape(-1, K)
    order_equal = np.all(ia2 == ib2, axis=1)
    set_equal = np.zeros(len(ia2), dtype=bool)
    max_lp = 0.0
    for p in range(len(ia2)):
        pos_b = {int(t): j for j, t in enumerate(ib2[p])}
        common = [(j, pos_b[int(t)]) for j, t in enumerate(ia2[p]) if int(t) in pos_b]
        set_equal[p] = len(common) == K
        if common:
            ja, jb = zip(*common)
            max_lp = max(max_lp, float(np.max(np.abs(la2[p, list(ja)] - lb2[p, list(jb)]))))
    top1 = float(np.mean(ia2[:, 0] == ib2[:, 0]))
    tail = float(np.max(np.abs(a["tail"][:n] - b["tail"][:n])))
    return {"batches": n, "positions": len(ia2), "top1_equal": top1, "set_equal": float(set_equal.mean()),
            "order_equal": float(order_equal.mean()), "max_logprob_diff": max_lp, "max_tail_diff": tail}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--max-logprob-diff", type=float, help="fail above this |log p| difference")
    ap.add_argument("--min-set-agreement", type=float, help="fail below this share of equal top-K sets")
    a = ap.parse_args(argv)
    r = compare(a.a, a.b)
    print(" ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    bad = (a.max_logprob_diff is not None and r["max_logprob_diff"] > a.max_logprob_diff) or \
          (a.min_set_agreement is not None and r["set_equal"] < a.min_set_agreement)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
