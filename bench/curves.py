#!/usr/bin/python3
"""Driver of bench/curves.sh: runs `mobilellm bench --profile` over the curves and collects the results.

    /usr/bin/python3 bench/curves.py --bin build/mobilellm --out bench/plots/curves.json
        [--seq-config configs/mobilellm-125m.json] [--seqs 256,512,...,8192] [--tokens 8192]
        [--sizes tiny-v1,demo-10m,mobilellm-125m,...] [--size-batch 4] [--size-seq 256]
        [--threads 1,2] [--threads-config ...] [--threads-batch 4] [--threads-seq 256]
        [--steps 2] [--warmup 1] [--mem-gib G] [--max-step-s 120] [--curves seq,size,threads] [--dry-run]
        [--bench-arg=ARG ...]   (e.g. --bench-arg=--precision --bench-arg=bf16: the curves in bf16)

Curves: (seq) tokens/s against T at B = tokens / T (fixed tokens per step), (size) against the model
at one shape, (threads) against OMP_NUM_THREADS. Every run is profiled (common/prof.h), which gives
the per-kernel shares. A point is skipped, with the reason recorded, when its estimated peak memory
exceeds --mem-gib (default: the smaller of 24 GiB and 90% of MemAvailable) or its estimated step
time exceeds --max-step-s (estimated from the model FLOPs at the GFLOP/s of the previous point). The
JSON gathers every bench result under "seq", "size" and "threads_curve", and "skipped".
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_cfg(path):
    with open(path) as f:
        c = json.load(f)
    C, F, Lr = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    H, KV = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
    hd = c.get("head_dim", C // H)
    rep = 2 if c.get("layer_sharing") else int(c.get("layer_repeat", 1) or 1)
    return dict(V=c["vocab_size"], C=C, F=F, L=Lr, A=Lr * rep, H=H, KV=KV, hd=hd,
                tied=c.get("tie_word_embeddings", True), qkn=bool(c.get("use_qk_norm", False)))


def estimate(c, B, T):
    """(peak bytes, train FLOPs per token) of one bench step, roughly (no sliding windows)."""
    qd, kvd, N = c["H"] * c["hd"], c["KV"] * c["hd"], B * T
    block = c["C"] * (qd + 2 * kvd) + qd * c["C"] + 3 * c["C"] * c["F"]
    P = c["V"] * c["C"] * (1 if c["tied"] else 2) + c["L"] * (block + 2 * c["C"]) + c["C"]
    saved = c["A"] * (4 * c["C"] + 2 * qd + 2 * kvd + c["H"] + 2 * c["F"] + 2) + 2 * c["C"] + 1
    scratch = 2 * c["C"] + 2 * qd + 2 * kvd + 3 * c["F"] + c["C"]
    head = min(1 << 24, max(8, (1 << 24) // c["V"]) * c["V"])
    mem = 4 * (4 * P + N * (saved + scratch) + head) * 1.05 + (300 << 20)
    flops = 6.0 * (c["A"] * block + c["V"] * c["C"]) + 12.0 * qd * c["A"] * (T + 1) / 2.0
    return mem, flops


def mem_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 24 << 30


def main():
    ap = argparse.ArgumentParser(description="benchmark curves")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "mobilellm"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "plots", "curves.json"))
    ap.add_argument("--curves", default="seq,size,threads")
    ap.add_argument("--seq-config", default="configs/mobilellm-125m.json")
    ap.add_argument("--seqs", default="256,512,1024,2048,4096,8192")
    ap.add_argument("--tokens", type=int, default=8192, help="B*T of the seq curve (B = max(1, tokens / T))")
    ap.add_argument("--sizes", default="tiny-v1,demo-10m,mobilellm-125m,mobilellm-350m,mobilellm-600m,mobilellm-1b")
    ap.add_argument("--size-batch", type=int, default=4)
    ap.add_argument("--size-seq", type=int, default=256)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--threads-config", default="configs/mobilellm-125m.json")
    ap.add_argument("--threads-batch", type=int, default=4)
    ap.add_argument("--threads-seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--mem-gib", type=float, default=None)
    ap.add_argument("--max-step-s", type=float, default=120.0)
    ap.add_argument("--dry-run", action="store_true", help="print the plan (estimates, skips) and run nothing")
    ap.add_argument("--bench-arg", action="append", default=[],
                    help="one more argument for every `mobilellm bench` run (repeat it: --bench-arg=--precision "
                         "--bench-arg=bf16); recorded in the JSON")
    a = ap.parse_args()
    mem_limit = (a.mem_gib * (1 << 30)) if a.mem_gib else min(24 << 30, 0.9 * mem_available())
    curves = set(a.curves.split(","))
    env_threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=ROOT).stdout.strip()
    out = {"date": str(datetime.date.today()), "commit": commit + ("+" if dirty else ""), "threads": env_threads,
           "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "unset"), "steps": a.steps, "warmup": a.warmup,
           "bench_args": a.bench_arg,
           "seq": [], "size": [], "threads_curve": [], "skipped": []}
    gflops_guess = [100.0]

    def run(curve, cfg_path, B, T, threads):
        cfg_path = cfg_path if os.path.isabs(cfg_path) else os.path.join(ROOT, cfg_path)
        point = f"{os.path.basename(cfg_path)} B={B} T={T} threads={threads}"
        mem, flops = estimate(load_cfg(cfg_path), B, T)
        step_s = flops * B * T / (gflops_guess[0] * 1e9) * (env_threads / threads)
        why = None
        if mem > mem_limit:
            why = f"estimated peak {mem / (1 << 30):.1f} GiB > limit {mem_limit / (1 << 30):.1f} GiB"
        elif step_s > a.max_step_s:
            why = f"estimated {step_s:.0f} s a step > {a.max_step_s:.0f} s (at {gflops_guess[0]:.0f} GFLOP/s)"
        if why:
            print(f"skip {curve}: {point}: {why}", file=sys.stderr)
            out["skipped"].append({"curve": curve, "point": point, "why": why})
            return
        print(f"run  {curve}: {point} (estimated {mem / (1 << 30):.1f} GiB, {step_s:.1f} s a step)", file=sys.stderr)
        if a.dry_run:
            return
        with tempfile.TemporaryDirectory() as tmp:
            res = os.path.join(tmp, "r.json")
            cmd = [a.bin, "bench", "--config", cfg_path, "--batch", str(B), "--seq", str(T), "--steps", str(a.steps),
                   "--warmup", str(a.warmup), "--profile", "--json", "--out", res] + a.bench_arg
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            try:
                p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                   timeout=max(600.0, 3 * a.max_step_s * (a.steps + a.warmup)))
            except subprocess.TimeoutExpired:
                out["skipped"].append({"curve": curve, "point": point, "why": "timed out"})
                return
            if p.returncode != 0:
                out["skipped"].append({"curve": curve, "point": point, "why": "failed: " + p.stderr.strip()[-300:]})
                print(f"     failed: {p.stderr.strip()}", file=sys.stderr)
                return
            with open(res) as f:
                r = json.load(f)
        r["config"] = os.path.relpath(cfg_path, ROOT)
        print(f"     {r['ms_per_step']:.0f} ms/step, {r['tokens_per_s']:.1f} tokens/s, {r['gflops']:.1f} GFLOP/s, "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB ({r['mem_ratio']:.2f}x the minimum)", file=sys.stderr)
        if r["gflops"] > 1:
            gflops_guess[0] = r["gflops"] * threads / env_threads
        out[curve].append(r)

    if "seq" in curves:
        for T in map(int, a.seqs.split(",")):
            run("seq", a.seq_config, max(1, a.tokens // T), T, env_threads)
    if "size" in curves:
        for name in a.sizes.split(","):
            path = name if name.endswith(".json") else f"configs/{name}.json"
            run("size", path, a.size_batch, a.size_seq, env_threads)
    if "threads" in curves:
        for th in map(int, a.threads.split(",")):
            run("threads_curve", a.threads_config, a.threads_batch, a.threads_seq, th)
    if a.dry_run:
        return
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    os.replace(tmp, a.out)
    print(a.out)


if __name__ == "__main__":
    main()
