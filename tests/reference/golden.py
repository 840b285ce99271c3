#!/usr/bin/python3
"""Golden-state generator for the C trainer's reference tests.

    /usr/bin/python3 tests/reference/golden.py --config CFG.json --weights W.safetensors \
        --batch BATCH.safetensors --out OUT.safetensors [--steps 10] [--lr 1e-3] \
        [--beta1 0.9 --beta2 0.95 --eps 1e-8 --weight-decay 0.1]

Inputs
  CFG.json            HF-style config in any dialect mobilellm_torch understands.
  W.safetensors       every parameter under its HF name (F32, F16 or BF16; read as float32).
  BATCH.safetensors   int32 "tokens" [B,T], "targets" [B,T] (< 0: not scored), optional "pos" [B,T]
                      (position ids; default 0..T-1) and "doc" [B,T] (document ids; attention stays
                      inside a document).

Output (float32 safetensors, written atomically)
  logits [B*T, V]          forward pass of the given weights
  loss [1]                 mean cross-entropy over tokens with target >= 0
  grad.<name>              d loss / d parameter for every parameter (tied: the embedding's gradient
                           holds both its input and output uses)
  losses [steps]           loss at each AdamW step, before that step's update (losses[0] == loss)
  final.<name>             every parameter after `steps` updates

--soft-clamp C computes with every weight matrix (the embedding included, once for both of its uses
when tied) replaced by C * tanh(W / C), W the given (latent) weight: the reference for the model's
per-tensor weight-transform seam. grad.<name> is then d loss / d latent W, through the transform.
It needs --steps 0.

Optimizer: torch.optim.AdamW (foreach=False), constant lr, weight decay on matrices and the
embedding only (not on norm weights), no gradient clipping, the same batch at every step. Its
update (torch 1.13, step t starting at 1), per element:
    p -= lr * wd * p
    m = b1*m + (1-b1)*g ;  v = b2*v + (1-b2)*g*g
    p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
Everything runs in float32 on one thread with deterministic algorithms.
"""

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.utils.parametrize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mobilellm_torch import (MobileLLM, MobileLLMConfig, RefInputError, cross_entropy,  # noqa: E402
                             load_weights, read_safetensors, weight_decay_groups, write_safetensors)


def fake_quantize(model, cfg, recipe):
    """Fake quantization as quant/ applies it (quant_ref.py's quantizers): the recipe "scheme=S embedding=E
    act=A" on every weight matrix (the embedding with E, once for both uses when tied; the rest with S), and A on
    the input of every product whose matrix is quantized (forward pre-hooks; the tied head's input is the final
    norm's output). int4-channel-lsq gets a learned per-row scale, initialised as quant/ does; returns them."""
    from quant_ref import F32_MIN, act_grid, scaled, weight_grid
    kv = dict(item.split("=") for item in recipe.split())
    scheme, emb, act = kv["scheme"], kv.get("embedding", "none"), kv.get("act", "none")
    fa = act_grid(act)
    scales = {}

    class Grid(torch.nn.Module):
        def __init__(self, f):
            super().__init__()
            self.f = f

        def forward(self, w):
            return self.f(w)

    class Learned(torch.nn.Module):
        def __init__(self, w):
            super().__init__()
            s0 = torch.clamp(torch.clamp(w.detach().abs().amax(dim=1) / 7.5, min=F32_MIN), min=1e-9)
            self.scale = torch.nn.Parameter(s0)

        def forward(self, w):
            return scaled(w, torch.clamp(self.scale, min=1e-9))

    named = dict(model.named_modules())
    for mname, module in named.items():
        w = getattr(module, "weight", None)
        if not (isinstance(w, torch.nn.Parameter) and w.dim() == 2):
            continue
        is_embed = mname.endswith("embed_tokens")
        grid = emb if is_embed else scheme
        if grid == "none":
            continue
        if grid == "int4-channel-lsq":
            learned = Learned(w)
            torch.nn.utils.parametrize.register_parametrization(module, "weight", learned)
            scales[mname + ".weight_fake_quantizer.scale"] = learned.scale
        else:
            torch.nn.utils.parametrize.register_parametrization(module, "weight", Grid(weight_grid(grid)))
        if fa is None:
            continue
        if is_embed or mname == "lm_head":  # the head (F.linear on head_weight()): its input is the final norm's
            if not is_embed or cfg.tie_word_embeddings:
                model.model.norm.register_forward_hook(lambda mod, inp, out: fa(out))
        else:
            module.register_forward_pre_hook(lambda mod, inp: (fa(inp[0]),))
    return scales


