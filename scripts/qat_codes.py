#!/usr/bin/python3
"""How far QAT moved a model on its grid: the share of int4 codes of the linear layers that differ from round to
nearest of the full-precision model, and for learned scales their change from the initial max|row|/7.5.

    qat_codes.py FP.h5 QAT.h5 [QAT.h5 ...]      (one JSON line per QAT checkpoint)

Grids as quant/quant.h: int4-gG (s = max|group|/7.5, q = clamp(round_half_even(x * (1/s)), -8, 7)) and
int4-channel-lsq (q with the checkpoint's learned per-row scale). Q4_0 checkpoints: Q4_0 codes
(d = signed extreme / -8, q = min(15, trunc(x/d + 8.5))), d rounded to fp16 as llama.cpp stores it.
"""
import json
import sys

import h5py
import numpy as np


def recipe(f):
    q = f.attrs.get("quant", b"")
    q = q.decode() if isinstance(q, bytes) else str(q)
    return dict(kv.split("=", 1) for kv in q.split())


def linear_names(f):
    return [k for k in f["params"] if k.endswith("_proj.weight") or k == "lm_head.weight"]


def int4_group(w, g):
    x = w.reshape(w.shape[0], -1, g).astype(np.float32)
    s = np.maximum(np.abs(x).max(-1, keepdims=True) / np.float32(7.5), np.finfo(np.float32).tiny)
    return np.clip(np.round(x * (np.float32(1) / s)), -8, 7).reshape(w.shape)


def int4_rows(w, s):
    s = s.astype(np.float32)[:, None]
    return np.clip(np.round(w * (np.float32(1) / s)), -8, 7)


def q4_0(w):
    x = w.reshape(w.shape[0], -1, 32).astype(np.float32)
    i = np.abs(x).argmax(-1)[..., None]
    d = np.take_along_axis(x, i, -1) / np.float32(-8)
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, 1), 0).astype(np.float32)
    return np.minimum(15, np.trunc(x * inv + np.float32(8.5))).reshape(w.shape)


def codes(f, name, r, scales=True):
    w = f["params"][name][()]
    scheme = r["scheme"]
    if scheme.startswith("int4-g"):
        return int4_group(w, int(scheme[6:]))
    if scheme == "int4-channel-lsq":
        sname = name[:-len(".weight")] + ".weight_fake_quantizer.scale"
        s = f["params"][sname][()] if scales and sname in f["params"] else \
            np.maximum(np.abs(w).max(1) / np.float32(7.5), np.float32(1e-9))
        return int4_rows(w, s)
    if scheme == "q4_0":
        return q4_0(w)
    raise SystemExit(f"qat_codes: scheme {scheme} is not handled")


def main(fp_path, qat_paths):
    fp = h5py.File(fp_path, "r")
    for path in qat_paths:
        f = h5py.File(path, "r")
        r = recipe(f)
        changed = total = 0
        scale_rel = []
        for name in linear_names(f):
            a, b = codes(fp, name, r, scales=False), codes(f, name, r)
            changed += int((a != b).sum())
            total += a.size
            if r["scheme"] == "int4-channel-lsq":
                w = f["params"][name][()]
                s0 = np.maximum(np.abs(w).max(1) / np.float32(7.5), np.float32(1e-9))
                s = f["params"][name[:-len(".weight")] + ".weight_fake_quantizer.scale"][()]
                scale_rel.append(np.abs(s / s0 - 1))
        out = {"ckpt": path, "scheme": r["scheme"], "codes": total, "codes_changed": changed,
               "share_changed": changed / total}
        if scale_rel:
            v = np.concatenate(scale_rel)
            out["scale_vs_init_rel_mean"] = float(v.mean())
            out["scale_vs_init_rel_max"] = float(v.max())
        print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit("usage: qat_codes.py FP.h5 QAT.h5 [QAT.h5 ...]")
    main(sys.argv[1], sys.argv[2:])
