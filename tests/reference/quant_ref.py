#!/usr/bin/python3
"""Independent PyTorch (python3-torch 1.13) reference of quant/'s fake quantizers, written from the formulas
(llama.cpp's ggml-quants.c for Q4_0 / Q8_0, torchao's affine quantization for the int grids), with autograd
giving the gradients: straight-through rounding, the clamp's gradient zero where the grid clips, and for a
learned scale whatever autograd makes of clamp(round_ste(w * (1/s))) * s (the LSQ gradient).

    /usr/bin/python3 tests/reference/quant_ref.py IN.safetensors OUT.safetensors

IN holds float32 "w" [R, C] (weights), "gw" [R, C] (d loss / d fake-quantized weight), "x" [N, K]
(activations), "gx" [N, K], "s" [R] (a learned per-row scale). OUT gets, per grid G:
  G.y, G.gw     weights fake-quantized and d loss / d w     (G = q4_0, q8_0, int4-g32/64/128/256, int8)
  lsq.y, lsq.gw, lsq.gs, lsq.s0   with the learned scale s (lsq.s0: the initial scale from the weights)
  act-q8_0.y, act-q8_0.gx, act-int8-token.y, act-int8-token.gx
"""

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mobilellm_torch import read_safetensors, write_safetensors  # noqa: E402

F32_MIN = float(np.finfo(np.float32).tiny)


def ste_round(v, half_even=True):
    """round with a straight-through gradient."""
    if half_even:
        r = torch.round(v)
    else:  # C roundf: half away from zero, exactly (no |v| + 0.5 rounding)
        t = torch.trunc(v)
        r = t + torch.sign(v) * ((v - t).abs() >= 0.5).float()
    return v + (r - v).detach()


def fp16(t):
    return t.to(torch.float16).to(torch.float32)


def blocks(w, g):
    return w.reshape(-1, g)


def q4_0(w):
    """llama.cpp quantize_row_q4_0_ref + dequantize_row_q4_0: d = (signed extreme) / -8, fp16; q = min(15,
    trunc(x/d + 8.5)); value (q - 8) fp16(d). Gradient: straight through, zero where min(15, .) clipped."""
    b = blocks(w, 32)
    idx = b.detach().abs().argmax(dim=1, keepdim=True)  # first index of the largest magnitude, as the C loop
    mx = torch.gather(b.detach(), 1, idx)
    d = mx / -8.0
    inv = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    v = b * inv + 8.5  # float32: product rounded, then the sum rounded (no FMA)
    t = torch.trunc(v.detach())
    q = torch.clamp(t, max=15.0)
    keep = (t <= 15.0).float()
    y = (q - 8.0) * fp16(d)
    return (y + (b - b.detach()) * keep).reshape(w.shape)


def q8_0(w):
    """quantize_row_q8_0_ref: d = amax / 127, q = roundf(x * (1/d)) (half away from zero), value q fp16(d)."""
    b = blocks(w, 32)
    amax = b.detach().abs().amax(dim=1, keepdim=True)
    d = amax / 127.0
    inv = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    y = ste_round(b * inv, half_even=False).detach() * fp16(d)
    return (b + (y - b).detach()).reshape(w.shape)  # never clips: the gradient is exactly the identity


def sym(w, group, bits):
    """torchao symmetric: s = max|x| / ((qmax - qmin) / 2) per group (>= FLT_MIN), q = clamp(round(x * (1/s)),
    qmin, qmax), value q s; s does not take a gradient (choose_qparams_affine is no_grad)."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    b = blocks(w, group)
    s = torch.clamp(b.detach().abs().amax(dim=1, keepdim=True) / ((hi - lo) / 2.0), min=F32_MIN)
    r = torch.round(b.detach() * (1.0 / s))
    keep = ((r >= lo) & (r <= hi)).float()
    y = torch.clamp(r, lo, hi) * s
    return (y + (b - b.detach()) * keep).reshape(w.shape)  # straight through, zero where clipped


def scaled(w, s, bits=4):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    q = torch.clamp(ste_round(w * (1.0 / s[:, None])), lo, hi)
    return q * s[:, None]


def act_q8_0(x):
    """ggml x86 quantize_row_q8_0: id = 127 / amax, round half to even, value q fp16(amax / 127)."""
    b = blocks(x, 32)
    amax = b.detach().abs().amax(dim=1, keepdim=True)
    d = fp16(amax / 127.0)
    idd = torch.where(amax != 0, 127.0 / amax, torch.zeros_like(amax))
    y = torch.round(b * idd) * d
    return (b + (y - b).detach()).reshape(x.shape)  # never clips


def act_int8_token(x):
    """per-token asymmetric int8 (torch.ao / torchao choose_qparams ASYMMETRIC)."""
    xd = x.detach()
    mn = torch.clamp(xd.amin(dim=-1, keepdim=True), max=0.0)
    mx = torch.clamp(xd.amax(dim=-1, keepdim=True), min=0.0)
    s = torch.clamp((mx - mn) / 255.0, min=F32_MIN)
    zp = torch.clamp(-128.0 - torch.round(mn / s), -128.0, 127.0)
    v = torch.round(xd * (1.0 / s)) + zp
    keep = ((v >= -128.0) & (v <= 127.0)).float()
    y = (torch.clamp(v, -128.0, 127.0) - zp) * s
    return y + (x - xd) * keep  # straight through, zero where clipped


def weight_grid(name):
    """fake quantizer of a grid name (quant/quant.h), None for none."""
    if name in (None, "none"):
        return None
    if name == "q4_0":
        return q4_0
    if name == "q8_0":
        return q8_0
    if name == "int8":
        return lambda w: sym(w, w.shape[-1], 8)
    if name.startswith("int4-g"):
        g = int(name[6:])
        return lambda w: sym(w, g, 4)
    raise ValueError(f"no reference for grid {name}")


def act_grid(name):
    return {"none": None, "q8_0": act_q8_0, "int8-token": act_int8_token}[name]


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    t, _ = read_safetensors(sys.argv[1])
    w0, gw, x0, gx, s_in = (torch.from_numpy(np.ascontiguousarray(t[k])) for k in ("w", "gw", "x", "gx", "s"))
    out = {}
    for name in ("q4_0", "q8_0", "int4-g32", "int4-g64", "int4-g128", "int4-g256", "int8"):
        w = w0.clone().requires_grad_(True)
        y = weight_grid(name)(w)
        y.backward(gw)
        out[name + ".y"] = y.detach().numpy()
        out[name + ".gw"] = w.grad.numpy()
    w = w0.clone().requires_grad_(True)
    s = s_in.clone().requires_grad_(True)
    y = scaled(w, s)
    y.backward(gw)
    out["lsq.y"], out["lsq.gw"], out["lsq.gs"] = y.detach().numpy(), w.grad.numpy(), s.grad.numpy()
    out["lsq.s0"] = torch.clamp(torch.clamp(w0.abs().amax(dim=1) / 7.5, min=F32_MIN), min=1e-9).numpy()
    for name, f in (("act-q8_0", act_q8_0), ("act-int8-token", act_int8_token)):
        x = x0.clone().requires_grad_(True)
        y = f(x)
        y.backward(gx)
        out[name + ".y"], out[name + ".gx"] = y.detach().numpy(), x.grad.numpy()
    write_safetensors(sys.argv[2], {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()})


if __name__ == "__main__":
    main()
