#!/usr/bin/env python3
"""Text splits of ../shared/data for the IPD experiment (scripts/ipd_experiment.sh), standard library only.

    ipd_prepare.py DATA_DIR OUT_DIR LONG_MIN_BYTES

Writes OUT_DIR/{train,val}_{stories,books,math,code,wiki}.txt (documents separated by blank lines),
OUT_DIR/long_books/ and OUT_DIR/val_long_books/ (whole training / held-out books, one a file) and OUT_DIR/long_wiki.txt
(training articles of at least LONG_MIN_BYTES). Held out, from every set (short and long): the official
TinyStories valid prefix and GSM8K test, the last two Gutenberg books (by name), every 50th Wikipedia
article and every 50th code file block. So no held-out text is in any training set.
"""
import json
import os
import re
import sys

data, out, long_min = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(os.path.join(out, "long_books"), exist_ok=True)
os.makedirs(os.path.join(out, "val_long_books"), exist_ok=True)


def write(name, docs):
    with open(os.path.join(out, name), "w", encoding="utf-8") as f:
        f.write("\n\n".join(d.strip("\n") for d in docs if d.strip()) + "\n")


def paragraphs(text):
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


read = lambda p: open(os.path.join(data, p), encoding="utf-8", errors="replace").read()
write("train_stories.txt", paragraphs(read("stories/tinystories_train_prefix.txt")))
write("val_stories.txt", paragraphs(read("stories/tinystories_valid_prefix.txt"))[:400])
gsm = lambda p: [(lambda r: r["question"] + "\n" + r["answer"])(json.loads(l)) for l in read(p).splitlines() if l.strip()]
write("train_math.txt", gsm("math/gsm8k_train.jsonl"))
write("val_math.txt", gsm("math/gsm8k_test.jsonl"))
books = sorted(os.listdir(os.path.join(data, "books/gutenberg")))
train_books, val_books = books[:-2], books[-2:]
write("train_books.txt", [p for b in train_books for p in paragraphs(read("books/gutenberg/" + b))])
write("val_books.txt", [p for b in val_books for p in paragraphs(read("books/gutenberg/" + b))])
for d, bs in (("long_books", train_books), ("val_long_books", val_books)):  # whole books (tokenize --doc-split file)
    for b in bs:
        with open(os.path.join(out, d, b), "w", encoding="utf-8") as f:
            f.write(read("books/gutenberg/" + b))
articles = paragraphs(read("wiki/enwiki_extract.txt"))
write("train_wiki.txt", [a for i, a in enumerate(articles) if i % 50 != 49])
write("val_wiki.txt", [a for i, a in enumerate(articles) if i % 50 == 49])
write("long_wiki.txt", [a for i, a in enumerate(articles) if i % 50 != 49 and len(a.encode()) >= long_min])
code = re.split(r"(?m)^(?=# ===== FILE: )", read("code/python_cpython311_stdlib.txt"))
code = [c for c in code if c.strip()]
write("train_code.txt", [p for i, c in enumerate(code) if i % 50 != 49 for p in paragraphs(c)])
write("val_code.txt", [p for i, c in enumerate(code) if i % 50 == 49 for p in paragraphs(c)])
n_long = sum(1 for a in articles if len(a.encode()) >= long_min)
print(f"prepared {out}: {len(train_books)} training books, {len(val_books)} held-out books, "
      f"{len(articles)} articles ({n_long} of at least {long_min} bytes), {len(code)} code files")
