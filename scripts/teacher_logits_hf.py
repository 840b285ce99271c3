#!/usr/bin/env python3
"""Teacher-logit cache from any Hugging Face causal LM, in the layout of distill/logit_cache.h.

The same file `mobilellm teacher-logits` writes, for real (large) teachers on a GPU machine:

    python3 scripts/teacher_logits_hf.py --model HF_ID_OR_DIR --data a.shard b.shard \
        --batch 4 --seq 256 --topk 64 --out cache.h5 [--batches N] [--device cuda] [--dtype bfloat16]
    build/mobilellm distill --cache cache.h5 --data a.shard b.shard --batch 4 --seq 256 ...

Batches are those of the trainer's batch reader (data/batch_reader.h): the shards form one token
stream, each row takes T+1 consecutive tokens, the cursor advances by T+1 and wraps to the start
(next epoch) when fewer than T+1 remain. Instead of shards, `--ids FILE` takes the output of
`mobilellm data dump SHARD...` (one line of ids per document, documents concatenated) with
`--tokenizer FINGERPRINT` and `--data-shards N` as the trainer will see them; the cursor is then
counted in one shard, so use --data (or one shard) when the run reads several shards.

Needs numpy, h5py and python3-zstandard (the shard frames and the cache's zstd chunks, filter
32015, are written as raw chunks, so no HDF5 zstd plugin is needed to write); torch and transformers
only for the teacher itself. The parts that do not need transformers (shard reader, batch order,
top-K, writer, reader) are importable and tested by tests/test_logit_cache.c.
The file has no mobilellm checksum block (HDF5's own metadata checksums still apply): mobilellm opens
it as a file from another tool.
"""
import argparse
import json
import os
import struct
import sys
import time

import numpy as np

FORMAT = "mobilellm-logit-cache"
VERSION = 1
ZSTD_FILTER = 32015
ZSTD_LEVEL = 3
FNV_INIT = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3


def fnv1a64(data: bytes, h: int = FNV_INIT) -> int:
    """FNV-1a 64 of bytes (data/shard.h's hash)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    h = np.uint64(h)
    prime = np.uint64(FNV_PRIME)
    with np.errstate(over="ignore"):
        for b in arr:
            h = (h ^ np.uint64(b)) * prime
    return int(h)


def token_hash(tokens: np.ndarray) -> int:
    """The cache's /token_hash of one batch: FNV-1a 64 of the int32 LE input ids."""
    return fnv1a64(np.ascontiguousarray(tokens, dtype="<i4").tobytes())


# ----------------------------------------------------------------------------- shards (data/shard.h)

class Shard:
    """A token shard: header, zstd frames of u32 ids, meta (tokenizer fingerprint)."""

    def __init__(self, path):
        import zstandard

        self.path = path
        self._dctx = zstandard.ZstdDecompressor()
        with open(path, "rb") as f:
            self._buf = f.read()
        h = self._buf[:128]
        if len(h) < 128 or h[:8] != b"MLSHARD1":
            raise ValueError(f"{path}: not a token shard")
        (version, flags, hbytes, tbytes, self.n_tokens, self.n_docs, self.vocab_size, self.frame_tokens,
         self.n_frames, _data_off, _data_bytes, meta_off, meta_bytes, _doc_off, index_off) = struct.unpack_from(
            "<IIIIQQIIQQQQQQQ", h, 8)
        if version != 1 or flags != 0 or tbytes != 4:
            raise ValueError(f"{path}: shard version {version} / flags {flags} not supported")
        self.meta = {}
        m = self._buf[meta_off:meta_off + meta_bytes]
        (count,) = struct.unpack_from("<I", m, 0)
        p = 4
        for _ in range(count):
            (kl,) = struct.unpack_from("<H", m, p)
            key = m[p + 2:p + 2 + kl].decode()
            p += 2 + kl
            (vl,) = struct.unpack_from("<I", m, p)
            self.meta[key] = m[p + 4:p + 4 + vl].decode()
            p += 4 + vl
        self.tokenizer = self.meta.get("tokenizer", "")
        self._index = np.frombuffer(self._buf, dtype="<u8", count=2 * self.n_frames, offset=index_off).reshape(-1, 2)
        self._cache = (-1, None)

    def _frame(self, i):
        if self._cache[0] != i:
            off, n = (int(x) for x in self._index[i])
            self._cache = (i, np.frombuffer(self._dctx.decompress(self._buf[off:off + n]), dtype="<u4"))
        return self._cache[1]

    def read(self, start, n):
        out = np.empty(n, dtype=np.int64)
        k = 0
        while k < n:
            fi, o = divmod(start + k, self.frame_tokens)
            fr = self._frame(fi)
            take = min(n - k, len(fr) - o)
            out[k:k + take] = fr[o:o + take]
            k += take
        return out


