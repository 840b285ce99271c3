#!/usr/bin/env python3
"""The recipe's corpus (scripts/recipe.sh, docs/recipe.md): text per domain, split into training and held-out
documents, as JSONL ({"text": DOC} a line; tokenize with --jsonl-field text). Standard library only.

    recipe_data.py debian OUT --mb MB [--seed S]        this machine: Python stdlib + /usr/include (code),
                                                        Debian text packages (prose), generated problems (math)
    recipe_data.py shared DATA_DIR OUT --mb MB           ../shared/data: stories, books, math, code, wiki

Writes OUT/train_<domain>.jsonl and OUT/val_<domain>.jsonl for every domain, OUT/long.jsonl (training
documents of at least --long-bytes, for continued training on long documents), OUT/tokenizer_text.txt (up to
--tok-mb of training text per domain) and OUT/corpus.json (documents and bytes per domain and split, sources).
A document is held out whole (every --val-every-th by a stable hash of its name), so no held-out text is in
any training set, long documents included. --mb caps each domain's bytes (documents chosen by the same hash).
"""
import argparse
import glob
import gzip
import json
import os
import re
import subprocess
import sys
import sysconfig
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
# Debian packages read by the `debian` source (installed by scripts/install_deps.sh --recipe)
DEBIAN_REFERENCE = "/usr/share/debian-reference/debian-reference.en.txt.gz"
FORTUNES = "/usr/share/games/fortunes"


def stable(name):
    return zlib.crc32(name.encode("utf-8", "replace"))


