/* Hugging Face tokenizer.json, byte-level BPE (GPT-2 / Llama-3 / MobileLLM-R1 style):
 * model BPE with vocab + merges ("a b" strings or [a, b] pairs), pre_tokenizer either
 * Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false)] or ByteLevel(use_regex=true)
 * (GPT-2's regex), normalizer null, decoder ByteLevel. added_tokens become special tokens: they
 * are never matched in input text (HF's split_special_tokens=True) and decode to nothing.
 * SentencePiece-style BPE files (byte_fallback, Metaspace) are refused with
 * "unsupported tokenizer.json: ...". BOS/EOS/PAD are looked up by the usual names
 * (<|begin_of_text|>, <s>, ...). Fingerprint: "hf-bpe-" + FNV-1a-64 of the file. */
#ifndef ML_DATA_TOKENIZER_HF_H
#define ML_DATA_TOKENIZER_HF_H

#include <stddef.h>

#include "data/tokenizer.h"

/* Whether data looks like JSON with a "model" key (first non-blank byte '{'). */
int ml_hf_json_detect(const char *data, size_t n);
ml_status ml_tokenizer_hf_new(ml_tokenizer **out, const char *path, const char *data, size_t n);

#endif
