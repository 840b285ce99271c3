#!/usr/bin/python3
"""Insert a row at the end of one table of bench/RESULTS.md (the table under a given '## ' heading, or the
file's first table with --first), creating the section with its header when it is missing.

    /usr/bin/python3 bench/results_row.py RESULTS.md "## Heading" "| row |" [--intro TEXT --header "| a | b |"]
"""
import argparse
import os


def insert_row(path, heading, row, header=None, intro=""):
    lines = open(path).read().splitlines() if os.path.exists(path) else ["# Benchmark record"]
    start = next((i for i, l in enumerate(lines) if l.strip() == heading), None)
    if start is None:
        if header is None:
            raise SystemExit(f"{path}: no section '{heading}' and no --header to create it")
        ncols = header.count("|") - 1
        lines += ["", heading, ""] + ([intro, ""] if intro else []) + [header, "|" + "---|" * ncols, row]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        rows = [i for i in range(start + 1, end) if lines[i].startswith("|")]
        if not rows:
            raise SystemExit(f"{path}: section '{heading}' has no table")
        lines.insert(rows[-1] + 1, row)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("heading")
    ap.add_argument("row")
    ap.add_argument("--header")
    ap.add_argument("--intro", default="")
    a = ap.parse_args()
    insert_row(a.path, a.heading, a.row, a.header, a.intro)
