/* The model as a GGUF file that llama.cpp loads (architecture `llama`).
 *
 * Mapping (formats.md §1.5-1.7): llama.* hyperparameters, tensors token_embd / blk.N.* /
 * output_norm / output (omitted when tied), ne[0] = the HF in_features. Half-split (rotate_half)
 * RoPE models get their q_proj/k_proj rows permuted within each head to ggml's adjacent-pair
 * RoPE; adjacent-pair models are written as they are. A layer-shared model is written with each
 * block repeated as many times as it runs (block_count = applied layers). Norms are always F32;
 * a matrix whose row length is not a multiple of 32 stays F16 in a Q8_0/Q4_0 file.
 *
 * A quantized model (quant/quant.h, m->quant): its q4_0 / q8_0 matrices are written as exactly those GGUF blocks
 * of the latent weights (the blocks the fake quantizer computed with), its other tensors as F32 (an unquantized
 * embedding its latent weights, an int8 / int4 embedding or int4-* matrices their dequantized values, so llama.cpp
 * computes with what the model computes with; refresh the model's weights first). type_given with another
 * quantized type is refused (re-quantizing would change the model); int4-* schemes also allow f32 / f16.
 *
 * Refused (ML_ERR_UNSUPPORTED, with the reason): QK-norm, NoPE layers and sliding-window layers,
 * which arch `llama` cannot express (the file would load and compute something else). */
#ifndef ML_GGUF_EXPORT_H
#define ML_GGUF_EXPORT_H

#include "formats/gguf.h"
#include "model/model.h"

typedef struct {
    ml_ggml_type type;         /* F32, F16, Q8_0 or Q4_0 for the matrices */
    int type_given;            /* the caller chose `type`: a quantized model refuses one that disagrees with it */
    const char *tokenizer;     /* SentencePiece .model or byte-level BPE tokenizer.json path, or NULL / "bytes" */
    const char *name;          /* general.name (NULL: the config's name) */
} ml_gguf_export_opts;

/* ML_OK when arch `llama` computes exactly what `c` computes, else ML_ERR_UNSUPPORTED saying why. */
ml_status ml_gguf_check_expressible(const ml_config *c);

/* Write `m` to path (atomically). */
ml_status ml_gguf_export(const ml_model *m, const char *path, const ml_gguf_export_opts *o);

/* Tokenizer metadata (tokenizer.ggml.*), each writing a complete SentencePiece-style (`llama`)
 * vocabulary of exactly vocab_size tokens:
 *  - bytes: ids 0..255 are the byte pieces <0x00>..<0xFF> (BYTE), then <s>, </s>, <pad> (CONTROL)
 *    at the ids given (the byte tokenizer: 256, 257, 258);
 *  - spm: the pieces, scores and types of a SentencePiece model file, padded with [PAD{i}]
 *    (UNUSED) up to vocab_size; bos/eos/unk/pad from its trainer spec. */
ml_status ml_gguf_add_tokenizer_bytes(ml_gguf_writer *w, int vocab_size, int bos, int eos, int pad);
ml_status ml_gguf_add_tokenizer_spm(ml_gguf_writer *w, const char *model_path, int vocab_size);
/* A byte-level BPE tokenizer.json (data/tokenizer_hf.h; `mobilellm tokenizer train` writes one) as llama.cpp's
 * `gpt2` vocabulary: its byte-level token strings by id (added tokens CONTROL, ids up to vocab_size that it lacks
 * [PAD{i}] UNUSED), its merges as "a b" strings in rank order, pre-tokenizer `llama-bpe` (Llama-3's regex) or
 * `gpt2`; any other regex, or add_prefix_space, is refused (llama.cpp would split text differently). */
ml_status ml_gguf_add_tokenizer_bpe(ml_gguf_writer *w, const char *path, int vocab_size, int bos, int eos);

#endif
