#!/usr/bin/env python3
"""torchao's own fake quantizers on the inputs of tests/test_quant_torchao.c (run with a venv that has torchao,
default $HOME/.cache/mobilellm/venv-quant; see scripts/setup_quant_venv.sh):

    python quant_torchao.py IN.safetensors OUT.safetensors

IN: float32 "w" [R, C], "gw" [R, C], "x" [N, K], "gx" [N, K], "s" [R]. OUT, each through
torchao.quantization.qat.IntxFakeQuantizer and autograd:
  int4-gG.y / .gw    IntxFakeQuantizeConfig(torch.int4, group_size=G) (symmetric; 8da4w's weights), G = 32..256
  int8.y / .gw       IntxFakeQuantizeConfig(torch.int8, granularity="per_channel", is_symmetric=True)
  lsq.s0             the initial scale of IntxFakeQuantizeConfig(torch.int4, "per_channel", is_symmetric=True,
                     is_dynamic=False, range_learning=True) (initialize_fake_quantizers' first forward)
  lsq.y / .gw / .gs  the same quantizer with its scale set to "s": values, weight and scale gradients
  act.y / .gx        IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False) (8da4w's activations)
and "version" (torchao's, as bytes of text)."""
import sys

import numpy as np
import torch
import torchao
from safetensors.numpy import load_file, save_file
from torchao.quantization.qat import IntxFakeQuantizeConfig
from torchao.quantization.qat.fake_quantizer import IntxFakeQuantizer


def run(fq, t, g):
    t = t.clone().requires_grad_(True)
    y = fq(t)
    y.backward(g)
    return y.detach().numpy(), t.grad.numpy()


def main():
    inp = load_file(sys.argv[1])
    w, gw, x, gx, s = (torch.from_numpy(inp[k].copy()) for k in ("w", "gw", "x", "gx", "s"))
    out = {}
    for g in (32, 64, 128, 256):
        out[f"int4-g{g}.y"], out[f"int4-g{g}.gw"] = run(IntxFakeQuantizer(IntxFakeQuantizeConfig(torch.int4, group_size=g)), w, gw)
    out["int8.y"], out["int8.gw"] = run(IntxFakeQuantizer(IntxFakeQuantizeConfig(torch.int8, granularity="per_channel", is_symmetric=True)), w, gw)
    cfg = IntxFakeQuantizeConfig(torch.int4, granularity="per_channel", is_symmetric=True, is_dynamic=False, range_learning=True)
    fq = IntxFakeQuantizer(cfg)
    fq._initialized = True  # what initialize_fake_quantizers does before its first forward
    fq(w)
    out["lsq.s0"] = fq.scale.detach().reshape(-1).numpy().copy()
    with torch.no_grad():
        fq.scale.copy_(s.reshape(fq.scale.shape))
    out["lsq.y"], out["lsq.gw"] = run(fq, w, gw)
    out["lsq.gs"] = fq.scale.grad.reshape(-1).numpy()
    out["act.y"], out["act.gx"] = run(IntxFakeQuantizer(IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False)), x, gx)
    out = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
    print(f"torchao {torchao.__version__}, torch {torch.__version__}")
    save_file(out, sys.argv[2])


if __name__ == "__main__":
    main()
