#include "interop/hf_tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/atomic_file.h"
#include "data/bpe.h"
#include "data/tokenizer.h"
#include "data/tokenizer_hf.h"
#include "data/tokenizer_spm.h"
#include "data/tokenizer_tiktoken.h"

static ml_status write_file(const char *dir, const char *name, const char *data, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ml_atomic_file f;
    ML_TRY(ml_atomic_begin(&f, path, 1));
    if (fwrite(data, 1, n, f.fp) != n) {
        ml_atomic_abort(&f);
        return ml_fail(ML_ERR_IO, "cannot write %s", path);
    }
    return ml_atomic_commit(&f);
}

static ml_status write_json(const char *dir, const char *name, cJSON *o) {
    char *text = cJSON_Print(o);
    if (!text) return ml_fail(ML_ERR_NOMEM, "out of memory");
    ml_status s = write_file(dir, name, text, strlen(text));
    free(text);
    return s;
}

static cJSON *special(int id, const char *content) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "id", id);
    cJSON_AddStringToObject(t, "content", content);
    cJSON_AddBoolToObject(t, "single_word", 0);
    cJSON_AddBoolToObject(t, "lstrip", 0);
    cJSON_AddBoolToObject(t, "rstrip", 0);
    cJSON_AddBoolToObject(t, "normalized", 0);
    cJSON_AddBoolToObject(t, "special", 1);
    return t;
}

static cJSON *bytelevel(const char *type) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", type);
    cJSON_AddBoolToObject(p, "add_prefix_space", 0);
    cJSON_AddBoolToObject(p, "trim_offsets", 1);
    cJSON_AddBoolToObject(p, "use_regex", 0);
    return p;
}

/* The byte tokenizer as HF byte-level BPE without merges: every byte is one token, id = byte. */
static ml_status write_bytes(const char *dir, int max_len) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", "1.0");
    cJSON_AddNullToObject(o, "truncation");
    cJSON_AddNullToObject(o, "padding");
    cJSON *added = cJSON_AddArrayToObject(o, "added_tokens");
    cJSON_AddItemToArray(added, special(256, "<s>"));
    cJSON_AddItemToArray(added, special(257, "</s>"));
    cJSON_AddItemToArray(added, special(258, "<pad>"));
    cJSON_AddNullToObject(o, "normalizer");
    cJSON_AddItemToObject(o, "pre_tokenizer", bytelevel("ByteLevel"));
    cJSON_AddNullToObject(o, "post_processor");
    cJSON_AddItemToObject(o, "decoder", bytelevel("ByteLevel"));
    cJSON *model = cJSON_AddObjectToObject(o, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", 0);
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    cJSON_AddBoolToObject(model, "ignore_merges", 0);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        char piece[8];
        ml_bytelevel_encode(&byte, 1, piece);
        cJSON_AddNumberToObject(vocab, piece, b);
    }
    cJSON_AddArrayToObject(model, "merges");
    ml_status s = write_json(dir, "tokenizer.json", o);
    cJSON_Delete(o);
    if (s != ML_OK) return s;
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "tokenizer_class", "PreTrainedTokenizerFast");
    cJSON_AddStringToObject(c, "bos_token", "<s>");
    cJSON_AddStringToObject(c, "eos_token", "</s>");
    cJSON_AddStringToObject(c, "pad_token", "<pad>");
    cJSON_AddBoolToObject(c, "add_bos_token", 0);
    cJSON_AddNumberToObject(c, "model_max_length", max_len);
    s = write_json(dir, "tokenizer_config.json", c);
    cJSON_Delete(c);
    return s;
}


/* ---------------------------------------------------------------- SentencePiece as tokenizer.json
 * transformers reads tokenizer.json as is (no protobuf or sentencepiece needed); converting a
 * tokenizer.model itself, transformers 5 splits at spaces with Metaspace and orders merges by id,
 * which differs from sentencepiece ("  int" -> [259, 524] instead of [259, 938]). Written here:
 * - normalizer: Prepend("▁") (add_dummy_prefix), Replace(" ", "▁") (escape_whitespaces); no
 *   pre-tokenizer, so a run of spaces is merged by score as sentencepiece does;
 * - model: BPE with byte_fallback, the vocabulary by id, and the merges sentencepiece can make (two
 *   NORMAL pieces whose concatenation is a NORMAL piece) ranked as sentencepiece prefers them: score
 *   descending, then (as transformers' generate_merges) the longer left part, the longer right part,
 *   then piece id and split order. Only pieces of equal score can then rank differently from
 *   sentencepiece's leftmost rule (Llama-2: the 16 whitespace pieces of score -1e9, where the longer
 *   left part first is what the leftmost rule does);
 * - control and unknown pieces as special added tokens; BOS prepended by the post-processor when
 *   add_bos; decoder Replace("▁", " "), ByteFallback, Fuse, Strip one leading space. */
