/* SentencePiece BPE tokenizer (the Llama-2 vocabulary of MobileLLM v1), behind the tokenizer
 * interface and exact against the sentencepiece library (python3-sentencepiece 0.1.97):
 *
 * - Loading: a small protobuf wire-format reader takes ModelProto.pieces (piece, score, type),
 *   trainer_spec (model_type must be BPE; byte_fallback; unk/bos/eos/pad ids; unk_surface) and
 *   normalizer_spec (add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces). Models that
 *   need a precompiled normalization charsmap, remove_extra_whitespaces, whitespace-as-suffix,
 *   user-defined or unused pieces are refused with a message saying which.
 * - Encode: invalid UTF-8 bytes become U+FFFD one byte at a time (as sentencepiece's normalizer
 *   does); spaces become U+2581; a U+2581 is prepended to non-empty text (add_dummy_prefix); the
 *   text is split into characters, then the adjacent pair whose concatenation is a vocabulary
 *   piece with the highest score is merged repeatedly (ties: the leftmost), with a heap over a
 *   linked list (O(n log n)). Characters left without a piece become <0xNN> byte pieces
 *   (byte_fallback) or <unk>. Control pieces (<s>, </s>) never come from text.
 *   When no vocabulary piece of two or more characters contains '\n', no merge can cross a
 *   newline; when no piece has a U+2581 after another character, none can cross into a
 *   word-initial U+2581 (both true of Llama-2). The text is then encoded word by word (small
 *   heaps), and large inputs in chunks cut at such places on OpenMP threads, concatenated in
 *   order; the result equals one whole-text encode, exactly.
 * - Decode: as sentencepiece's DecodeIds: U+2581 -> space, the leading U+2581 of the first
 *   non-control piece dropped, runs of byte pieces reassembled as UTF-8 (invalid bytes -> U+FFFD
 *   each), <unk> -> its surface (" \u2047 "), control pieces -> nothing.
 * - Fingerprint: "spm-" + FNV-1a 64 of the file's bytes (16 hex digits). */
#ifndef ML_DATA_TOKENIZER_SPM_H
#define ML_DATA_TOKENIZER_SPM_H

#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"

/* Whether the first bytes of a file look like a SentencePiece ModelProto (a first field
 * `pieces` holding a well-formed SentencePiece message). Cheap; ml_tokenizer_spm_from_memory
 * does the full validation. */
int ml_spm_sniff(const void *data, size_t n);

/* Load a .model file (name is used in messages). */
ml_status ml_tokenizer_spm_open(ml_tokenizer **t, const char *path);
ml_status ml_tokenizer_spm_from_memory(ml_tokenizer **t, const void *data, size_t n, const char *name);

/* What `mobilellm tokenizer info` shows of a SentencePiece model. */
typedef struct {
    uint32_t n_normal, n_byte, n_control, n_unknown;
    int32_t unk;
    int byte_fallback, add_dummy_prefix, escape_whitespaces;
    int line_parallel; /* encode splits at newlines (no multi-character piece holds '\n') */
    int word_parallel; /* and before word-initial spaces (no piece holds U+2581 after another character) */
    char normalizer[64];
} ml_spm_info;

/* ML_ERR_UNSUPPORTED when t is not a SentencePiece tokenizer. */
ml_status ml_tokenizer_spm_info(const ml_tokenizer *t, ml_spm_info *info);
/* The piece string of id (not NUL-terminated; *len set), or NULL when t is not SentencePiece
 * or id is out of range. */
const char *ml_tokenizer_spm_piece(const ml_tokenizer *t, uint32_t id, size_t *len);
/* Piece kinds, as sentencepiece_model.proto numbers them. */
enum { ML_SPM_NORMAL = 1, ML_SPM_UNKNOWN = 2, ML_SPM_CONTROL = 3, ML_SPM_USER_DEFINED = 4, ML_SPM_UNUSED = 5, ML_SPM_BYTE = 6 };
/* The kind of piece id (0 when t is not SentencePiece or id is out of range) and its score. */
int ml_tokenizer_spm_piece_kind(const ml_tokenizer *t, uint32_t id, float *score);
/* Id of the piece spelled s[0..n) (any kind), -1 when none or t is not SentencePiece. */
int32_t ml_tokenizer_spm_find(const ml_tokenizer *t, const char *s, size_t n);

#endif
