#!/usr/bin/env python3
"""Writes the hand-made part of the fuzz seed corpus (tests/fuzz/corpus/<target>/): small SentencePiece
models, tiktoken rank lists, tokenizer.json and config.json edge cases, .npy arrays and shard manifests.
The rest (checkpoints, logit caches, shards, GGUF, safetensors) comes from the CLI: docs/fuzzing.md.
Usage: tests/fuzz/make_seeds.py [CORPUS_DIR]   (standard library only; deterministic output)"""
import base64, json, os, struct, sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data)


# ---- SentencePiece .model (protobuf) ----
def varint(v):
    b = bytearray()
    while True:
        c = v & 0x7F
        v >>= 7
        b.append(c | (0x80 if v else 0))
        if not v:
            return bytes(b)


def field_bytes(n, d):
    return varint(n << 3 | 2) + varint(len(d)) + d


def field_int(n, v):
    return varint(n << 3) + varint(v & 0xFFFFFFFFFFFFFFFF)


def piece(s, score, typ):
    return field_bytes(1, field_bytes(1, s.encode()) + varint(2 << 3 | 5) + struct.pack("<f", score) + field_int(3, typ))


def spm(pieces, byte_fallback=False, dummy=True, unk=0, bos=1, eos=2, pad=-1):
    m = b"".join(piece(s, sc, t) for s, sc, t in pieces)
    tr = field_int(3, 2) + field_int(35, int(byte_fallback)) + field_int(40, unk) + field_int(41, bos) + field_int(42, eos) + field_int(43, pad)
    m += field_bytes(2, tr)
    no = field_bytes(1, b"identity") + field_int(3, int(dummy)) + field_int(4, 0) + field_int(5, 1)
    return m + field_bytes(3, no)