typedef struct {
    int32_t l, r, merged;
    uint32_t order; /* generation order: piece id, then split position */
    float score;
    uint32_t len_l, len_r; /* in code points, as Python's len() */
} spm_merge;

static uint32_t utf8_chars(const char *s, size_t n) {
    uint32_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

static int cmp_merge(const void *pa, const void *pb) {
    const spm_merge *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->len_l != b->len_l) return a->len_l > b->len_l ? -1 : 1;
    if (a->len_r != b->len_r) return a->len_r > b->len_r ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

static int cmp_local(const void *pa, const void *pb) { /* within one piece: by (left id, right id) */
    const spm_merge *a = pa, *b = pb;
    if (a->l != b->l) return a->l < b->l ? -1 : 1;
    return a->r < b->r ? -1 : a->r > b->r;
}

static cJSON *string_pattern(const char *type_key, const char *s) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, type_key, s);
    return p;
}

/* {"type": "Replace", "pattern": {"String": from}, "content": to}: a normalizer or decoder step */
static cJSON *replace_step(const char *from, const char *to) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "type", "Replace");
    cJSON_AddItemToObject(r, "pattern", string_pattern("String", from));
    cJSON_AddStringToObject(r, "content", to);
    return r;
}

static cJSON *spm_normalizer(int dummy_prefix, int escape_ws) {
    cJSON *seq = cJSON_CreateArray();
    if (dummy_prefix) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "type", "Prepend");
        cJSON_AddStringToObject(p, "prepend", "\xE2\x96\x81");
        cJSON_AddItemToArray(seq, p);
    }
    if (escape_ws) cJSON_AddItemToArray(seq, replace_step(" ", "\xE2\x96\x81"));
    cJSON *n = cJSON_CreateObject();
    cJSON_AddStringToObject(n, "type", "Sequence");
    cJSON_AddItemToObject(n, "normalizers", seq);
    return n;
}

static cJSON *spm_decoder(int dummy_prefix, int escape_ws) {
    cJSON *seq = cJSON_CreateArray();
    if (escape_ws) cJSON_AddItemToArray(seq, replace_step("\xE2\x96\x81", " "));
    cJSON *bf = cJSON_CreateObject();
    cJSON_AddStringToObject(bf, "type", "ByteFallback");
    cJSON_AddItemToArray(seq, bf);
    cJSON *fu = cJSON_CreateObject();
    cJSON_AddStringToObject(fu, "type", "Fuse");
    cJSON_AddItemToArray(seq, fu);
    if (dummy_prefix) {
        cJSON *st = cJSON_CreateObject();
        cJSON_AddStringToObject(st, "type", "Strip");
        cJSON_AddStringToObject(st, "content", " ");
        cJSON_AddNumberToObject(st, "start", 1);
        cJSON_AddNumberToObject(st, "stop", 0);
        cJSON_AddItemToArray(seq, st);
    }
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "type", "Sequence");
    cJSON_AddItemToObject(d, "decoders", seq);
    return d;
}

static cJSON *bos_post_processor(const char *bos, int bos_id) {
    cJSON *pp = cJSON_CreateObject();
    cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
    const char *names[2] = {"single", "pair"};
    for (int k = 0; k < 2; k++) {
        cJSON *a = cJSON_AddArrayToObject(pp, names[k]);
        for (int part = 0; part <= k; part++) {
            cJSON *st = cJSON_CreateObject(), *sp = cJSON_AddObjectToObject(st, "SpecialToken");
            cJSON_AddStringToObject(sp, "id", bos);
            cJSON_AddNumberToObject(sp, "type_id", part);
            cJSON_AddItemToArray(a, st);
            cJSON *sq = cJSON_CreateObject(), *se = cJSON_AddObjectToObject(sq, "Sequence");
            cJSON_AddStringToObject(se, "id", part ? "B" : "A");
            cJSON_AddNumberToObject(se, "type_id", part);
            cJSON_AddItemToArray(a, sq);
        }
    }
    cJSON *sts = cJSON_AddObjectToObject(pp, "special_tokens");
    cJSON *b = cJSON_AddObjectToObject(sts, bos);
    cJSON_AddStringToObject(b, "id", bos);
    cJSON *ids = cJSON_AddArrayToObject(b, "ids");
    cJSON_AddItemToArray(ids, cJSON_CreateNumber(bos_id));
    cJSON *toks = cJSON_AddArrayToObject(b, "tokens");
    cJSON_AddItemToArray(toks, cJSON_CreateString(bos));
    return pp;
}

/* A piece as a NUL-terminated string (pieces hold no NUL: the protobuf reader refuses none, so check). */
static char *piece_str(const ml_tokenizer *t, uint32_t id) {
    size_t n = 0;
    const char *p = ml_tokenizer_spm_piece(t, id, &n);
    if (!p || memchr(p, 0, n)) return NULL;
    char *s = malloc(n + 1);
    if (s) memcpy(s, p, n), s[n] = 0;
    return s;
}