class TokenStream:
    """The shards (or a flat id array) as one stream, with the batch reader's order and cursor."""

    def __init__(self, shards=None, ids=None, tokenizer=None, data_shards=1):
        if shards:
            self.shards = shards
            self.sizes = [s.n_tokens for s in shards]
            self.tokenizer = shards[0].tokenizer
            for s in shards[1:]:
                if s.tokenizer != self.tokenizer or s.vocab_size != shards[0].vocab_size:
                    raise ValueError(f"{s.path}: another tokenizer than {shards[0].path}")
            self.n_shards = len(shards)
        else:
            self.ids = np.asarray(ids, dtype=np.int64)
            self.shards = None
            self.sizes = [len(self.ids)]
            self.tokenizer = tokenizer
            self.n_shards = data_shards
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.total = int(self.starts[-1])
        self.pos, self.epoch = 0, 0

    def cursor(self):
        s = int(np.searchsorted(self.starts, self.pos, side="right") - 1)
        while s + 1 < len(self.sizes) and self.starts[s + 1] <= self.pos:
            s += 1
        return (self.epoch, s, self.pos - int(self.starts[s]))

    def _read(self, p, n):
        if self.shards is None:
            return self.ids[p:p + n]
        out, k = np.empty(n, dtype=np.int64), 0
        while k < n:
            s = int(np.searchsorted(self.starts, p + k, side="right") - 1)
            off = p + k - int(self.starts[s])
            take = min(n - k, self.sizes[s] - off)
            if take <= 0:
                continue
            out[k:k + take] = self.shards[s].read(off, take)
            k += take
        return out

    def next_batch(self, B, T):
        """inputs [B, T], the cursor before the batch."""
        if self.total < B * (T + 1):
            raise ValueError(f"not enough data: {self.total} tokens, a batch needs {B * (T + 1)}")
        cur = self.cursor()
        rows = []
        for _ in range(B):
            rows.append(self._read(self.pos, T + 1)[:T])
            self.pos += T + 1
            if self.pos + T + 1 > self.total:
                self.pos, self.epoch = 0, self.epoch + 1
        return np.stack(rows), cur


def read_dump(path):
    """Ids from `mobilellm data dump` (one line of ids per document)."""
    with open(path) as f:
        return np.array([int(x) for line in f for x in line.split()], dtype=np.int64)


# ----------------------------------------------------------------------------- top K

def topk_logprobs(logits, k):
    """numpy [n, V] float logits -> ids [n, k] int32 (descending, ties: lower id), log-probs float32,
    tail float32 (mass outside the top k)."""
    z = np.asarray(logits, dtype=np.float64)
    order = np.lexsort((np.broadcast_to(np.arange(z.shape[1]), z.shape), -z), axis=1)[:, :k]
    mx = z.max(1, keepdims=True)
    e = np.exp(z - mx)
    s = e.sum(1, keepdims=True)
    lp = np.take_along_axis(z, order, 1) - mx - np.log(s)
    tail = np.clip((s[:, 0] - np.take_along_axis(e, order, 1).sum(1)) / s[:, 0], 0, 1)
    return order.astype(np.int32), lp.astype(np.float32), tail.astype(np.float32)


# ----------------------------------------------------------------------------- the cache file

