#!/usr/bin/env python3
"""Load a mobilellm.c Hugging Face export in transformers and compare its logits with ours.

Run where transformers is installed (the GPU machine lent by `device`; CI has no transformers):
    python3 scripts/check_hf_export.py --hf DIR --tokens "1 2 3 ..." --logits OURS.npy [--device cpu|cuda]
OURS.npy comes from `mobilellm logits --ckpt CKPT --tokens "..." --out OURS.npy`.
Prints one JSON line with the max absolute / relative difference and top-1 agreement, and exits
non-zero when the difference exceeds --rtol (default 1e-4 relative to the logits' max magnitude).
"""
import argparse
import json
import sys

import numpy as np
import torch
import transformers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--logits", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rtol", type=float, default=1e-4)
    a = ap.parse_args()
    ids = [int(t) for t in a.tokens.split()]
    model = transformers.AutoModelForCausalLM.from_pretrained(a.hf, torch_dtype=torch.float32)
    model.to(a.device).eval()
    # fp32 matmuls on GPU: no TF32 shortcuts in a correctness check
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad():
        out = model(torch.tensor([ids], device=a.device)).logits[0].float().cpu().numpy()
    ours = np.load(a.logits)
    if ours.shape != out.shape:
        print(json.dumps({"ok": False, "error": f"shape {ours.shape} vs transformers {out.shape}"}))
        return 1
    diff = np.abs(ours - out)
    scale = float(np.abs(out).max())
    rel = float(diff.max()) / scale
    top1 = float((ours.argmax(-1) == out.argmax(-1)).mean())
    res = {"ok": rel <= a.rtol, "class": type(model).__name__, "transformers": transformers.__version__,
           "tokens": len(ids), "max_abs_diff": float(diff.max()), "max_rel_diff": rel, "top1_agreement": top1}
    print(json.dumps(res))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