static ml_status write_spm_json(const char *dir, const ml_tokenizer *t, int add_bos) {
    ml_spm_info info;
    ML_TRY(ml_tokenizer_spm_info(t, &info));
    const uint32_t V = ml_tokenizer_vocab_size(t);
    spm_merge *mg = NULL;
    size_t n_mg = 0, cap = 0;
    uint32_t order = 0;
    int spaces_in_pieces = 0;
    ml_status s = ML_OK;
    cJSON *o = cJSON_CreateObject(), *vocab = NULL, *added = NULL;
    cJSON_AddStringToObject(o, "version", "1.0");
    cJSON_AddNullToObject(o, "truncation");
    cJSON_AddNullToObject(o, "padding");
    added = cJSON_AddArrayToObject(o, "added_tokens");
    cJSON *model = cJSON_CreateObject();
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    vocab = cJSON_CreateObject();
    char *unk = NULL;
    for (uint32_t id = 0; id < V && s == ML_OK; id++) {
        float score = 0;
        int kind = ml_tokenizer_spm_piece_kind(t, id, &score);
        size_t n = 0;
        const char *p = ml_tokenizer_spm_piece(t, id, &n);
        char *str = piece_str(t, id);
        if (!str) {
            s = ml_fail(ML_ERR_UNSUPPORTED, "SentencePiece piece %u holds a NUL byte; no tokenizer.json can carry it", id);
            break;
        }
        spaces_in_pieces |= memchr(p, ' ', n) != NULL;
        if (ml_tokenizer_spm_find(t, p, n) != (int32_t)id) { /* the first piece of that spelling is found */
            free(str);
            s = ml_fail(ML_ERR_UNSUPPORTED, "SentencePiece piece %u is spelled like an earlier one", id);
            break;
        }
        cJSON_AddNumberToObject(vocab, str, id);
        if (kind == ML_SPM_CONTROL || kind == ML_SPM_UNKNOWN) {
            cJSON_AddItemToArray(added, special((int)id, str));
            if (kind == ML_SPM_UNKNOWN && !unk) unk = strdup(str);
        }
        if (kind == ML_SPM_NORMAL) {
            size_t first = n_mg;
            for (size_t cut = 1; cut < n; cut++) {
                if (((unsigned char)p[cut] & 0xC0) == 0x80) continue; /* inside a character */
                int32_t a = ml_tokenizer_spm_find(t, p, cut), b = ml_tokenizer_spm_find(t, p + cut, n - cut);
                if (a < 0 || b < 0 || ml_tokenizer_spm_piece_kind(t, (uint32_t)a, NULL) != ML_SPM_NORMAL ||
                    ml_tokenizer_spm_piece_kind(t, (uint32_t)b, NULL) != ML_SPM_NORMAL)
                    continue;
                if (n_mg == cap) {
                    cap = cap ? 2 * cap : 65536;
                    spm_merge *nm = realloc(mg, cap * sizeof *mg);
                    if (!nm) {
                        s = ml_fail(ML_ERR_NOMEM, "out of memory listing merges");
                        break;
                    }
                    mg = nm;
                }
                mg[n_mg++] = (spm_merge){a, b, (int32_t)id, 0, score, utf8_chars(p, cut), utf8_chars(p + cut, n - cut)};
            }
            qsort(mg + first, n_mg - first, sizeof *mg, cmp_local);
            for (size_t i = first; i < n_mg; i++) mg[i].order = order++;
        }
        free(str);
    }
    if (s == ML_OK) {
        qsort(mg, n_mg, sizeof *mg, cmp_merge);
        cJSON_AddItemToObject(o, "normalizer", spm_normalizer(info.add_dummy_prefix, info.escape_whitespaces));
        cJSON_AddNullToObject(o, "pre_tokenizer");
        if (add_bos && t->bos >= 0) {
            char *b = piece_str(t, (uint32_t)t->bos);
            cJSON_AddItemToObject(o, "post_processor", bos_post_processor(b ? b : "<s>", t->bos));
            free(b);
        } else {
            cJSON_AddNullToObject(o, "post_processor");
        }
        cJSON_AddItemToObject(o, "decoder", spm_decoder(info.add_dummy_prefix, info.escape_whitespaces));
        if (unk) cJSON_AddStringToObject(model, "unk_token", unk);
        else cJSON_AddNullToObject(model, "unk_token");
        cJSON_AddNullToObject(model, "continuing_subword_prefix");
        cJSON_AddNullToObject(model, "end_of_word_suffix");
        cJSON_AddBoolToObject(model, "fuse_unk", 1);
        cJSON_AddBoolToObject(model, "byte_fallback", info.byte_fallback);
        cJSON_AddBoolToObject(model, "ignore_merges", 0);
        cJSON_AddItemToObject(model, "vocab", vocab);
        vocab = NULL;
        /* "a b" strings are read by every tokenizers version; [a, b] pairs only from 0.20 on */
        cJSON *merges = cJSON_AddArrayToObject(model, "merges");
        for (size_t i = 0; i < n_mg; i++) {
            char *l = piece_str(t, (uint32_t)mg[i].l), *r = piece_str(t, (uint32_t)mg[i].r);
            if (!l || !r) {
                free(l), free(r);
                s = ml_fail(ML_ERR_NOMEM, "out of memory");
                break;
            }
            if (spaces_in_pieces) {
                cJSON *pair = cJSON_CreateArray();
                cJSON_AddItemToArray(pair, cJSON_CreateString(l));
                cJSON_AddItemToArray(pair, cJSON_CreateString(r));
                cJSON_AddItemToArray(merges, pair);
            } else {
                size_t ll = strlen(l), rl = strlen(r);
                char *both = malloc(ll + rl + 2);
                if (both) {
                    memcpy(both, l, ll), both[ll] = ' ', memcpy(both + ll + 1, r, rl + 1);
                    cJSON_AddItemToArray(merges, cJSON_CreateString(both));
                }
                free(both);
            }
            free(l), free(r);
        }
        cJSON_AddItemToObject(o, "model", model);
        model = NULL;
    }
    if (s == ML_OK) s = write_json(dir, "tokenizer.json", o);
    cJSON_Delete(vocab);
    cJSON_Delete(model);
    cJSON_Delete(o);
    free(mg);
    free(unk);
    return s;
}