class CacheWriter:
    """Writes the layout of distill/logit_cache.h with h5py; zstd chunks are compressed here and written
    raw (write_direct_chunk), so no HDF5 zstd plugin is needed."""

    def __init__(self, path, B, T, K, vocab_size, data_tokens, data_shards, tokenizer, start, teacher,
                 teacher_name, teacher_config):
        import h5py
        import zstandard

        self.h5py = h5py
        self.zc = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
        self.tmp = path + ".tmp.%d" % os.getpid()
        self.path = path
        self.f = h5py.File(self.tmp, "w", libver=("v110", "v110"))
        self.B, self.T, self.K, self.n = B, T, K, 0
        a = self.f.attrs
        a["format"], a["version"] = FORMAT, np.int64(VERSION)
        for key, v in (("batch", B), ("seq", T), ("topk", K), ("vocab_size", vocab_size),
                       ("data_tokens", data_tokens), ("data_shards", data_shards), ("cursor_epoch", start[0]),
                       ("cursor_shard", start[1]), ("cursor_offset", start[2])):
            a[key] = np.int64(v)
        a["tokenizer"], a["teacher"], a["teacher_name"] = tokenizer, teacher, teacher_name
        a["teacher_config"] = teacher_config
        a["logit_temperature"] = np.float64(1.0)
        f16 = np.dtype("<f2")
        self._zstd("ids", "<i4", (B, T, K))
        self._zstd("logprobs", f16, (B, T, K))
        self._zstd("tail", "<f4", (B, T))
        self.f.create_dataset("cursor", (0, 3), maxshape=(None, 3), chunks=(1024, 3), dtype="<i8")
        self.f.create_dataset("token_hash", (0,), maxshape=(None,), chunks=(1024,), dtype="<u8")

    def _zstd(self, name, dtype, row):
        h5py = self.h5py
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((1,) + row)
        dcpl.set_filter(ZSTD_FILTER, h5py.h5z.FLAG_OPTIONAL, (ZSTD_LEVEL,))
        space = h5py.h5s.create_simple((0,) + row, (h5py.h5s.UNLIMITED,) + row)
        tid = h5py.h5t.py_create(np.dtype(dtype), logical=True)
        h5py.h5d.create(self.f.id, name.encode(), tid, space, dcpl=dcpl)

    def append(self, cursor, tokens, ids, logprobs, tail):
        n = self.n
        for name, arr, dt in (("ids", ids, "<i4"), ("logprobs", logprobs, "<f2"), ("tail", tail, "<f4")):
            d = self.f[name]
            d.resize(n + 1, axis=0)
            raw = np.ascontiguousarray(np.asarray(arr).astype(dt)).tobytes()
            d.id.write_direct_chunk((n,) + (0,) * (d.ndim - 1), self.zc.compress(raw))
        for name, v in (("cursor", np.asarray(cursor, dtype=np.int64)), ("token_hash", np.uint64(token_hash(tokens)))):
            d = self.f[name]
            d.resize(n + 1, axis=0)
            d[n] = v
        self.n += 1

    def commit(self):
        self.f.close()
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)

    def abort(self):
        try:
            self.f.close()
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


def read_cache(path):
    """Every dataset and attribute of a cache as numpy arrays: through h5py when an HDF5 zstd filter is
    available (pip's hdf5plugin embeds one), else by decoding the raw chunks with python3-zstandard."""
    import h5py

    try:
        import hdf5plugin  # noqa: F401  (registers filter 32015 when the build embeds zstd)
    except ImportError:
        pass
    out = {}
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        for name in ("cursor", "token_hash"):
            out[name] = f[name][()]
        for name in ("ids", "logprobs", "tail"):
            d = f[name]
            if h5py.h5z.filter_avail(ZSTD_FILTER):
                out[name] = d[()]
                continue
            import zstandard

            dc = zstandard.ZstdDecompressor()
            arr = np.empty(d.shape, dtype=d.dtype)
            for n in range(d.shape[0]):
                mask, raw = d.id.read_direct_chunk((n,) + (0,) * (d.ndim - 1))
                if mask != 0:
                    raise ValueError(f"{path}: chunk {n} of {name} skipped a filter")
                arr[n] = np.frombuffer(dc.decompress(raw), dtype=d.dtype).reshape(d.shape[1:])
            out[name] = arr
    return attrs, out


