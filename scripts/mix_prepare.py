#!/usr/bin/env python3
"""Text splits of ../shared/data for the mixing experiment (scripts/mix_experiment.sh), standard library only.

    mix_prepare.py DATA_DIR OUT_DIR TRAIN_BYTES VAL_BYTES

Writes OUT_DIR/train_D.txt and OUT_DIR/val_D.txt for D in code, math, books, stories, wiki, chat, junk
(documents separated by blank lines; about TRAIN_BYTES of training text per domain, the natural sizes
kept in proportion: each domain gives min(its size, TRAIN_BYTES * share)), OUT_DIR/target_mix.txt (held-out
documents of the six real domains round-robin, each cut to 600 bytes, about VAL_BYTES in all) and
OUT_DIR/natural.json (training bytes per domain). Held out, never trained on: TinyStories valid, GSM8K test,
the last Gutenberg books, every 20th Wikipedia article and code file block, the last 10% of chat records.
junk: random bytes (seeded), the sanity domain.
"""
import json
import os
import random
import re
import sys

data, out, train_bytes, val_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
os.makedirs(out, exist_ok=True)
read = lambda p: open(os.path.join(data, p), encoding="utf-8", errors="replace").read()
paras = lambda t: [p.strip("\n") for p in re.split(r"\n\s*\n", t) if p.strip()]


def take(docs, n):
    got, size = [], 0
    for d in docs:
        if size >= n:
            break
        got.append(d)
        size += len(d.encode()) + 2
    return got


gsm = lambda p: [(lambda r: r["question"] + "\n" + r["answer"])(json.loads(l)) for l in read(p).splitlines() if l.strip()]
books = sorted(os.listdir(os.path.join(data, "books/gutenberg")))
code = re.split(r"(?m)^# ===== FILE: ", read("code/python_cpython311_stdlib.txt") + read("code/c_lua_zlib_nginx_curl.txt"))
code = [c for c in code if c.strip()]
wiki = read("wiki/enwiki_extract.txt").split("\n\n")
wiki = [w for w in wiki if len(w) > 200]
chat = [r["instruction"] + "\n" + r.get("input", "") + "\n" + r["output"] for r in json.loads(read("chat/alpaca_5000.json"))]
chat += [r["instruction"] + "\n" + r.get("input", "") + "\n" + r["response"] for r in json.loads(read("chat/gpteacher_roleplay.json"))]
random.Random(3).shuffle(chat)
rng = random.Random(7)
junk = ["".join(chr(rng.randrange(32, 127)) if rng.random() < 0.5 else chr(rng.randrange(0x80, 0x800)) for _ in range(800))
        for _ in range(4000)]
splits = {
    "code": ([c for i, c in enumerate(code) if i % 20], [c for i, c in enumerate(code) if i % 20 == 0]),
    "math": (gsm("math/gsm8k_train.jsonl"), gsm("math/gsm8k_test.jsonl")),
    "books": ([p for b in books[:-2] for p in paras(read("books/gutenberg/" + b))],
              [p for b in books[-2:] for p in paras(read("books/gutenberg/" + b))]),
    "stories": (paras(read("stories/tinystories_train_prefix.txt")), paras(read("stories/tinystories_valid_prefix.txt"))),
    "wiki": ([w for i, w in enumerate(wiki) if i % 20], [w for i, w in enumerate(wiki) if i % 20 == 0]),
    "chat": (chat[:len(chat) * 9 // 10], chat[len(chat) * 9 // 10:]),
    "junk": (junk[:3600], junk[3600:]),
}
# natural proportions: the corpora's own sizes (junk counted like the smallest real domain)
sizes = {d: sum(len(x.encode()) for x in tr) for d, (tr, _) in splits.items()}
sizes["junk"] = min(v for k, v in sizes.items() if k != "junk")
total = sum(sizes.values())
natural = {}
for d, (tr, va) in splits.items():
    docs = take(tr, train_bytes)
    with open(os.path.join(out, f"train_{d}.txt"), "w", encoding="utf-8") as f:
        f.write("\n\n".join(docs) + "\n")
    with open(os.path.join(out, f"val_{d}.txt"), "w", encoding="utf-8") as f:
        f.write("\n\n".join(take(va, val_bytes // 2)) + "\n")
    natural[d] = sizes[d]
mixed, iters = [], {d: iter(va) for d, (tr, va) in splits.items() if d != "junk"}
while sum(len(m.encode()) for m in mixed) < val_bytes:
    for d in list(iters):
        doc = next(iters[d], None)
        if doc:
            mixed.append(doc[:600])
with open(os.path.join(out, "target_mix.txt"), "w", encoding="utf-8") as f:
    f.write("\n\n".join(mixed) + "\n")
with open(os.path.join(out, "natural.json"), "w") as f:
    json.dump(natural, f, indent=1)