static ml_status write_config(const char *dir, const char *cls, const ml_tokenizer *t, const char *bos, const char *eos,
                              const char *unk, int add_bos, int max_len) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "tokenizer_class", cls);
    if (bos) cJSON_AddStringToObject(c, "bos_token", bos);
    if (eos) cJSON_AddStringToObject(c, "eos_token", eos);
    if (unk) cJSON_AddStringToObject(c, "unk_token", unk);
    cJSON_AddBoolToObject(c, "add_bos_token", add_bos);
    cJSON_AddBoolToObject(c, "add_eos_token", 0);
    cJSON_AddNumberToObject(c, "model_max_length", max_len);
    /* decode must give back the text: no " ." -> "." clean-up (transformers 4.x defaults to it) */
    cJSON_AddBoolToObject(c, "clean_up_tokenization_spaces", 0);
    (void)t;
    ml_status s = write_json(dir, "tokenizer_config.json", c);
    cJSON_Delete(c);
    return s;
}

ml_status ml_hf_write_tokenizer(const char *dir, const char *spec, int max_len) {
    if (!strcmp(spec, "bytes")) return write_bytes(dir, max_len);
    char *data = NULL;
    size_t n = 0;
    ML_TRY(ml_read_file(spec, &data, &n));
    ml_tokenizer *t = NULL;
    ml_status s = ml_tokenizer_open(&t, spec);
    if (s == ML_OK && ml_spm_sniff(data, n)) {
        size_t bl = 0, el = 0, ul = 0;
        char bos[64] = "", eos[64] = "", unk[64] = "<unk>";
        const char *b = t->bos >= 0 ? ml_tokenizer_spm_piece(t, (uint32_t)t->bos, &bl) : NULL;
        const char *e = t->eos >= 0 ? ml_tokenizer_spm_piece(t, (uint32_t)t->eos, &el) : NULL;
        (void)ul;
        if (b) snprintf(bos, sizeof bos, "%.*s", (int)bl, b);
        if (e) snprintf(eos, sizeof eos, "%.*s", (int)el, e);
        /* tokenizer.json for transformers (exact); tokenizer.model too, for sentencepiece and llama.cpp */
        s = write_file(dir, "tokenizer.model", data, n);
        if (s == ML_OK) s = write_spm_json(dir, t, 1);
        if (s == ML_OK)
            s = write_config(dir, "PreTrainedTokenizerFast", t, b ? bos : NULL, e ? eos : NULL, unk, 1, max_len);
    } else if (s == ML_OK && ml_hf_json_detect(data, n)) {
        s = write_file(dir, "tokenizer.json", data, n);
        if (s == ML_OK) s = write_config(dir, "PreTrainedTokenizerFast", t, NULL, NULL, NULL, 0, max_len);
    } else if (s == ML_OK) {
        s = ml_fail(ML_ERR_UNSUPPORTED,
                    "%s: only the byte tokenizer, SentencePiece .model and tokenizer.json files can be written beside "
                    "an HF export (tiktoken rank files need a tokenizer.json)",
                    spec);
    }
    ml_tokenizer_free(t);
    free(data);
    return s;
}
