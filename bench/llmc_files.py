#!/usr/bin/python3
"""Input files for llm.c's CPU trainer (train_gpt2.c) when no GPT-2 weights or data exist offline:
a randomly initialised GPT-2 checkpoint and random token files, in llm.c's binary formats.

    /usr/bin/python3 bench/llmc_files.py --out DIR [--tokens N] [--seed 0]
        [--layers 12 --heads 12 --channels 768 --max-seq 1024 --vocab 50257 --padded-vocab 50304]

Writes, under DIR (the directory train_gpt2 runs in, since it opens these relative paths):
  gpt2_124M.bin                                  the model
  dev/data/tinyshakespeare/tiny_shakespeare_train.bin, ..._val.bin   N random tokens each

Formats (facts about llm.c, read from its train_gpt2.c and llmc/dataloader.h):
  model: 256 int32 header [20240326 (magic), 3 (version: fp32, padded vocab), maxT, V, L, NH, C, Vp,
         0...], then float32 tensors back to back: wte [Vp, C], wpe [maxT, C], ln1w [L, C],
         ln1b [L, C], qkvw [L, 3C, C], qkvb [L, 3C], attprojw [L, C, C], attprojb [L, C], ln2w [L, C],
         ln2b [L, C], fcw [L, 4C, C], fcb [L, 4C], fcprojw [L, C, 4C], fcprojb [L, C], lnfw [C], lnfb [C].
  tokens: 256 int32 header [20240520 (magic), 1 (version), N, 0...], then N uint16 token ids.
Initialisation as GPT-2: N(0, 0.02) matrices and embeddings, N(0, 0.02 / sqrt(2 L)) for the two
residual projections, unit LayerNorm weights, zero biases, zero padded-vocabulary rows. The values
only matter for the loss printed; the timing does not depend on them.
"""
import argparse
import os

import numpy as np


def header(values):
    h = np.zeros(256, dtype=np.int32)
    h[: len(values)] = values
    return h.tobytes()


def write_atomic(path, chunks):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        for c in chunks:
            f.write(c if isinstance(c, bytes) else c.tobytes())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokens", type=int, default=1 << 16, help="tokens in each token file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--channels", type=int, default=768)
    ap.add_argument("--max-seq", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--padded-vocab", type=int, default=50304)
    a = ap.parse_args()
    L, NH, C, T, V, Vp = a.layers, a.heads, a.channels, a.max_seq, a.vocab, a.padded_vocab
    if min(L, NH, C, T, V, Vp) < 1 or Vp < V or C % NH or a.tokens < 2 or V > 65536:
        ap.error("sizes must be positive, padded vocab >= vocab <= 65536, channels divisible by heads, tokens >= 2")
    rng = np.random.default_rng(a.seed)
    normal = lambda shape, std: (rng.standard_normal(shape, dtype=np.float32) * np.float32(std))
    proj_std = 0.02 / np.sqrt(2 * L)
    wte = normal((Vp, C), 0.02)
    wte[V:] = 0
    tensors = [
        wte, normal((T, C), 0.02),
        np.ones((L, C), np.float32), np.zeros((L, C), np.float32),           # ln1
        normal((L, 3 * C, C), 0.02), np.zeros((L, 3 * C), np.float32),      # qkv
        normal((L, C, C), proj_std), np.zeros((L, C), np.float32),          # attention projection
        np.ones((L, C), np.float32), np.zeros((L, C), np.float32),           # ln2
        normal((L, 4 * C, C), 0.02), np.zeros((L, 4 * C), np.float32),      # fc
        normal((L, C, 4 * C), proj_std), np.zeros((L, C), np.float32),      # fc projection
        np.ones(C, np.float32), np.zeros(C, np.float32),                     # final LayerNorm
    ]
    n_params = sum(t.size for t in tensors)
    write_atomic(os.path.join(a.out, "gpt2_124M.bin"), [header([20240326, 3, T, V, L, NH, C, Vp])] + tensors)
    for split in ("train", "val"):
        toks = rng.integers(0, V, size=a.tokens, dtype=np.int64).astype(np.uint16)
        write_atomic(os.path.join(a.out, "dev", "data", "tinyshakespeare", f"tiny_shakespeare_{split}.bin"),
                     [header([20240520, 1, a.tokens]), toks])
    print(f"wrote {a.out}/gpt2_124M.bin ({n_params} parameters) and 2 x {a.tokens} tokens")


if __name__ == "__main__":
    main()
