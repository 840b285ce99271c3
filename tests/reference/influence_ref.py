#!/usr/bin/python3
"""Per-sample gradient dot products by PyTorch autograd: the reference of mix/influence.c.

    /usr/bin/python3 tests/reference/influence_ref.py --config CFG.json --weights W.safetensors \
        --samples S.safetensors --targets TG.safetensors --tensors NAME[,NAME...] --out OUT.safetensors

S.safetensors and TG.safetensors hold int32 "tokens" and "targets" [B, T] (< 0: not scored).
For each target set c, gbar_c = gradient of the mean token loss over all its scored tokens. For each
sample row i, g_i = gradient of row i's mean token loss, computed alone (one backward per row: the
definition, no batching trick). Output "scores" [B, n_targets] = <g_i, gbar_c> over the named
parameters (the tied embedding's gradient holds both of its uses), and "row_loss" [B]. Targets: one
set per distinct value of the optional int32 "set" [B_target] (default: one set).
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mobilellm_torch import (MobileLLM, MobileLLMConfig, cross_entropy, load_weights,  # noqa: E402
                             read_safetensors, write_safetensors)


def grads(model, names, tokens, targets):
    params = dict(model.named_parameters())
    model.zero_grad(set_to_none=True)
    logits = model(tokens)
    loss = cross_entropy(logits, targets)
    loss.backward()
    return {n: params[n].grad.detach().clone().double() for n in names}, float(loss)


def main():
    ap = argparse.ArgumentParser()
    for k in ("config", "weights", "samples", "targets", "tensors", "out"):
        ap.add_argument("--" + k, required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cfg = MobileLLMConfig.from_json_file(a.config)
    model = MobileLLM(cfg)
    w, _ = read_safetensors(a.weights)
    load_weights(model, w)
    names = a.tensors.split(",")
    s, _ = read_safetensors(a.samples, to_float32=False)
    t, _ = read_safetensors(a.targets, to_float32=False)
    st, sg = torch.from_numpy(s["tokens"].astype(np.int64)), torch.from_numpy(s["targets"].astype(np.int64))
    tt, tg = torch.from_numpy(t["tokens"].astype(np.int64)), torch.from_numpy(t["targets"].astype(np.int64))
    sets = t["set"].astype(np.int64) if "set" in t else np.zeros(tt.shape[0], np.int64)
    gbars = []
    for c in sorted(set(sets.tolist())):
        rows = torch.from_numpy(np.nonzero(sets == c)[0])
        gbars.append(grads(model, names, tt[rows], tg[rows])[0])
    B = st.shape[0]
    scores = np.zeros((B, len(gbars)), np.float64)
    row_loss = np.zeros(B, np.float64)
    for i in range(B):
        g, row_loss[i] = grads(model, names, st[i:i + 1], sg[i:i + 1])
        for c, gb in enumerate(gbars):
            scores[i, c] = sum(float((g[n] * gb[n]).sum()) for n in names)
    write_safetensors(a.out, {"scores": scores.astype(np.float32), "row_loss": row_loss.astype(np.float32)})


if __name__ == "__main__":
    main()
