#!/usr/bin/env python3
"""Interop checks of `mobilellm export --format hf` against transformers, run in the interop venv
(scripts/interop_venv.sh). One case per call (tests/interop/hf_interop.sh runs them from ctest):

  model CKPT_H5 HF_DIR PROMPT   loads HF_DIR with AutoModelForCausalLM (no missing / unexpected keys),
                                compares its fp32 logits on the tokenized prompt with `mobilellm logits`,
                                and greedy `generate` with `mobilellm sample --temperature 0`
  tokenizer HF_DIR              AutoTokenizer on the export against sentencepiece on tokenizer.model:
                                the same ids and decode on strings with leading and repeated spaces,
                                newlines, tabs, unicode, and samples of text files given after it

Environment: ML_BIN (the mobilellm binary), ML_TOKENIZER (the tokenizer given to sample; "bytes").
Prints one JSON line per check; exits 1 on a failure.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.environ.get("ML_BIN", "mobilellm")


def run(*args):
    return subprocess.run([BIN, *args], check=True, capture_output=True).stdout


def check_model(ckpt, hf, prompt, new_tokens=24, rtol=1e-4):
    import torch
    import transformers
    tok_spec = os.environ.get("ML_TOKENIZER", "bytes")
    tok = transformers.AutoTokenizer.from_pretrained(hf)
    model, info = transformers.AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32, output_loading_info=True)
    model.eval()
    bad_keys = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    ids = tok(prompt)["input_ids"]
    p = subprocess.run([BIN, "tokenizer", "encode", "--tokenizer", tok_spec] + (["--bos"] if tok.bos_token_id is not None and ids[:1] == [tok.bos_token_id] else []),
                       input=prompt.encode(), check=True, capture_output=True)
    ours_ids = [int(x) for x in p.stdout.split()]
    with tempfile.TemporaryDirectory() as d:
        npy = os.path.join(d, "l.npy")
        run("logits", "--ckpt", ckpt, "--tokens", " ".join(map(str, ids)), "--out", npy)
        ours = np.load(npy)
    with torch.no_grad():
        theirs = model(torch.tensor([ids])).logits[0].float().numpy()
    diff = float(np.abs(ours - theirs).max()) if ours.shape == theirs.shape else float("inf")
    rel = diff / float(np.abs(theirs).max())
    top1 = float((ours.argmax(-1) == theirs.argmax(-1)).mean()) if ours.shape == theirs.shape else 0.0
    # greedy: ours from `sample`, theirs from generate; a difference is accepted only at a near-tie
    sample_args = ["sample", "--ckpt", ckpt, "--prompt", prompt, "--tokens", str(new_tokens), "--temperature", "0",
                   "--tokenizer", tok_spec] + (["--bos"] if ids[:1] == [tok.bos_token_id] else [])
    ours_text = subprocess.run([BIN, *sample_args], check=True, capture_output=True).stdout.decode("utf-8", "replace")
    with torch.no_grad():
        gen = model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)[0, len(ids):].tolist()
    # decode the continuation as `sample` prints it: the text of prompt + continuation after the prompt's text
    full = tok.decode(ids + gen, skip_special_tokens=True)
    head = tok.decode(ids, skip_special_tokens=True)
    theirs_text = full[len(head):] if full.startswith(head) else tok.decode(gen, skip_special_tokens=True)
    same = ours_text == theirs_text
    res = {"check": "model", "hf": os.path.basename(hf.rstrip("/")), "class": type(model).__name__,
           "transformers": transformers.__version__, "torch": torch.__version__,
           "loading_problems": bad_keys, "prompt_ids_equal": ours_ids == ids, "tokens": len(ids),
           "max_abs_diff": diff, "max_rel_diff": rel, "top1_agreement": top1,
           "greedy_tokens": len(gen), "greedy_same_text": same}
    if not same:
        res["ours"], res["theirs"] = ours_text, theirs_text
    ok = not bad_keys and ours_ids == ids and rel <= rtol and top1 == 1.0 and same
    res["ok"] = ok
    print(json.dumps(res, ensure_ascii=False))
    return ok


STRINGS = ["  int main(void) { return 0; }\n", "Hello world", " leading space", "  two leading", "a  b   c    d",
           "trailing  ", "x  \n  y", "\n\nnewlines\n", "\ttab\t\tx", "line\r\nbreak", "héllo wörld", "日本語のテキスト",
           "emoji 🦙🦙 ok", "ﬁ ligature Ⅻ", "\u00a0nbsp", "zero\u200bwidth", "", " ", "     ", "\n",
           "def f(x):\n    return x ** 2\n\n\nclass A:\n        pass\n"]
STRINGS += [" " * k + "x" for k in range(1, 33)] + ["x" + " " * k + "\n" for k in range(1, 17)]


def check_tokenizer(hf, files):
    import random

    import sentencepiece as spm
    import transformers
    tok = transformers.AutoTokenizer.from_pretrained(hf)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(hf, "tokenizer.model"))
    tests = list(STRINGS)
    rng = random.Random(1)
    for f in files:
        text = open(f, encoding="utf-8", errors="replace").read()
        for _ in range(40):
            a = rng.randrange(max(1, len(text) - 500))
            tests.append(text[a:a + rng.randrange(1, 500)])
    enc_bad, dec_bad, first = 0, 0, None
    for s in tests:
        a, b = tok.encode(s, add_special_tokens=False), sp.encode(s)
        if a != b:
            enc_bad += 1
            first = first or {"text": s[:60], "transformers": a[:10], "sentencepiece": b[:10]}
        if tok.decode(a) != sp.decode(b) or tok.decode(a) != s:  # same text as sentencepiece, and the input back
            dec_bad += 1
            first = first or {"text": s[:60], "decode": tok.decode(a)[:60]}
    bos = tok.encode("Hello world") == [sp.bos_id()] + sp.encode("Hello world")
    res = {"check": "tokenizer", "class": type(tok).__name__, "transformers": transformers.__version__,
           "strings": len(tests), "encode_mismatches": enc_bad, "decode_mismatches": dec_bad, "bos_added": bos,
           "ok": enc_bad == 0 and dec_bad == 0 and bos}
    if first:
        res["first_mismatch"] = first
    print(json.dumps(res, ensure_ascii=False))
    return res["ok"]


def main(argv):
    if len(argv) >= 4 and argv[0] == "model":
        return 0 if check_model(argv[1], argv[2], argv[3]) else 1
    if len(argv) >= 2 and argv[0] == "tokenizer":
        return 0 if check_tokenizer(argv[1], argv[2:]) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
