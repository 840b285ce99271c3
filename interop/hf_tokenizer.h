/* Tokenizer files beside a Hugging Face export, so transformers' AutoTokenizer and generate work
 * on the directory: the byte tokenizer as a byte-level tokenizer.json (ids = bytes, no merges,
 * <s> </s> <pad> = 256 257 258), a SentencePiece BPE model as a tokenizer.json that tokenizes exactly
 * as sentencepiece does (and the tokenizer.model beside it), an HF tokenizer.json as itself; each with
 * tokenizer_config.json (PreTrainedTokenizerFast, no clean-up of spaces on decode). */
#ifndef ML_HF_TOKENIZER_H
#define ML_HF_TOKENIZER_H

#include "common/status.h"

/* spec: "bytes" or a tokenizer file (recognised by content). max_len: model_max_length. */
ml_status ml_hf_write_tokenizer(const char *dir, const char *spec, int max_len);

#endif