def read_batch(path: str, vocab_size: int):
    """tokens, targets, pos, doc as int64 tensors (pos/doc None when absent), validated."""
    tensors, _ = read_safetensors(path, to_float32=False)
    for key in tensors:
        if key not in ("tokens", "targets", "pos", "doc"):
            raise RefInputError(f"{path}: unexpected tensor '{key}' (expected tokens, targets, pos, doc)")
    out = {}
    for key in ("tokens", "targets", "pos", "doc"):
        a = tensors.get(key)
        if a is None:
            if key in ("tokens", "targets"):
                raise RefInputError(f"{path}: missing tensor '{key}'")
            out[key] = None
            continue
        if not np.issubdtype(a.dtype, np.integer):
            raise RefInputError(f"{path}: '{key}' must be an integer tensor (got {a.dtype})")
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
            raise RefInputError(f"{path}: '{key}' must be [B, T] (got shape {list(a.shape)})")
        out[key] = torch.from_numpy(a.astype(np.int64))
    shape = out["tokens"].shape
    for key in ("targets", "pos", "doc"):
        if out[key] is not None and out[key].shape != shape:
            raise RefInputError(f"{path}: '{key}' has shape {list(out[key].shape)}, tokens {list(shape)}")
    tok, tgt = out["tokens"], out["targets"]
    if tok.min() < 0 or tok.max() >= vocab_size:
        raise RefInputError(f"{path}: token ids must lie in [0, {vocab_size}) (got {tok.min()}..{tok.max()})")
    if tgt.max() >= vocab_size:
        raise RefInputError(f"{path}: target {int(tgt.max())} >= vocab_size {vocab_size}")
    if (tgt >= 0).sum() == 0:
        raise RefInputError(f"{path}: no target >= 0, the mean loss is undefined")
    if out["pos"] is not None and out["pos"].min() < 0:
        raise RefInputError(f"{path}: negative position id")
    return tok, tgt, out["pos"], out["doc"]


def run(args) -> str:
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)

    cfg = MobileLLMConfig.from_json_file(args.config)
    weights, _ = read_safetensors(args.weights)
    tokens, targets, pos, doc = read_batch(args.batch, cfg.vocab_size)
    if args.steps < 0:
        raise RefInputError(f"--steps must be >= 0 (got {args.steps})")

    model = MobileLLM(cfg)
    load_weights(model, weights, where=args.weights)
    names = [n for n, _ in model.named_parameters()]
    params = dict(model.named_parameters())
    if args.soft_clamp is not None:
        if args.steps != 0:
            raise RefInputError("--soft-clamp needs --steps 0")
        c = args.soft_clamp

        class SoftClamp(torch.nn.Module):
            def forward(self, w):
                return c * torch.tanh(w / c)

        for module in list(model.modules()):
            w = getattr(module, "weight", None)
            if isinstance(w, torch.nn.Parameter) and w.dim() == 2:
                torch.nn.utils.parametrize.register_parametrization(module, "weight", SoftClamp())
    lsq_scales = {}
    if args.fake_quant is not None:
        if args.steps != 0:
            raise RefInputError("--fake-quant needs --steps 0")
        lsq_scales = fake_quantize(model, cfg, args.fake_quant)
    opt = torch.optim.AdamW(weight_decay_groups(model, args.weight_decay), lr=args.lr,
                            betas=(args.beta1, args.beta2), eps=args.eps, foreach=False)

    def loss_and_grad():
        opt.zero_grad(set_to_none=True)
        logits = model(tokens, pos, doc)
        loss = cross_entropy(logits, targets)
        loss.backward()
        return logits, loss

    # Step 0's forward/backward is also the golden forward/backward: losses[0] == loss exactly.
    logits, loss = loss_and_grad()
    V = cfg.vocab_size
    out = {"logits": logits.detach().reshape(-1, V).numpy().copy(),
           "loss": np.array([loss.item()], dtype=np.float32)}
    for n in names:  # the latent parameters, under their original names
        out["grad." + n] = params[n].grad.detach().numpy().copy()
    for n, sp in lsq_scales.items():  # learned quantization scales (auxiliary parameters)
        out["grad." + n] = sp.grad.detach().numpy().copy()
    losses = []
    for step in range(args.steps):
        if step > 0:
            _, loss = loss_and_grad()
        losses.append(loss.item())
        opt.step()
    out["losses"] = np.array(losses, dtype=np.float32)
    for n in names:
        out["final." + n] = params[n].detach().numpy().copy()
    write_safetensors(args.out, out, metadata={"generator": "tests/reference/golden.py",
                                                "torch": torch.__version__})
    B, T = tokens.shape
    last = f"{losses[-1]:.6f}" if losses else "-"
    return (f"golden: {cfg.dialect} B={B} T={T} V={V} params={cfg.num_params()} tensors={len(names)} "
            f"loss={out['loss'][0]:.6f} steps={args.steps} final_loss={last} -> {args.out}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.95)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--soft-clamp", type=float, default=None)
    ap.add_argument("--fake-quant", default=None)
    args = ap.parse_args(argv)
    try:
        print(run(args))
    except RefInputError as e:
        print(f"golden.py: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"golden.py: error: {e.filename or ''}: {e.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