def _selftest_read(cache, npy_dir):
    """Used by tests/test_logit_cache.c: h5py's numbers equal the C reader's (exit 77 = cannot decode)."""
    import h5py

    try:
        import hdf5plugin  # noqa: F401
    except ImportError:
        pass
    if not h5py.h5z.filter_avail(ZSTD_FILTER):
        try:
            import zstandard  # noqa: F401
        except ImportError:
            sys.exit(77)
    attrs, d = read_cache(cache)
    assert attrs["format"] == FORMAT and attrs["version"] == VERSION, attrs
    assert d["logprobs"].dtype == np.float16 and d["ids"].dtype == np.int32, (d["logprobs"].dtype, d["ids"].dtype)
    ids = np.load(os.path.join(npy_dir, "c_ids.npy"))
    lp = np.load(os.path.join(npy_dir, "c_lp.npy"))
    tail = np.load(os.path.join(npy_dir, "c_tail.npy"))
    assert np.array_equal(d["ids"], ids)
    assert np.array_equal(d["logprobs"].astype(np.float32), lp)
    assert np.array_equal(d["tail"], tail)
    # the top K recomputed here from the cached values: ordered, tail consistent
    assert np.all(np.diff(d["logprobs"].astype(np.float32), axis=-1) <= 0)
    s = np.exp(d["logprobs"].astype(np.float64)).sum(-1)
    assert np.max(np.abs(1 - s - d["tail"])) < 5e-3
    print(f"h5py read {cache}: {d['ids'].shape[0]} batches, identical to the C reader")


# ----------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="Hugging Face model id or directory")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", nargs="+", help="token shards, in the trainer's order")
    src.add_argument("--ids", help="ids from `mobilellm data dump` (needs --tokenizer)")
    ap.add_argument("--tokenizer", help="tokenizer fingerprint of the shards (with --ids)")
    ap.add_argument("--data-shards", type=int, default=1, help="shards the trainer reads (with --ids)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--topk", type=int, default=64)
    ap.add_argument("--batches", type=int, default=0, help="default: one pass over the data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16 (teacher weights)")
    a = ap.parse_args(argv)

    if a.data:
        stream = TokenStream(shards=[Shard(p) for p in a.data])
    else:
        if not a.tokenizer:
            ap.error("--ids needs --tokenizer (the shards' fingerprint, see `mobilellm data info`)")
        stream = TokenStream(ids=read_dump(a.ids), tokenizer=a.tokenizer, data_shards=a.data_shards)
    B, T, K = a.batch, a.seq, a.topk
    n_batches = a.batches or max(1, (stream.total // (T + 1)) // B)

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=getattr(torch, a.dtype)).to(a.device).eval()
    V = model.get_output_embeddings().weight.shape[0]
    w = CacheWriter(a.out, B, T, K, V, stream.total, stream.n_shards, stream.tokenizer, stream.cursor(), a.model,
                    getattr(cfg, "name_or_path", a.model) or a.model, json.dumps(cfg.to_dict()))
    t0 = time.time()
    try:
        for n in range(n_batches):
            tokens, cur = stream.next_batch(B, T)
            with torch.no_grad():
                x = torch.tensor(tokens, device=a.device)
                pos = torch.arange(T, device=a.device)[None].expand(B, T)
                z = model(input_ids=x, position_ids=pos).logits.float()
                lse = torch.logsumexp(z, -1, keepdim=True)
                top, ids = torch.topk(z, K, dim=-1, sorted=True)
                lp = (top - lse)
                tail = (1 - lp.double().exp().sum(-1)).clamp(min=0, max=1)
            w.append(cur, tokens, ids.int().cpu().numpy(), lp.cpu().numpy(), tail.float().cpu().numpy())
            dt = time.time() - t0
            print(f"batch {n + 1}/{n_batches} | {(n + 1) * B * T / dt:.0f} tok/s | "
                  f"ETA {dt / (n + 1) * (n_batches - n - 1):.0f}s", flush=True)
        w.commit()
    except BaseException:
        w.abort()
        raise
    print(f"wrote {a.out}: {n_batches} batches")


if __name__ == "__main__":
    main()