def read(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        return f.read()


def capped(docs, max_bytes):
    """docs: [(name, text)] -> a subset of at most max_bytes, chosen by the hash of the name (stable)."""
    out, total = [], 0
    for name, text in sorted(docs, key=lambda d: (stable(d[0]), d[0])):
        n = len(text.encode("utf-8"))
        if total + n > max_bytes and out:
            continue
        out.append((name, text))
        total += n
    return sorted(out)


def code_docs(max_bytes):
    """Python standard library modules and C headers, one file a document (2/3 Python, 1/3 C)."""
    stdlib = sysconfig.get_paths()["stdlib"]
    py = [p for p in glob.glob(os.path.join(stdlib, "**", "*.py"), recursive=True) if "site-packages" not in p]
    hdr = glob.glob("/usr/include/**/*.h", recursive=True)
    docs = []
    for files, share in ((py, 2 / 3), (hdr, 1 / 3)):
        d = [(p, read(p)) for p in sorted(files) if 200 <= os.path.getsize(p) <= 200_000]
        docs += capped(d, int(max_bytes * share))
    return docs, [f"Python {sys.version.split()[0]} standard library ({stdlib})", "/usr/include C headers"]


def prose_docs(max_bytes):
    """The Debian Reference split at its numbered sections, and the fortune cookies of fortunes-min."""
    docs = []
    if os.path.exists(DEBIAN_REFERENCE):
        text = read(DEBIAN_REFERENCE)
        parts = re.split(r"(?m)^(?=\d+(?:\.\d+)+\.?[ \u00a0]\S)", text)  # headings: "1.1.1.\u00a0Title"
        docs += [(f"debian-reference/{i:04d}", p.strip("\n")) for i, p in enumerate(parts) if len(p.strip()) > 200]
    for name in ("fortunes", "literature", "riddles"):
        path = os.path.join(FORTUNES, name)
        if os.path.exists(path):
            cookies = [c.strip("\n") for c in re.split(r"(?m)^%\n", read(path)) if c.strip()]
            # a cookie is a few lines: 20 of them make a document
            docs += [(f"fortunes/{name}/{i:04d}", "\n\n".join(cookies[i:i + 20])) for i in range(0, len(cookies), 20)]
    if not docs:
        sys.exit(f"recipe_data.py: no prose found ({DEBIAN_REFERENCE}, {FORTUNES}); run scripts/install_deps.sh --recipe")
    return capped(docs, max_bytes), ["debian-reference-en (GPL-2+)", "fortunes-min (BSD-3-Clause)"]


def math_docs(max_bytes, seed):
    sys.path.insert(0, HERE)
    from math_problems import problems
    docs, total = [], 0
    for i, text in enumerate(problems(10 ** 7, seed)):
        if total >= max_bytes:
            break
        docs.append((f"math/{i:07d}", text))
        total += len(text) + 1
    return docs, [f"scripts/math_problems.py (seed {seed})"]


def shared_docs(data, max_bytes):
    """../shared/data: its own documents (story paragraphs, 50-paragraph parts of books, GSM8K items, code files,
    articles)."""
    para = lambda t: [p for p in re.split(r"\n\s*\n", t) if p.strip()]
    f = lambda p: read(os.path.join(data, p))
    out = {}
    out["stories"] = [(f"stories/{i:06d}", p) for i, p in enumerate(para(f("stories/tinystories_train_prefix.txt")))]
    books = sorted(os.listdir(os.path.join(data, "books/gutenberg")))
    # a book is cut into documents of 50 paragraphs (whole books would leave a handful of documents per cap)
    out["books"] = [(f"books/{b}/{i:05d}", "\n\n".join(ps[i:i + 50])) for b in books
                    for ps in [para(f("books/gutenberg/" + b))] for i in range(0, len(ps), 50)]
    gsm = [json.loads(line) for line in f("math/gsm8k_train.jsonl").splitlines() if line.strip()]
    out["math"] = [(f"math/{i:05d}", "Question: " + r["question"] + "\nAnswer: " + r["answer"]) for i, r in enumerate(gsm)]
    code = [c for c in re.split(r"(?m)^(?=# ===== FILE: )", f("code/python_cpython311_stdlib.txt")) if c.strip()]
    out["code"] = [(c.split("\n", 1)[0], c) for c in code]
    out["wiki"] = [(f"wiki/{i:06d}", a) for i, a in enumerate(para(f("wiki/enwiki_extract.txt")))]
    srcs = [open(p).readline().strip() for p in sorted(glob.glob(os.path.join(data, "*", "SOURCE.md")))]
    return {d: capped(docs, max_bytes) for d, docs in out.items()}, srcs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", choices=["debian", "shared"])
    ap.add_argument("args", nargs="+", help="debian: OUT; shared: DATA_DIR OUT")
    ap.add_argument("--mb", type=float, default=4.0, help="most bytes per domain, in MB")
    ap.add_argument("--seed", type=int, default=1, help="seed of the generated math problems")
    ap.add_argument("--val-every", type=int, default=20, help="one document in this many is held out")
    ap.add_argument("--long-bytes", type=int, default=8000, help="least bytes of a long document")
    ap.add_argument("--tok-mb", type=float, default=1.0, help="training text per domain for the tokenizer, in MB")
    a = ap.parse_args()
    if len(a.args) != (1 if a.source == "debian" else 2):
        ap.error("debian takes OUT; shared takes DATA_DIR OUT")
    out = a.args[-1]
    cap = int(a.mb * 1e6)
    if a.source == "debian":
        domains, sources = {}, []
        for name, (docs, src) in (("code", code_docs(cap)), ("prose", prose_docs(cap)), ("math", math_docs(cap, a.seed))):
            domains[name] = docs
            sources += src
    else:
        domains, sources = shared_docs(a.args[0], cap)
    os.makedirs(out, exist_ok=True)
    stats, long_docs, tok_text = {}, [], []
    for name, docs in domains.items():
        split = {"train": [], "val": []}
        first = min(docs, key=lambda d: (stable(d[0]), d[0]))[0] if docs else None
        for doc_name, text in docs:  # a small domain still holds one document out
            split["val" if stable(doc_name) % a.val_every == 0 or doc_name == first else "train"].append(text)
        if not split["val"] or not split["train"]:
            sys.exit(f"recipe_data.py: domain {name} has {len(docs)} documents: too few for a held-out split")
        for part, texts in split.items():
            write_jsonl(os.path.join(out, f"{part}_{name}.jsonl"), texts)
        tok_text += [t for _, t in capped([(str(i), t) for i, t in enumerate(split["train"])], int(a.tok_mb * 1e6))]
        long_docs += [t for t in split["train"] if len(t.encode()) >= a.long_bytes and name != "math"]
        stats[name] = {p: {"documents": len(t), "bytes": sum(len(x.encode()) for x in t)} for p, t in split.items()}
    if not long_docs:
        sys.exit(f"recipe_data.py: no training document of at least {a.long_bytes} bytes")
    write_jsonl(os.path.join(out, "long.jsonl"), long_docs)
    write_text(os.path.join(out, "tokenizer_text.txt"), "\n\n".join(tok_text) + "\n")
    stats["long"] = {"train": {"documents": len(long_docs), "bytes": sum(len(x.encode()) for x in long_docs)}}
    write_text(os.path.join(out, "corpus.json"), json.dumps(
        {"source": a.source, "domains": list(domains), "sources": sources, "splits": stats,
         "mb_per_domain": a.mb, "val_every": a.val_every, "long_bytes": a.long_bytes}, indent=1) + "\n")
    for name, s in stats.items():
        print(f"{name}: " + ", ".join(f"{p} {v['documents']} documents {v['bytes'] / 1e6:.2f} MB" for p, v in s.items()))


def write_text(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_jsonl(path, texts):
    write_text(path, "".join(json.dumps({"text": t}) + "\n" for t in texts))


if __name__ == "__main__":
    main()
