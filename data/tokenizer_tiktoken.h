/* tiktoken rank files (Llama-3 / Llama-4 tokenizer.model): one "base64(bytes) rank" per line.
 * The flavour follows from the number of ranks: 128000 is Llama-3 (cl100k-style regex, 256
 * specials from 128000: <|begin_of_text|>, <|end_of_text|>, ..., vocabulary 128256; MobileLLM-R1),
 * 200000 is Llama-4 (o200k-style regex, 2048 specials from 200000, vocabulary 202048;
 * MobileLLM-Pro). Encoding equals tiktoken.Encoding.encode(text, disallowed_special=()) on
 * text decoded with errors='replace': special-token text in the input is plain text. BOS/EOS
 * are <|begin_of_text|>/<|end_of_text|>; PAD is <|finetune_right_pad_id|> (Llama-3) or
 * <|finetune_right_pad|> (Llama-4). Fingerprint: "tiktoken-" + FNV-1a-64 of the file. */
#ifndef ML_DATA_TOKENIZER_TIKTOKEN_H
#define ML_DATA_TOKENIZER_TIKTOKEN_H

#include <stddef.h>

#include "data/tokenizer.h"

/* Whether data looks like a tiktoken rank file (its first line is "base64 SP digits"). */
int ml_tiktoken_detect(const char *data, size_t n);
/* Load from the file's contents (path is for messages). */
ml_status ml_tokenizer_tiktoken_new(ml_tokenizer **out, const char *path, const char *data, size_t n);

#endif