W = "\u2581"
base = [("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3)]
words = [W, "a", "b", "c", "d", "e", "h", "l", "o", "r", "w", "t", "ab", W + "ab", "bc", "he", "ll", W + "he", "llo", W + "hello", W + "w", "or", W + "wor", "ld", W + "world"]
put("tokenizer_spm", "toy-bpe.model", spm(base + [(w, -float(i), 1) for i, w in enumerate(words)]))
put("tokenizer_spm", "toy-no-dummy-prefix.model", spm(base + [(w, -float(i), 1) for i, w in enumerate(words)], dummy=False))
bytes_ = [("<0x%02X>" % i, 0, 6) for i in range(256)]
put("tokenizer_spm", "byte-fallback.model", spm(base + bytes_ + [(w, -float(i), 1) for i, w in enumerate(words)], byte_fallback=True))
put("tokenizer_spm", "user-defined.model", spm(base + [("<tool>", 0, 4)] + [(w, -float(i), 1) for i, w in enumerate(words)] + [("x", 0, 5)]))

# ---- tiktoken: the 256 byte tokens (the fuzz target pads to 128000 ranks) and a few merges ----
lines = [base64.b64encode(bytes([i])).decode() + " %d" % i for i in range(256)]
merges = [b"he", b"ll", b"hell", b"hello", b" w", b"or", b" wor", b"ld", b" world", b"in", b"th", b"the", b" the"]
lines += [base64.b64encode(m).decode() + " %d" % (256 + i) for i, m in enumerate(merges)]
put("tiktoken", "bytes-and-merges.tiktoken", "\n".join(lines) + "\n")
put("tiktoken", "bytes-crlf.tiktoken", "\r\n".join(lines[:256]) + "\r\n")
put("tiktoken", "short.tiktoken", "IQ== 0\nIg== 1\n")

# ---- tokenizer.json edge cases (the CLI-trained one is written separately) ----
def bl(b):  # GPT-2 byte-level alphabet
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for x in range(256):
        if x not in bs:
            bs.append(x)
            cs.append(256 + n)
            n += 1
    m = dict(zip(bs, cs))
    return "".join(chr(m[c]) for c in b)


vocab = {bl(bytes([i])): i for i in range(256)}
mg = [(b"h", b"e"), (b"l", b"l"), (b"he", b"ll"), (b" ", b"w")]
for a, b in mg:
    vocab[bl(a + b)] = len(vocab)
tj = {"version": "1.0", "added_tokens": [{"id": len(vocab), "content": "<|endoftext|>", "special": True}],
      "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
      "model": {"type": "BPE", "vocab": vocab, "merges": [bl(a) + " " + bl(b) for a, b in mg]}}
put("tokenizer_hf", "bytelevel.json", json.dumps(tj, ensure_ascii=False))
tj2 = json.loads(json.dumps(tj))
tj2["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}
tj2["model"]["merges"] = [[bl(a), bl(b)] for a, b in mg]
put("tokenizer_hf", "split-sequence.json", json.dumps(tj2, ensure_ascii=False))
tj3 = json.loads(json.dumps(tj))  # the known finding: an id of 2^30-1 (allocated tables for every id)
tj3["added_tokens"][0]["id"] = (1 << 30) - 1
put("tokenizer_hf", "regress-huge-id.json", json.dumps(tj3, ensure_ascii=False))

# ---- config.json edge cases (configs/*.json are copied separately) ----
tiny = {"model_type": "llama", "vocab_size": 259, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4, "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True}
put("config", "micro.json", json.dumps(tiny, indent=1))
for k, v in [("head_dim", 0), ("num_key_value_heads", 0), ("vocab_size", -1)]:
    c = dict(tiny)
    c[k] = v
    put("config", "regress-%s-%d.json" % (k.replace("_", "-"), v), json.dumps(c))
huge = dict(tiny, vocab_size=16777216, hidden_size=1048576, intermediate_size=1048576, num_hidden_layers=256,
            num_attention_heads=4096, num_key_value_heads=4096, head_dim=256)
put("config", "regress-32tb.json", json.dumps(huge))
put("config", "r1-rope-parameters.json", json.dumps(dict(tiny, model_type="llama4_text", intermediate_size_mlp=16,
    use_qk_norm=True, no_rope_layers=[1], rope_parameters={"rope_theta": 500000.0, "rope_type": "default"})))
put("config", "ministral-window.json", json.dumps(dict(tiny, model_type="ministral", sliding_window=16,
    layer_types=["sliding_attention"])))

# ---- .npy ----
def npy(descr, shape, payload, version=1):
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, "(" + "".join("%d," % s for s in shape) + ")" if len(shape) != 1 else "(%d,)" % shape[0])
    pre = 10 if version == 1 else 12
    pad = (64 - (pre + len(hdr) + 1) % 64) % 64
    hdr = hdr + " " * pad + "\n"
    ln = struct.pack("<H", len(hdr)) if version == 1 else struct.pack("<I", len(hdr))
    return b"\x93NUMPY" + bytes([version, 0]) + ln + hdr.encode() + payload


put("npy", "f32-2x3.npy", npy("<f4", (2, 3), struct.pack("<6f", *range(6))))
put("npy", "i32-4.npy", npy("<i4", (4,), struct.pack("<4i", 1, -2, 3, 2**31 - 1)))
put("npy", "f32-scalar.npy", npy("<f4", (), struct.pack("<f", 1.5)))
put("npy", "f32-empty-v2.npy", npy("<f4", (0, 5), b"", version=2))
put("npy", "f32-3d-v3.npy", npy("<f4", (2, 1, 2), struct.pack("<4f", 1, 2, 3, 4), version=3))

# ---- manifests naming the shards the fuzz target makes (s0: 5 tokens, 2 documents; s1: 4 tokens, 1) ----
def entry(p, t, d):
    return {"path": p, "tokens": t, "documents": d, "domain": None, "tokenizer": "bytes-v1", "vocab_size": 259}


def manifest(shards, **over):
    m = {"format": "mobilellm-shard-manifest", "version": 1, "tokens": sum(s["tokens"] for s in shards),
         "documents": sum(s["documents"] for s in shards), "domain": None, "tokenizer": "bytes-v1", "vocab_size": 259,
         "shards": shards}
    m.update(over)
    return json.dumps(m, indent="\t")


put("manifest", "two.manifest.json", manifest([entry("s0.shard", 5, 2), entry("s1.shard", 4, 1)]))
put("manifest", "one.manifest.json", manifest([entry("s1.shard", 4, 1)]))
put("manifest", "regress-wrong-tokens.manifest.json", manifest([entry("s0.shard", 6, 2)]))
put("manifest", "regress-wrong-vocab.manifest.json", manifest([dict(entry("s0.shard", 5, 2), vocab_size=32000)]))
put("manifest", "regress-wrong-tokenizer.manifest.json", manifest([dict(entry("s0.shard", 5, 2), tokenizer="spm-x")]))
put("manifest", "regress-version-2.manifest.json", manifest([entry("s0.shard", 5, 2)], version=2))
put("manifest", "missing-shard.manifest.json", manifest([entry("nope.shard", 5, 2)]))
