#!/usr/bin/env python3
"""One-off check of our byte-level BPE ids against the real engines, where they are installed
(the GPU machine has tiktoken / tokenizers; this machine does not).

  check_tiktoken.py --ranks llama3-tiktoken-128000.model --text FILE --ids IDS_FILE
      tiktoken.Encoding(rank file, the Llama-3 or Llama-4 pattern and specials by rank count),
      encode(text, disallowed_special=()) on the file decoded with errors='replace'
  check_tiktoken.py --hf-json tokenizer.json --text FILE --ids IDS_FILE
      tokenizers.Tokenizer.from_file(...).encode(text, add_special_tokens=False)

IDS_FILE holds our ids (space-separated, as `mobilellm tokenizer encode --input FILE` prints).
Prints one JSON object: engine, counts, equal, first difference.
"""
import argparse
import base64
import json
import sys

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA4 = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
          r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
          r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def specials(n_base):
    if n_base == 128000:
        names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                 "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
                 "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
                 "<|image|>"]
        names += [f"<|reserved_special_token_{2 + i}|>" for i in range(256 - len(names))]
        return names
    names = ["<|begin_of_text|>", "<|end_of_text|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
             "<|header_start|>", "<|header_end|>", "<|eom|>", "<|eot|>", "<|step|>"]
    names += [f"<|text_post_train_reserved_special_token_{i}|>" for i in range(6)]
    names += ["<|python_start|>", "<|python_end|>", "<|finetune_right_pad|>"]
    names += [f"<|text_post_train_reserved_special_token_{i}|>" for i in range(8, 69)]
    names += ["<|image_start|>", "<|image_end|>", "<|vision_reserved_special_token_0|>",
              "<|vision_reserved_special_token_1|>", "<|tile_x_separator|>", "<|tile_y_separator|>"]
    names += [f"<|vision_reserved_special_token_{i}|>" for i in range(2, 6)]
    names += ["<|image|>", "<|vision_reserved_special_token_6|>", "<|patch|>"]
    names += [f"<|vision_reserved_special_token_{i}|>" for i in range(7, 1048)]
    names += [f"<|reasoning_reserved_special_token_{i}|>" for i in range(8)]
    names += ["<|reasoning_thinking_start|>", "<|reasoning_thinking_end|>"]
    names += [f"<|reserved_special_token_{i}|>" for i in range(2048 - len(names))]
    return names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks")
    ap.add_argument("--hf-json")
    ap.add_argument("--text", required=True)
    ap.add_argument("--ids", required=True)
    a = ap.parse_args()
    text = open(a.text, "rb").read().decode("utf-8", errors="replace")
    ours = [int(x) for x in open(a.ids).read().split()]
    if a.ranks:
        import tiktoken
        ranks = {}
        for line in open(a.ranks, "rb"):
            if line.strip():
                tok, r = line.split()
                ranks[base64.b64decode(tok)] = int(r)
        n = len(ranks)
        if n not in (128000, 200000):
            sys.exit(f"unknown rank count {n}")
        enc = tiktoken.Encoding(name="check", pat_str=LLAMA4 if n == 200000 else LLAMA3, mergeable_ranks=ranks,
                                special_tokens={s: n + i for i, s in enumerate(specials(n))})
        theirs = enc.encode(text, disallowed_special=())
        engine = f"tiktoken {tiktoken.__version__}" if hasattr(tiktoken, "__version__") else "tiktoken"
    elif a.hf_json:
        import tokenizers
        tok = tokenizers.Tokenizer.from_file(a.hf_json)
        theirs = tok.encode(text, add_special_tokens=False).ids
        engine = f"tokenizers {tokenizers.__version__}"
    else:
        sys.exit("give --ranks or --hf-json")
    diff = next((i for i, (x, y) in enumerate(zip(ours, theirs)) if x != y), None)
    if diff is None and len(ours) != len(theirs):
        diff = min(len(ours), len(theirs))
    print(json.dumps({"engine": engine, "text": a.text, "chars": len(text), "ours": len(ours), "theirs": len(theirs),
                      "equal": diff is None, "first_difference": diff}))
    return 0 if diff is None else 1


if __name__ == "__main__":
    sys.exit(main())
