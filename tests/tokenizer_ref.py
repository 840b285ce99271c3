#!/usr/bin/python3
"""Independent reference for the byte-level BPE tests (pure Python + the `regex` module).

  tokenizer_ref.py tiktoken RANKS OUT IN...   ids of each input file (one line each), tiktoken semantics
  tokenizer_ref.py hf TOKENIZER_JSON OUT IN...  same for a byte-level BPE tokenizer.json
  tokenizer_ref.py sanitize - OUTDIR IN...      each input as decode('utf-8', 'replace') bytes
  tokenizer_ref.py hfconvert RANKS OUT          a Llama-3-style tokenizer.json (merges as [a, b]
                                                pairs) made from a tiktoken rank file
An IN that is a directory stands for its *.txt files in sorted order.

Input bytes are decoded with errors='replace' (what tokenizing a str means for bytes that are
not UTF-8). tiktoken: regex find_iter, whole piece looked up first, else merge the adjacent parts
whose concatenation has the lowest rank (leftmost on ties). HF: Split(Isolated) keeps the text
between matches, pieces map through GPT-2's byte<->unicode table, pairs merge by merge rank.
"""
import base64
import json
import os
import sys

import regex

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA4 = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
          r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
          r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def bytes_to_unicode():
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    k = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + k)
            k += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tiktoken_piece(ranks, piece):
    if piece in ranks:
        return [ranks[piece]]
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best, bi = None, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best is None or r < best):
                best, bi = r, i
        if best is None:
            break
        parts[bi:bi + 2] = [parts[bi] + parts[bi + 1]]
    return [ranks[p] for p in parts]


def run_tiktoken(rank_path, texts):
    ranks = {}
    with open(rank_path, "rb") as f:
        for line in f:
            if line.strip():
                tok, r = line.split()
                ranks[base64.b64decode(tok)] = int(r)
    pat = regex.compile(LLAMA4 if len(ranks) == 200000 else LLAMA3)
    out = []
    for t in texts:
        ids = []
        for m in pat.finditer(t):
            ids += tiktoken_piece(ranks, m.group().encode("utf-8"))
        out.append(ids)
    return out


def run_hf(path, texts):
    with open(path, encoding="utf-8") as f:
        tj = json.load(f)
    model = tj["model"]
    assert model["type"] == "BPE" and tj.get("normalizer") is None
    vocab = model["vocab"]
    merges = {}
    for i, m in enumerate(model["merges"]):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        merges.setdefault((a, b), i)
    pt = tj["pre_tokenizer"]
    if pt["type"] == "ByteLevel":
        pat, prefix = regex.compile(GPT2), pt.get("add_prefix_space", False)
    else:
        pat, prefix = regex.compile(pt["pretokenizers"][0]["pattern"]["Regex"]), pt["pretokenizers"][1].get("add_prefix_space", False)
    ignore = model.get("ignore_merges", False)
    b2u = bytes_to_unicode()
    out = []
    for t in texts:
        if prefix and t and not t.startswith(" "):
            t = " " + t
        pieces, last = [], 0
        for m in pat.finditer(t):
            if m.start() > last:
                pieces.append(t[last:m.start()])
            if m.end() > m.start():
                pieces.append(m.group())
            last = m.end()
        if last < len(t):
            pieces.append(t[last:])
        ids = []
        for p in pieces:
            word = "".join(b2u[b] for b in p.encode("utf-8"))
            if ignore and word in vocab:
                ids.append(vocab[word])
                continue
            syms = list(word)
            while len(syms) > 1:
                best, bi = None, -1
                for i in range(len(syms) - 1):
                    r = merges.get((syms[i], syms[i + 1]))
                    if r is not None and (best is None or r < best):
                        best, bi = r, i
                if best is None:
                    break
                syms[bi:bi + 2] = [syms[bi] + syms[bi + 1]]
            ids += [vocab[s] for s in syms]
        out.append(ids)
    return out


def hfconvert(rank_path, outp):
    ranks = {}
    with open(rank_path, "rb") as f:
        for line in f:
            if line.strip():
                tok, r = line.split()
                ranks[base64.b64decode(tok)] = int(r)
    b2u = bytes_to_unicode()
    u = lambda bs: "".join(b2u[b] for b in bs)
    merges = []
    for tok, r in ranks.items():
        for k in range(1, len(tok)):
            a, b = tok[:k], tok[k:]
            if a in ranks and b in ranks:
                merges.append((r, ranks[a], ranks[b], u(a), u(b)))
    merges.sort()
    n = len(ranks)
    added = [{"id": n, "content": "<|begin_of_text|>", "special": True},
             {"id": n + 1, "content": "<|end_of_text|>", "special": True}]
    tj = {"version": "1.0", "added_tokens": added, "normalizer": None,
          "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
              {"type": "Split", "pattern": {"Regex": LLAMA4 if n == 200000 else LLAMA3}, "behavior": "Isolated",
               "invert": False},
              {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
          "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
          "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                    "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                    "vocab": {u(t): r for t, r in sorted(ranks.items(), key=lambda x: x[1])},
                    "merges": [[m[3], m[4]] for m in merges]}}
    with open(outp, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)


def main():
    kind, path, outp = sys.argv[1:4]
    if kind == "hfconvert":
        return hfconvert(path, outp)
    files = []
    for p in sys.argv[4:]:
        files += sorted(os.path.join(p, q) for q in os.listdir(p) if q.endswith(".txt")) if os.path.isdir(p) else [p]
    if kind == "sanitize":
        for p in files:
            with open(p, "rb") as f, open(os.path.join(outp, os.path.basename(p)), "wb") as g:
                g.write(f.read().decode("utf-8", errors="replace").encode("utf-8"))
        return
    texts = []
    for p in files:
        with open(p, "rb") as f:
            texts.append(f.read().decode("utf-8", errors="replace"))
    res = run_tiktoken(path, texts) if kind == "tiktoken" else run_hf(path, texts)
    with open(outp, "w") as f:
        for ids in res:
            f.write(" ".join(map(str, ids)) + "\n")


if __name__ == "__main__":
    main()
