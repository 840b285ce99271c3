#!/usr/bin/python3
"""PyTorch peer of the training-speed benchmark: MobileLLM training steps on random tokens.

    /usr/bin/python3 bench/pytorch_train_bench.py [--config configs/mobilellm-125m.json]
        [--batch 4] [--seq 256] [--steps 5] [--warmup-steps 1] [--threads 2] [--seed 0] [--autocast bf16] [--compile]

It builds the model with the repository's one PyTorch model (tests/reference/mobilellm_torch.py),
initialises it randomly (N(0, initializer_range) matrices, unit norms), and times full training
steps (forward, mean cross-entropy, backward, AdamW lr 1e-3 betas (0.9, 0.95) weight decay 0.1 on
matrices) in float32, or with --autocast bf16 its forward and loss under CPU autocast to bfloat16 (PyTorch's
mixed precision: bf16 matmuls, fp32 master weights and optimizer), optionally torch.compile'd. Each step draws fresh random tokens. The first --warmup-steps steps are not
timed. Without --config, and when configs/mobilellm-125m.json is absent, it uses MobileLLM-125M
(llama, 30 layers, hidden 576, 9 heads, 3 kv heads, head_dim 64, FFN 1536, vocab 32000, tied,
rope theta 10000, eps 1e-5).

Output: one JSON line
  {"impl": "pytorch", "torch": version, "threads", "batch", "seq", "ms_per_step", "tokens_per_s",
   "gflops", "peak_rss_mib", ...}
where ms_per_step is the mean over the timed steps, tokens_per_s = batch*seq / step time, and
gflops is the achieved GFLOP/s of the model's arithmetic (not what PyTorch actually executes):

  FLOPs per step = tokens * (6 * N_matmul + attention)
    N_matmul  = applied_layers * (q, k, v, o, gate, up, down weights) + vocab * hidden
                (the LM head counts even when tied; the embedding lookup does not;
                 applied_layers = num_hidden_layers * layer_repeat)
    attention = sum over applied layers of 12 * H * hd * T_eff       (per token; fwd 4, bwd 8:
                q.k^T and p.v, 2 FLOPs per multiply-add)
    T_eff     = the mean number of keys a query attends to: (T + 1) / 2 (about T / 2) for full
                causal layers; (W (W + 1) / 2 + (T - W) W) / T for a sliding layer of window W < T.
This is the same formula as the C trainer's ml_config_train_flops_per_token (model/config.c).
"""

import argparse
import contextlib
import json
import os
import resource
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
from mobilellm_torch import (MobileLLM, MobileLLMConfig, cross_entropy, init_weights,  # noqa: E402
                             weight_decay_groups)

MOBILELLM_125M = {
    "model_type": "llama", "vocab_size": 32000, "hidden_size": 576, "intermediate_size": 1536,
    "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True, "initializer_range": 0.02,
}


def train_flops_per_token(cfg: MobileLLMConfig, T: int) -> float:
    """Model FLOPs of one training token (forward + backward) at sequence length T."""
    n_matmul = cfg.applied_layers * cfg.matmul_params_per_block() + cfg.vocab_size * cfg.hidden_size
    attn = 0.0
    for sliding in cfg.layer_sliding:
        W = cfg.sliding_window if sliding else T
        t_eff = (T + 1) / 2.0 if W >= T else (W * (W + 1) / 2.0 + (T - W) * W) / T
        attn += cfg.layer_repeat * 12.0 * cfg.num_heads * cfg.head_dim * t_eff
    return 6.0 * n_matmul + attn


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="PyTorch MobileLLM training-speed benchmark")
    ap.add_argument("--config", default=None, help="HF-style config.json (default: MobileLLM-125M)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup-steps", type=int, default=1, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none",
                    help="bf16: forward and loss under torch.autocast('cpu', bfloat16) (mixed precision)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (inductor) first")
    args = ap.parse_args(argv)
    if min(args.batch, args.seq, args.steps, args.threads) < 1 or args.warmup_steps < 0:
        ap.error("batch, seq, steps and threads must be >= 1, warmup-steps >= 0")

    default_cfg = os.path.join(ROOT, "configs", "mobilellm-125m.json")
    path = args.config or (default_cfg if os.path.exists(default_cfg) else None)
    cfg = MobileLLMConfig.from_json_file(path) if path else MobileLLMConfig.from_hf_dict(MOBILELLM_125M)
    name = os.path.basename(path) if path else "mobilellm-125m (built in)"

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = MobileLLM(cfg)
    init_weights(model, seed=args.seed)
    opt = torch.optim.AdamW(weight_decay_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    run_model = torch.compile(model) if args.compile else model

    def amp():
        return torch.autocast("cpu", dtype=torch.bfloat16) if args.autocast == "bf16" else contextlib.nullcontext()

    gen = torch.Generator().manual_seed(args.seed)
    B, T = args.batch, args.seq

    def step():
        data = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=gen)
        opt.zero_grad(set_to_none=True)
        with amp():
            loss = cross_entropy(run_model(data[:, :-1]).float(), data[:, 1:])
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(args.warmup_steps):
        step()
    times, loss = [], float("nan")
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)

    sec = sum(times) / len(times)
    tokens = B * T
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "autocast": args.autocast, "compiled": args.compile,
        "threads": args.threads, "batch": B, "seq": T,
        "ms_per_step": round(sec * 1e3, 2), "tokens_per_s": round(tokens / sec, 2),
        "gflops": round(train_flops_per_token(cfg, T) * tokens / sec / 1e9, 2),
        "ms_per_step_min": round(min(times) * 1e3, 2), "steps": args.steps,
        "warmup_steps": args.warmup_steps, "config": name, "params": cfg.num_params(),
        "loss": round(loss, 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
