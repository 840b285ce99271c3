#!/usr/bin/python3
"""Turn a mobilellm.c Hugging Face export into the Meta-style checkpoint that ExecuTorch's LLM export
(examples/models/llama, `export_llama --checkpoint consolidated.pth --params params.json`) consumes.

    /usr/bin/python3 scripts/hf_to_executorch.py HF_DIR OUT_DIR [--8da4w G]

Writes OUT_DIR/consolidated.pth (a torch state dict with Meta names) and OUT_DIR/params.json.
- Names: tok_embeddings, layers.{i}.attention.{wq,wk,wv,wo}, attention_norm, ffn_norm,
  feed_forward.{w1 (gate), w3 (up), w2 (down)}, norm, output.
- Tied embeddings are written twice (output.weight = tok_embeddings.weight), as ExecuTorch needs.
- RoPE: the llama dialect rotates half-split pairs (HF rotate_half), so params.json sets
  use_hf_rope true and the weights are kept as they are; llama4_text (R1) already uses adjacent
  pairs (Meta's convention), with use_qk_norm and qk_norm_before_rope false (QK-norm after RoPE).
- Layer-shared models arrive unrolled from `mobilellm export`, one block per application.
- Sliding-window (Pro, ministral) models are refused: params.json has no per-layer window field that
  ExecuTorch's llama model honours exactly, and a file that computes something else is worse than none.
- Quantization limits: ExecuTorch's 8da4w group size G must divide every linear layer's input
  dimension (dim and hidden_dim); the valid G among 32/64/128/256 are printed. (params.json holds only
  keys of ExecuTorch's ModelArgs: it is passed as ModelArgs(**params), which refuses any other key.)
- --8da4w G: the model is already on the int4 group-G grid (an int4-gG checkpoint of `mobilellm qat` or
  `quantize`, exported with `mobilellm export --format hf`, i.e. dequantized). Each linear layer of the
  blocks is written pre-quantized, in the layout of ExecuTorch's QAT path (`export_llama --use_qat
  --preq_mode 8da4w --preq_group_size G`): `weight` int8 holding the int4 values, `scales` float32 per
  group, `zeros` 0; params.json gets quantization_args.group_size. ExecuTorch then computes with exactly
  these weights instead of quantizing them again (its own 8da4w quantizer, given the dequantized weights,
  picks another scale: max|q*s|/7.5 is not s). Every group is checked: a q in [-8, 7] and a scale whose
  product gives the exported weight bit for bit, else the conversion is refused, naming the tensor. The
  output layer (the tied embedding) stays float, as the scheme leaves it.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
from mobilellm_torch import load_hf_weights  # noqa: E402  (the repo's one safetensors reader)


LINEARS = ("attention.wq", "attention.wk", "attention.wv", "attention.wo",
           "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")


def int4_groups(w, G, name, where):
    """(q int8, scales float32 [rows, cols/G]) with q * scale == w bit for bit in every group of G along a
    row, q in [-8, 7]; SystemExit naming the tensor when w is not on such a grid. The group's largest
    magnitude is q = -8 or 7 times the scale (torchao's symmetric grid maps the latent maximum to +-7.5):
    scale = max/8 or max/7, and for max/7 the neighbouring floats (the division may round)."""
    rows, cols = w.shape
    if cols % G:
        raise SystemExit(f"hf_to_executorch: {where}: {name}: groups of {G} do not divide its {cols} columns")
    g = w.reshape(rows, cols // G, G)
    amax = g.abs().amax(dim=-1)
    seven = amax / 7
    cands = [amax / 8, seven, torch.nextafter(seven, torch.full_like(seven, float("inf"))),
             torch.nextafter(seven, torch.zeros_like(seven))]
    q_best = torch.zeros_like(g, dtype=torch.int8)
    s_best = torch.zeros_like(amax)
    done = amax == 0  # an all-zero group: q = 0 under any scale
    s_best[done] = torch.finfo(torch.float32).tiny
    for s in cands:
        s_safe = torch.where(s > 0, s, torch.ones_like(s))
        q = torch.round(g / s_safe[..., None]).clamp(-8, 7)
        ok = ((q * s_safe[..., None]) == g).all(dim=-1) & (s > 0) & ~done
        q_best[ok] = q[ok].to(torch.int8)
        s_best[ok] = s[ok]
        done |= ok
    if not bool(done.all()):
        r, k = (int(i) for i in (~done).nonzero()[0])
        raise SystemExit(f"hf_to_executorch: {where}: {name} is not on the int4 group-{G} grid (row {r}, group {k}, "
                         f"{int((~done).sum())} groups off); --8da4w needs an int4-g{G} checkpoint exported "
                         "without --latent")
    return q_best.reshape(rows, cols), s_best


def convert(hf_dir, out_dir, group=None):
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    mt = cfg.get("model_type")
    if mt not in ("llama", "llama4_text"):
        raise SystemExit(f"hf_to_executorch: {hf_dir}: model_type {mt!r} is not supported "
                         "(sliding-window models have no exact ExecuTorch llama equivalent)")
    if any(t != "full_attention" for t in cfg.get("layer_types", []) if t is not None):
        raise SystemExit(f"hf_to_executorch: {hf_dir}: sliding-window layers are not supported")
    w = {k: torch.from_numpy(v.copy()) for k, v in load_hf_weights(hf_dir).items()}
    L, C = cfg["num_hidden_layers"], cfg["hidden_size"]
    H, KV = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    hd = cfg.get("head_dim") or C // H
    ffn = "feed_forward" if mt == "llama4_text" else "mlp"
    F = cfg.get("intermediate_size_mlp") if mt == "llama4_text" else cfg["intermediate_size"]
    out = {"tok_embeddings.weight": w["model.embed_tokens.weight"], "norm.weight": w["model.norm.weight"]}
    out["output.weight"] = w.get("lm_head.weight", w["model.embed_tokens.weight"]).clone()
    for i in range(L):
        p = f"model.layers.{i}."
        q = f"layers.{i}."
        out[q + "attention.wq.weight"] = w[p + "self_attn.q_proj.weight"]
        out[q + "attention.wk.weight"] = w[p + "self_attn.k_proj.weight"]
        out[q + "attention.wv.weight"] = w[p + "self_attn.v_proj.weight"]
        out[q + "attention.wo.weight"] = w[p + "self_attn.o_proj.weight"]
        out[q + "attention_norm.weight"] = w[p + "input_layernorm.weight"]
        out[q + "ffn_norm.weight"] = w[p + "post_attention_layernorm.weight"]
        out[q + "feed_forward.w1.weight"] = w[p + ffn + ".gate_proj.weight"]
        out[q + "feed_forward.w3.weight"] = w[p + ffn + ".up_proj.weight"]
        out[q + "feed_forward.w2.weight"] = w[p + ffn + ".down_proj.weight"]
    rope = cfg.get("rope_parameters", {}).get("rope_theta", cfg.get("rope_theta", 10000.0))
    groups = [g for g in (32, 64, 128, 256) if C % g == 0 and F % g == 0 and (H * hd) % g == 0]
    params = {"dim": C, "n_layers": L, "n_heads": H, "n_kv_heads": KV, "vocab_size": cfg["vocab_size"],
              "hidden_dim": F, "head_dim": hd, "norm_eps": cfg.get("rms_norm_eps", 1e-5), "rope_theta": rope,
              "use_scaled_rope": False, "use_hf_rope": mt == "llama", "use_qk_norm": bool(cfg.get("use_qk_norm")),
              "qk_norm_before_rope": False}
    if mt == "llama4_text" and any(v == 0 for v in cfg.get("no_rope_layers", [])):
        raise SystemExit(f"hf_to_executorch: {hf_dir}: NoPE layers are not supported")
    if group is not None:
        if group not in groups:
            raise SystemExit(f"hf_to_executorch: {hf_dir}: --8da4w {group}: the group size must divide every linear "
                             f"layer's input (possible here: {groups or 'none'})")
        for i in range(L):
            for lin in LINEARS:
                key = f"layers.{i}.{lin}"
                q, sc = int4_groups(out[key + ".weight"], group, key + ".weight", hf_dir)
                out[key + ".weight"], out[key + ".scales"], out[key + ".zeros"] = q, sc, torch.zeros_like(sc)
        params["quantization_args"] = {"group_size": group}
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, "consolidated.pth.tmp")
    torch.save(out, tmp)
    os.replace(tmp, os.path.join(out_dir, "consolidated.pth"))
    with open(os.path.join(out_dir, "params.json.tmp"), "w") as f:
        json.dump(params, f, indent=2)
    os.replace(os.path.join(out_dir, "params.json.tmp"), os.path.join(out_dir, "params.json"))
    what = f"pre-quantized int4 group {group}" if group else "float"
    print(f"{out_dir}: {len(out)} tensors ({what}); 8da4w group sizes that divide every linear input: {groups or 'none'}")


if __name__ == "__main__":
    args = sys.argv[1:]
    group = None
    if len(args) == 4 and args[2] == "--8da4w" and args[3].isdigit():
        group = int(args[3])
        args = args[:2]
    if len(args) != 2:
        raise SystemExit("usage: hf_to_executorch.py HF_DIR OUT_DIR [--8da4w G]")
    convert(args[0], args[1], group)
