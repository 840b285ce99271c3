"""Split four domains of ../shared/data into train / val (search) / test (report) text, by whole documents.

    python3 scripts/merge_prepare.py DATA_DIR OUT_DIR [TRAIN_BYTES]

Document i of a domain goes to val when i % 20 == 7, to test when i % 20 == 13, else to train; each split
is capped (train at TRAIN_BYTES, default 1.5 MB; val and test at a tenth of that). Writes
OUT_DIR/<domain>/{train,val,test}/NNNNN.txt, one file per document (tokenize --doc-split file).
Deterministic; standard library only.
"""
import json
import os
import re
import sys


def stories(d):
    text = open(os.path.join(d, "stories/tinystories_train_prefix.txt"), encoding="utf-8").read()
    # a story is a run of paragraphs; stories start with a paragraph after a blank line that opens a new tale
    return [s.strip() for s in re.split(r"\n\s*\n(?=(?:Once|One day|Lily|Tim|There was|Once upon))", text) if s.strip()]


def math(d):
    out = []
    for line in open(os.path.join(d, "math/gsm8k_train.jsonl"), encoding="utf-8"):
        if line.strip():
            r = json.loads(line)
            out.append(f"Question: {r['question']}\nAnswer: {r['answer']}")
    return out


def code(d):
    text = open(os.path.join(d, "code/python_cpython311_stdlib.txt"), encoding="utf-8", errors="replace").read()
    return [b for b in re.split(r"(?=^# ===== FILE: )", text, flags=re.M) if b.strip()]


def wiki(d):
    text = open(os.path.join(d, "wiki/enwiki_extract.txt"), encoding="utf-8").read()
    return [a.strip() for a in text.split("\n\n") if a.strip()]


def main():
    data, out = sys.argv[1], sys.argv[2]
    cap = int(float(sys.argv[3])) if len(sys.argv) > 3 else 1_500_000
    caps = {"train": cap, "val": cap // 10, "test": cap // 10}
    for name, fn in (("stories", stories), ("math", math), ("code", code), ("wiki", wiki)):
        docs = fn(data)
        used = {k: 0 for k in caps}
        for i, doc in enumerate(docs):
            split = "val" if i % 20 == 7 else "test" if i % 20 == 13 else "train"
            doc = doc[: caps[split]]  # one huge file must not take a whole split
            if used[split] + len(doc) > caps[split]:
                continue
            path = os.path.join(out, name, split)
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, f"{i:05d}.txt"), "w", encoding="utf-8") as f:
                f.write(doc + "\n")
            used[split] += len(doc)
        print(name, len(docs), "documents;", ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in used.items()))


if __name__ == "__main__":
    main()
