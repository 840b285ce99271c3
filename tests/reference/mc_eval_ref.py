#!/usr/bin/python3
"""PyTorch reference of zero-shot multiple-choice scoring (checked against infer/mc_eval.c).

    /usr/bin/python3 tests/reference/mc_eval_ref.py --job "CFG.json|W.safetensors|TASK|FILE.jsonl|LIMIT|MAXLEN|OUT.json" ...

One process runs every --job (torch imports once): TASK is hellaswag, piqa, arc_easy or arc_challenge,
LIMIT 0 = all items, MAXLEN 0 = the config's max_position_embeddings.

Builds context / continuation pairs as lm-evaluation-harness's task templates do (HellaSwag
preprocess, "Question: ...\\nAnswer:" for PIQA and ARC, target delimiter " "), tokenizes with the
byte tokenizer (UTF-8 bytes), encodes pairs like the harness's _encode_pair, runs
tests/reference/mobilellm_torch.py on (ctx + cont)[-(L + 1):][:-1] one choice at a time, and sums the
continuation's log-probabilities (float64 log-softmax of float32 logits). acc = argmax(ll),
acc_norm = argmax(ll / len(choice)) with numpy's first-maximum rule.
Output JSON: {"items": [{"context", "choices", "label", "ll": [...], "pred", "pred_norm"}], "acc", "acc_norm"}.
"""
import argparse
import json
import os
import re
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mobilellm_torch import MobileLLM, MobileLLMConfig, load_weights, read_safetensors  # noqa: E402


def hellaswag_preprocess(text):
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def build(task, doc):
    if task == "hellaswag":
        return hellaswag_preprocess(doc["ctx"]), [hellaswag_preprocess(e) for e in doc["endings"]], int(doc["label"])
    if task == "piqa":
        return "Question: " + doc["goal"] + "\nAnswer:", [doc["sol1"], doc["sol2"]], int(doc["label"])
    labels = [c["label"] for c in doc["choices"]]
    return ("Question: " + doc["question"] + "\nAnswer:", [c["text"] for c in doc["choices"]],
            labels.index(doc["answerKey"]))


def encode_pair(context, continuation):
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = list((context + continuation).encode("utf-8"))
    ctx = list(context.encode("utf-8"))
    return ctx, whole[len(ctx):]


def run_job(config, weights_path, task_name, data, limit, max_len, out_path):
    cfg = MobileLLMConfig.from_json_file(config)
    model = MobileLLM(cfg)
    weights, _ = read_safetensors(weights_path)
    load_weights(model, weights, weights_path)
    model.eval()
    if not max_len:
        with open(config, encoding="utf-8") as f:
            max_len = json.load(f)["max_position_embeddings"]
    task = "arc" if task_name.startswith("arc") else task_name
    items = []
    with open(data, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            if limit and len(items) == limit:
                break
            context, choices, label = build(task, json.loads(line))
            lls = []
            for choice in choices:
                ctx, cont = encode_pair(context, " " + choice)
                inp = (ctx + cont)[-(max_len + 1):][:-1]
                with torch.no_grad():
                    logits = model(torch.tensor([inp]))[0]
                lp = torch.log_softmax(logits[len(inp) - len(cont):].double(), dim=-1)
                lls.append(float(lp[torch.arange(len(cont)), torch.tensor(cont)].sum()))
            lls = np.array(lls)
            lens = np.array([float(len(c)) for c in choices])
            items.append({"context": context, "choices": choices, "label": label, "ll": lls.tolist(),
                          "pred": int(np.argmax(lls)), "pred_norm": int(np.argmax(lls / lens))})
    n = len(items)
    out = {"items": items, "acc": sum(it["pred"] == it["label"] for it in items) / n,
           "acc_norm": sum(it["pred_norm"] == it["label"] for it in items) / n}
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f)
    os.replace(tmp, out_path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--job", action="append", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    for job in a.job:
        config, weights, task, data, limit, max_len, out = job.split("|")
        if task not in ("hellaswag", "piqa", "arc_easy", "arc_challenge"):
            raise SystemExit(f"unknown task {task}")
        run_job(config, weights, task, data, int(limit), int(max_len), out)


if __name__ == "__main__":
    main()
