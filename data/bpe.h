/* Byte-level BPE: one engine behind the tiktoken and Hugging Face tokenizer.json tokenizers,
 * plus the regex pre-tokenizer they share.
 *
 * Tokens are byte strings with ids; a merge table maps an adjacent pair of ids (a, b) to a rank
 * and the id of the token whose bytes are bytes(a)+bytes(b). Encoding a pre-tokenized piece
 * starts from its single bytes and repeatedly merges the adjacent pair of lowest rank (the
 * leftmost on ties) until no pair has a merge: the semantics of both tiktoken (whose rank is
 * the merged token's rank; ml_bpe_derive_merges builds that table from the vocabulary) and
 * Hugging Face's BPE model (rank = position in "merges"). Pieces of up to 64 bytes use a
 * simple scan, longer ones a heap (O(n log n), so a megabyte without spaces is no problem).
 *
 * Special tokens have ids but no bytes in the mergeable vocabulary: text is never matched
 * against them, and they decode to nothing. */
#ifndef ML_DATA_BPE_H
#define ML_DATA_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "data/tokenizer.h"

typedef struct ml_bpe ml_bpe;

/* A BPE vocabulary with ids 0..n_ids-1, all unset. */
ml_status ml_bpe_new(ml_bpe **out, uint32_t n_ids);
void ml_bpe_free(ml_bpe *b); /* NULL is fine */

/* Give id its bytes. Two ids with the same bytes, or an id set twice, is ML_ERR_FORMAT. */
ml_status ml_bpe_set_token(ml_bpe *b, uint32_t id, const void *bytes, size_t len);
/* Make id a special token called name (decodes to nothing; never produced from text). */
ml_status ml_bpe_set_special(ml_bpe *b, uint32_t id, const char *name);
/* Add merge (a, b) at rank. The merged bytes must be a token (else ML_ERR_FORMAT); a pair
 * given twice keeps its lowest rank. */
ml_status ml_bpe_add_merge(ml_bpe *b, uint32_t a, uint32_t bb, uint32_t rank);
/* tiktoken's merges: every split of a token t into two tokens (a, b) is a merge of rank
 * id(t). Call after every token is set. */
ml_status ml_bpe_derive_merges(ml_bpe *b);
/* Check that every single byte is a token and freeze. ignore_merges: a piece that is a token
 * as a whole is emitted as that token without merging (tiktoken; HF "ignore_merges"). */
ml_status ml_bpe_finish(ml_bpe *b, int ignore_merges);

uint32_t ml_bpe_n_ids(const ml_bpe *b);
size_t ml_bpe_n_merges(const ml_bpe *b);
/* The id of a byte string, or -1. */
int64_t ml_bpe_lookup(const ml_bpe *b, const void *bytes, size_t len);
/* The bytes of id (NULL for a special or unset id). */
const uint8_t *ml_bpe_token(const ml_bpe *b, uint32_t id, size_t *len);
/* The name of a special id, or NULL. */
const char *ml_bpe_special_name(const ml_bpe *b, uint32_t id);

/* Append the ids of one pre-tokenized piece. */
ml_status ml_bpe_encode_piece(const ml_bpe *b, const uint8_t *p, size_t n, ml_id_buf *out);
/* Append the bytes of ids; specials give nothing, an unknown id is ML_ERR_RANGE naming its position. */
ml_status ml_bpe_decode(const ml_bpe *b, ml_byte_buf *out, const uint32_t *ids, size_t n);

/* ---- regex pre-tokenizer (PCRE2, UTF + UCP, JIT when available) ---- */

typedef struct ml_pretok ml_pretok;

/* Compile pattern. \s and \S are rewritten to Unicode's White_Space set (what Rust's regex,
 * Python's regex module and Oniguruma use; PCRE2's own \s differs at U+0085 and friends).
 * keep_gaps: text between matches becomes pieces too (HF Split "Isolated"); otherwise it is
 * dropped (tiktoken's find_iter). */
ml_status ml_pretok_new(ml_pretok **out, const char *pattern, int keep_gaps);
void ml_pretok_free(ml_pretok *r);

typedef ml_status (*ml_pretok_fn)(void *ctx, const uint8_t *piece, size_t n);
/* Call fn for each piece of text[0..len), which must be valid UTF-8. */
ml_status ml_pretok_split(const ml_pretok *r, const char *text, size_t len, ml_pretok_fn fn, void *ctx);

/* Split then BPE-encode text[0..len). Ill-formed UTF-8 is first replaced by U+FFFD per
 * maximal subpart (Python's errors='replace'), since tiktoken and HF tokenize str, not bytes. */
ml_status ml_bpe_encode_text(const ml_bpe *b, const ml_pretok *r, const char *text, size_t len, ml_id_buf *out);

/* The pre-tokenizer patterns of Llama-3 (cl100k), Llama-4 (o200k) and GPT-2. */
extern const char ML_PAT_LLAMA3[];
extern const char ML_PAT_LLAMA4[];
extern const char ML_PAT_GPT2[];

/* ---- GPT-2's byte <-> unicode map (HF byte-level vocabularies) ----
 * Bytes 0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF stand for themselves; the other 68 map, in increasing
 * byte order, to U+0100, U+0101, ... (space is U+0120 'Ġ', newline U+010A 'Ċ'). */
uint32_t ml_bytelevel_cp(uint8_t byte);
/* The byte a code point stands for, or -1. */
int ml_bytelevel_byte(uint32_t cp);
/* Convert a byte-level string (UTF-8 of mapped code points) to raw bytes in out (room for
 * len bytes); returns the byte count or -1 if a character is not in the map. */
long ml_bytelevel_decode(const char *s, size_t len, uint8_t *out);
/* Append the byte-level string of bytes[0..n) to out (NUL-terminated; at most 2n+1 bytes). */
size_t ml_bytelevel_encode(const uint8_t *bytes, size_t n, char *out);

/* ---- a tokenizer (data/tokenizer.h) over a BPE vocabulary and a pre-tokenizer ---- */

typedef struct {
    const char *pattern;   /* pre-tokenizer regex */
    int keep_gaps;         /* see ml_pretok_new */
    int add_prefix_space;  /* prepend ' ' unless the text starts with one (HF ByteLevel) */
    const char *bos, *eos, *pad; /* special-token names, or NULL */
    const char *fingerprint;
} ml_bpe_tok_spec;

/* Wrap b (ownership passes, also on failure) into a tokenizer. */
ml_status ml_bpe_tokenizer_wrap(ml_tokenizer **out, ml_bpe *b, const ml_bpe_tok_spec *spec);
/* The BPE vocabulary of a tokenizer made by ml_bpe_tokenizer_wrap, else NULL. */
const ml_bpe *ml_tokenizer_bpe(const ml_tokenizer *t);
/* The id of a special token by name (e.g. "<|eot_id|>") of a BPE tokenizer, or -1. */
int64_t ml_tokenizer_special_id(const ml_tokenizer *t, const char *name);

#endif
