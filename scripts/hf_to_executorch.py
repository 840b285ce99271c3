#!/usr/bin/python3
"""Turn a mobilellm.c Hugging Face export into the Meta-style checkpoint that ExecuTorch's LLM export
(examples/models/llama, `export_llama --checkpoint consolidated.pth --params params.json`) consumes.

    /usr/bin/python3 scripts/hf_to_executorch.py HF_DIR OUT_DIR

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
  dimension (dim and hidden_dim); the valid G among 32/64/128/256 are printed and stored in
  params.json under "_mobilellm_valid_group_sizes" (ignored by ExecuTorch).
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
from mobilellm_torch import load_hf_weights  # noqa: E402  (the repo's one safetensors reader)


def convert(hf_dir, out_dir):
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
              "qk_norm_before_rope": False, "_mobilellm_valid_group_sizes": groups}
    if mt == "llama4_text" and any(v == 0 for v in cfg.get("no_rope_layers", [])):
        raise SystemExit(f"hf_to_executorch: {hf_dir}: NoPE layers are not supported")
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, "consolidated.pth.tmp")
    torch.save(out, tmp)
    os.replace(tmp, os.path.join(out_dir, "consolidated.pth"))
    with open(os.path.join(out_dir, "params.json.tmp"), "w") as f:
        json.dump(params, f, indent=2)
    os.replace(os.path.join(out_dir, "params.json.tmp"), os.path.join(out_dir, "params.json"))
    print(f"{out_dir}: {len(out)} tensors; 8da4w group sizes that divide every linear input: {groups or 'none'}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: hf_to_executorch.py HF_DIR OUT_DIR")
    convert(sys.argv[1], sys.argv[2])
