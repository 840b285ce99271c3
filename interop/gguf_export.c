#include "interop/gguf_export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "common/atomic_file.h"
#include "data/bpe.h"
#include "data/tokenizer.h"
#include "data/tokenizer_bytes.h"
#include "data/tokenizer_hf.h"
#include "quant/quant.h"

ml_status ml_gguf_check_expressible(const ml_config *c) {
    if (c->use_qk_norm)
        return ml_fail(ML_ERR_UNSUPPORTED,
                       "GGUF export: %s uses QK-norm (MobileLLM-R1), which llama.cpp's arch 'llama' does not "
                       "compute; its 'llama4' arch cannot load a dense model without experts, so no GGUF is written",
                       c->name);
    for (int i = 0; i < c->num_layers; i++) {
        if (!c->layer_rope[i])
            return ml_fail(ML_ERR_UNSUPPORTED,
                           "GGUF export: %s layer %d has no RoPE (NoPE), which llama.cpp's arch 'llama' cannot "
                           "express, so no GGUF is written", c->name, i);
        if (c->layer_sliding[i])
            return ml_fail(ML_ERR_UNSUPPORTED,
                           "GGUF export: %s layer %d uses sliding-window attention (window %d, MobileLLM-Pro), which "
                           "llama.cpp's arch 'llama' does not apply, so no GGUF is written", c->name, i,
                           c->sliding_window);
    }
    if (c->head_dim % 2)
        return ml_fail(ML_ERR_UNSUPPORTED, "GGUF export: head_dim %d is odd", c->head_dim);
    return ML_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* tokenizers                                                                                  */

enum { TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3, TOK_USER_DEFINED = 4, TOK_UNUSED = 5, TOK_BYTE = 6 };

typedef struct {
    int n;
    char **text;
    uint32_t *len;
    float *score;
    int32_t *type;
} vocab;

static void vocab_free(vocab *v) {
    if (v->text)
        for (int i = 0; i < v->n; i++) free(v->text[i]);
    free(v->text);
    free(v->len);
    free(v->score);
    free(v->type);
    memset(v, 0, sizeof(*v));
}

static ml_status vocab_alloc(vocab *v, int n) {
    memset(v, 0, sizeof(*v));
    v->text = calloc((size_t)n, sizeof(char *));
    v->len = calloc((size_t)n, sizeof(uint32_t));
    v->score = calloc((size_t)n, sizeof(float));
    v->type = calloc((size_t)n, sizeof(int32_t));
    v->n = n;
    if (!v->text || !v->len || !v->score || !v->type) {
        vocab_free(v);
        return ml_fail(ML_ERR_NOMEM, "GGUF export: out of memory for a vocabulary of %d", n);
    }
    return ML_OK;
}

static ml_status vocab_set(vocab *v, int i, const char *s, size_t n, float score, int type) {
    free(v->text[i]);
    if (!(v->text[i] = malloc(n + 1))) return ml_fail(ML_ERR_NOMEM, "GGUF export: out of memory");
    memcpy(v->text[i], s, n);
    v->text[i][n] = 0;
    v->len[i] = (uint32_t)n;
    v->score[i] = score;
    v->type[i] = type;
    return ML_OK;
}

static ml_status vocab_write(ml_gguf_writer *w, const vocab *v, int bos, int eos, int unk, int pad, int add_space_prefix) {
    ML_TRY(ml_gguf_add_str(w, "tokenizer.ggml.model", "llama"));
    ML_TRY(ml_gguf_add_str(w, "tokenizer.ggml.pre", "default"));
    ML_TRY(ml_gguf_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->text, v->len, (uint64_t)v->n));
    ML_TRY(ml_gguf_add_arr_f32(w, "tokenizer.ggml.scores", v->score, (uint64_t)v->n));
    ML_TRY(ml_gguf_add_arr_i32(w, "tokenizer.ggml.token_type", v->type, (uint64_t)v->n));
    if (bos >= 0) ML_TRY(ml_gguf_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos));
    if (eos >= 0) ML_TRY(ml_gguf_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos));
    if (unk >= 0) ML_TRY(ml_gguf_add_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)unk));
    if (pad >= 0) ML_TRY(ml_gguf_add_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad));
    ML_TRY(ml_gguf_add_bool(w, "tokenizer.ggml.add_bos_token", bos >= 0));
    ML_TRY(ml_gguf_add_bool(w, "tokenizer.ggml.add_eos_token", 0));
    return ml_gguf_add_bool(w, "tokenizer.ggml.add_space_prefix", add_space_prefix);
}

ml_status ml_gguf_add_tokenizer_bytes(ml_gguf_writer *w, int vocab_size, int bos, int eos, int pad) {
    if (vocab_size != ML_BYTES_VOCAB)
        return ml_fail(ML_ERR_ARG,
                       "GGUF export: the byte vocabulary has %d tokens but the model has %d; give --tokenizer "
                       "with the model's SentencePiece file", ML_BYTES_VOCAB, vocab_size);
    vocab v;
    ML_TRY(vocab_alloc(&v, vocab_size));
    ml_status s = ML_OK;
    for (int i = 0; i < 256 && s == ML_OK; i++) {
        char piece[8];
        snprintf(piece, sizeof piece, "<0x%02X>", i);
        s = vocab_set(&v, i, piece, 6, 0.0f, TOK_BYTE);
    }
    if (s == ML_OK) s = vocab_set(&v, ML_BYTES_BOS, "<s>", 3, 0.0f, TOK_CONTROL);
    if (s == ML_OK) s = vocab_set(&v, ML_BYTES_EOS, "</s>", 4, 0.0f, TOK_CONTROL);
    if (s == ML_OK) s = vocab_set(&v, ML_BYTES_PAD, "<pad>", 5, 0.0f, TOK_CONTROL);
    if (s == ML_OK && (bos != ML_BYTES_BOS || eos != ML_BYTES_EOS || (pad >= 0 && pad != ML_BYTES_PAD)))
        s = ml_fail(ML_ERR_CONFIG, "GGUF export: the model's bos/eos/pad ids %d/%d/%d are not the byte tokenizer's %d/%d/%d",
                    bos, eos, pad, ML_BYTES_BOS, ML_BYTES_EOS, ML_BYTES_PAD);
    /* no unknown token: every byte has a piece; unk points at <pad> so llama.cpp's SPM default (0) is
       not taken for a byte */
    if (s == ML_OK) s = vocab_write(w, &v, ML_BYTES_BOS, ML_BYTES_EOS, ML_BYTES_PAD, ML_BYTES_PAD, 0);
    vocab_free(&v);
    return s;
}

/* llama.cpp's name for a byte-level BPE pre-tokenizer regex (llama-vocab.cpp's tokenizer.ggml.pre values). */
static const char *bpe_pre_name(const char *pattern) {
    if (!strcmp(pattern, ML_PAT_LLAMA3)) return "llama-bpe";
    if (!strcmp(pattern, ML_PAT_GPT2)) return "gpt2";
    return NULL;
}

ml_status ml_gguf_add_tokenizer_bpe(ml_gguf_writer *w, const char *path, int vocab_size, int bos, int eos) {
    char *data;
    size_t size;
    ML_TRY(ml_read_file(path, &data, &size));
    ml_tokenizer *tok = NULL; /* loading it first refuses what the tokenizer itself does not support */
    ml_status s = ml_tokenizer_hf_new(&tok, path, data, size);
    if (s == ML_OK && (int)ml_tokenizer_vocab_size(tok) > vocab_size)
        s = ml_fail(ML_ERR_CONFIG, "GGUF export: %s has %u tokens but the model's vocabulary is %d", path,
                    (unsigned)ml_tokenizer_vocab_size(tok), vocab_size);
    ml_tokenizer_free(tok);
    cJSON *root = s == ML_OK ? cJSON_ParseWithLength(data, size) : NULL;
    free(data);
    if (s != ML_OK) return s;
    if (!root) return ml_fail(ML_ERR_FORMAT, "GGUF export: %s is not JSON", path);
    /* the pre-tokenizer's regex, in the two shapes the loader accepts */
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), *bl = pt;
    const char *pattern = ML_PAT_GPT2;
    if (!strcmp(cJSON_GetObjectItemCaseSensitive(pt, "type")->valuestring, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
        pattern = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(list, 0), "pattern"), "Regex")->valuestring;
        bl = cJSON_GetArrayItem(list, 1);
    }
    const char *pre = bpe_pre_name(pattern);
    if (!pre || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(bl, "add_prefix_space"))) {
        cJSON_Delete(root);
        return ml_fail(ML_ERR_UNSUPPORTED, "GGUF export: %s: llama.cpp has no name for its pre-tokenizer (only "
                       "Llama-3's regex and GPT-2's, without add_prefix_space, are written)", path);
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges"), *e;
    vocab v;
    char **mtext = NULL;
    int n_merges = cJSON_GetArraySize(merges), m = 0;
    if ((s = vocab_alloc(&v, vocab_size)) != ML_OK) goto done;
    /* ids were checked dense and in range by the tokenizer's loader */
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(model, "vocab")) {
        if (s != ML_OK) break;
        s = vocab_set(&v, (int)e->valuedouble, e->string, strlen(e->string), 0.0f, TOK_NORMAL);
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")) {
        if (s != ML_OK) break;
        const char *c = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
        s = vocab_set(&v, (int)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble, c, strlen(c), 0.0f, TOK_CONTROL);
    }
    for (int i = 0; i < vocab_size && s == ML_OK; i++) {
        if (v.text[i]) continue;
        char piece[32];
        int len = snprintf(piece, sizeof piece, "[PAD%d]", i);
        s = vocab_set(&v, i, piece, (size_t)len, 0.0f, TOK_UNUSED);
    }
    /* merges as llama.cpp reads them: "a b" strings, rank = position */
    if (s == ML_OK && n_merges > 0 && !(mtext = calloc((size_t)n_merges, sizeof(char *))))
        s = ml_fail(ML_ERR_NOMEM, "GGUF export: out of memory for %d merges", n_merges);
    cJSON_ArrayForEach(e, merges) {
        if (s != ML_OK) break;
        const char *a = cJSON_IsString(e) ? e->valuestring : cJSON_GetArrayItem(e, 0)->valuestring;
        const char *b = cJSON_IsString(e) ? NULL : cJSON_GetArrayItem(e, 1)->valuestring;
        size_t n = strlen(a) + (b ? strlen(b) + 1 : 0) + 1;
        if (!(mtext[m] = malloc(n))) s = ml_fail(ML_ERR_NOMEM, "GGUF export: out of memory");
        else snprintf(mtext[m++], n, b ? "%s %s" : "%s", a, b ? b : "");
    }
    if (s == ML_OK) s = ml_gguf_add_str(w, "tokenizer.ggml.model", "gpt2");
    if (s == ML_OK) s = ml_gguf_add_str(w, "tokenizer.ggml.pre", pre);
    if (s == ML_OK) s = ml_gguf_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.text, v.len, (uint64_t)v.n);
    if (s == ML_OK) s = ml_gguf_add_arr_i32(w, "tokenizer.ggml.token_type", v.type, (uint64_t)v.n);
    if (s == ML_OK) {
        uint32_t *ml = calloc((size_t)(m ? m : 1), sizeof(uint32_t));
        if (!ml) s = ml_fail(ML_ERR_NOMEM, "GGUF export: out of memory");
        for (int i = 0; ml && i < m; i++) ml[i] = (uint32_t)strlen(mtext[i]);
        if (s == ML_OK) s = ml_gguf_add_arr_str(w, "tokenizer.ggml.merges", (const char *const *)mtext, ml, (uint64_t)m);
        free(ml);
    }
    if (s == ML_OK && bos >= 0) s = ml_gguf_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (s == ML_OK && eos >= 0) s = ml_gguf_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (s == ML_OK) s = ml_gguf_add_bool(w, "tokenizer.ggml.add_bos_token", bos >= 0);
    if (s == ML_OK) s = ml_gguf_add_bool(w, "tokenizer.ggml.add_eos_token", 0);
done:
    for (int i = 0; i < m; i++) free(mtext[i]);
    free(mtext);
    vocab_free(&v);
    cJSON_Delete(root);
    return s;
}

/* A minimal protobuf walk over a SentencePiece ModelProto: pieces (field 1: piece=1, score=2,
 * type=3), trainer_spec (field 2: unk_id=40, bos_id=41, eos_id=42, pad_id=43) and
 * normalizer_spec (field 3: add_dummy_prefix=3). */
typedef struct {
    const uint8_t *p, *end;
} pb;

static int pb_varint(pb *b, uint64_t *v) {
    uint64_t x = 0;
    for (int sh = 0; sh < 64; sh += 7) {
        if (b->p >= b->end) return -1;
        uint8_t c = *b->p++;
        x |= (uint64_t)(c & 0x7F) << sh;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Next field: number, wire type, and for LEN the sub-buffer, for varint/fixed the value. */
static int pb_next(pb *b, uint32_t *field, int *wt, uint64_t *val, pb *sub) {
    uint64_t key;
    if (pb_varint(b, &key)) return -1;
    *field = (uint32_t)(key >> 3);
    *wt = (int)(key & 7);
    switch (*wt) {
    case 0: return pb_varint(b, val);
    case 1:
        if (b->end - b->p < 8) return -1;
        memcpy(val, b->p, 8);
        b->p += 8;
        return 0;
    case 5: {
        if (b->end - b->p < 4) return -1;
        uint32_t u;
        memcpy(&u, b->p, 4);
        *val = u;
        b->p += 4;
        return 0;
    }
    case 2: {
        uint64_t n;
        if (pb_varint(b, &n) || n > (uint64_t)(b->end - b->p)) return -1;
        sub->p = b->p;
        sub->end = b->p + n;
        b->p += n;
        return 0;
    }
    default: return -1;
    }
}

ml_status ml_gguf_add_tokenizer_spm(ml_gguf_writer *w, const char *model_path, int vocab_size) {
    char *data;
    size_t size;
    ML_TRY(ml_read_file(model_path, &data, &size));
    vocab v;
    ml_status s = vocab_alloc(&v, vocab_size);
    if (s != ML_OK) {
        free(data);
        return s;
    }
    int n = 0, unk = 0, bos = 1, eos = 2, pad = -1, dummy_prefix = 1;
    pb b = {(const uint8_t *)data, (const uint8_t *)data + size}, sub;
    uint32_t field;
    int wt;
    uint64_t val;
    while (s == ML_OK && b.p < b.end) {
        if (pb_next(&b, &field, &wt, &val, &sub)) {
            s = ml_fail(ML_ERR_FORMAT, "%s: not a SentencePiece model (bad protobuf at byte %ld)", model_path,
                        (long)(b.p - (const uint8_t *)data));
            break;
        }
        if (wt != 2) continue;
        if (field == 1) {
            const uint8_t *piece = NULL;
            size_t plen = 0;
            float score = 0.0f;
            int type = TOK_NORMAL;
            pb e = sub, es;
            while (e.p < e.end) {
                if (pb_next(&e, &field, &wt, &val, &es)) {
                    s = ml_fail(ML_ERR_FORMAT, "%s: piece %d is malformed", model_path, n);
                    break;
                }
                if (field == 1 && wt == 2) {
                    piece = es.p;
                    plen = (size_t)(es.end - es.p);
                } else if (field == 2 && wt == 5) {
                    uint32_t u = (uint32_t)val;
                    memcpy(&score, &u, 4);
                } else if (field == 3 && wt == 0) {
                    type = (int)val;
                }
            }
            if (s != ML_OK) break;
            if (!piece || type < TOK_NORMAL || type > TOK_BYTE) {
                s = ml_fail(ML_ERR_FORMAT, "%s: piece %d has no text or an unknown type %d", model_path, n, type);
                break;
            }
            if (n >= vocab_size) {
                s = ml_fail(ML_ERR_CONFIG, "%s: the tokenizer has more pieces than the model's vocabulary of %d",
                            model_path, vocab_size);
                break;
            }
            s = vocab_set(&v, n++, (const char *)piece, plen, score, type);
        } else if (field == 2 || field == 3) {
            uint32_t outer = field;
            pb e = sub, es;
            while (e.p < e.end) {
                if (pb_next(&e, &field, &wt, &val, &es)) {
                    s = ml_fail(ML_ERR_FORMAT, "%s: %s spec is malformed", model_path, outer == 2 ? "trainer" : "normalizer");
                    break;
                }
                if (wt != 0) continue;
                if (outer == 2 && field == 40) unk = (int)(int32_t)val;
                if (outer == 2 && field == 41) bos = (int)(int32_t)val;
                if (outer == 2 && field == 42) eos = (int)(int32_t)val;
                if (outer == 2 && field == 43) pad = (int)(int32_t)val;
                if (outer == 3 && field == 3) dummy_prefix = val != 0;
            }
        }
    }
    free(data);
    if (s == ML_OK && n == 0) s = ml_fail(ML_ERR_FORMAT, "%s: not a SentencePiece model (no pieces)", model_path);
    for (int i = n; i < vocab_size && s == ML_OK; i++) {
        char piece[32];
        int len = snprintf(piece, sizeof piece, "[PAD%d]", i);
        s = vocab_set(&v, i, piece, (size_t)len, -1000.0f, TOK_UNUSED);
    }
    if (s == ML_OK) {
        int *ids[4] = {&unk, &bos, &eos, &pad};
        for (int k = 0; k < 4; k++)
            if (*ids[k] >= n) *ids[k] = -1;
        s = vocab_write(w, &v, bos, eos, unk, pad, dummy_prefix);
    }
    vocab_free(&v);
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* the model                                                                                   */

/* Row order that turns half-split (rotate_half) heads into adjacent-pair heads:
 * gguf_row[h*D + 2i + j] = hf_row[h*D + j*D/2 + i]. */
static int64_t *rope_row_order(int heads, int D) {
    int64_t *o = malloc(sizeof(int64_t) * (size_t)heads * (size_t)D);
    if (!o) return NULL;
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < D / 2; i++)
            for (int j = 0; j < 2; j++) o[h * D + 2 * i + j] = (int64_t)h * D + j * (D / 2) + i;
    return o;
}

static uint32_t file_type(ml_ggml_type t) {
    switch (t) {
    case ML_GGML_F16: return 1;
    case ML_GGML_Q4_0: return 2;
    case ML_GGML_Q8_0: return 7;
    default: return 0;
    }
}

/* Matrix type: the requested one, unless its blocks do not divide the row (then F16). */
static ml_ggml_type matrix_type(ml_ggml_type t, int64_t row) {
    if ((t == ML_GGML_Q8_0 || t == ML_GGML_Q4_0) && row % ML_QK) return ML_GGML_F16;
    return t;
}

static ml_status add_matrix(ml_gguf_writer *w, const char *name, ml_ggml_type t, int64_t in, int64_t out,
                            const float *data, const int64_t *order) {
    int64_t ne[2] = {in, out};
    return ml_gguf_add_tensor(w, name, matrix_type(t, in), 2, ne, data, order);
}

static ml_status add_vector(ml_gguf_writer *w, const char *name, int64_t n, const float *data) {
    return ml_gguf_add_tensor(w, name, ML_GGML_F32, 1, &n, data, NULL);
}

/* Per-tensor types and sources of a quantized model: lin / emb types, and whether to write the used (dequantized)
 * weights instead of the latent ones. */
typedef struct {
    ml_ggml_type lin, emb;
    int lin_used, emb_used;
} qtypes;

static ml_status quant_types(const ml_model *m, const ml_gguf_export_opts *o, qtypes *q) {
    *q = (qtypes){o->type, o->type, 0, 0};
    if (!m->quant[0]) return ML_OK;
    ml_quant_recipe r;
    ML_TRY(ml_quant_recipe_from_string(&r, m->quant));
    const int lin_block = r.linear.kind == ML_QW_Q4_0 || r.linear.kind == ML_QW_Q8_0;
    const ml_ggml_type want = r.linear.kind == ML_QW_Q4_0 ? ML_GGML_Q4_0 : r.linear.kind == ML_QW_Q8_0 ? ML_GGML_Q8_0 : ML_GGML_F32;
    if (o->type_given && (lin_block ? o->type != want : (o->type == ML_GGML_Q4_0 || o->type == ML_GGML_Q8_0)))
        return ml_fail(ML_ERR_ARG, "the model is quantized (%s): --type %s would re-quantize it; %s", m->quant,
                       ml_ggml_type_name(o->type),
                       lin_block ? "leave --type out (or give the scheme's own type)"
                                 : "its int4 grid has no GGUF twin: export the dequantized weights with --type f32 or f16");
    q->lin = lin_block ? want : (o->type_given ? o->type : ML_GGML_F32);
    q->lin_used = !lin_block;
    q->emb = r.embedding.kind == ML_QW_Q4_0 ? ML_GGML_Q4_0 : r.embedding.kind == ML_QW_Q8_0 ? ML_GGML_Q8_0 : ML_GGML_F32;
    q->emb_used = r.embedding.kind != ML_QW_NONE && q->emb == ML_GGML_F32;
    return ML_OK;
}

static ml_status build(ml_gguf_writer *w, const ml_model *m, const ml_gguf_export_opts *o, int64_t *qo, int64_t *ko) {
    const ml_config *c = &m->cfg;
    qtypes qt;
    ML_TRY(quant_types(m, o, &qt));
    const ml_ggml_type t = qt.lin;
    const ml_tensors *lw = qt.lin_used ? &m->u : &m->w; /* matrices: latent, or dequantized for int4 grids */
    const float *embed = qt.emb_used ? m->u.embed : m->w.embed;
    const int C = c->hidden_size, F = c->intermediate_size, H = c->num_heads, KV = c->num_kv_heads, D = c->head_dim;
    const int n_applied = ml_config_applied_layers(c);

    ML_TRY(ml_gguf_add_str(w, "general.architecture", "llama"));
    ML_TRY(ml_gguf_add_str(w, "general.name", o->name ? o->name : c->name));
    ML_TRY(ml_gguf_add_u32(w, "general.file_type", file_type(t)));
    if (t == ML_GGML_Q8_0 || t == ML_GGML_Q4_0) ML_TRY(ml_gguf_add_u32(w, "general.quantization_version", 2));
    ML_TRY(ml_gguf_add_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size));
    ML_TRY(ml_gguf_add_u32(w, "llama.context_length", (uint32_t)c->max_position_embeddings));
    ML_TRY(ml_gguf_add_u32(w, "llama.embedding_length", (uint32_t)C));
    ML_TRY(ml_gguf_add_u32(w, "llama.block_count", (uint32_t)n_applied));
    ML_TRY(ml_gguf_add_u32(w, "llama.feed_forward_length", (uint32_t)F));
    ML_TRY(ml_gguf_add_u32(w, "llama.attention.head_count", (uint32_t)H));
    ML_TRY(ml_gguf_add_u32(w, "llama.attention.head_count_kv", (uint32_t)KV));
    ML_TRY(ml_gguf_add_u32(w, "llama.attention.key_length", (uint32_t)D));
    ML_TRY(ml_gguf_add_u32(w, "llama.attention.value_length", (uint32_t)D));
    ML_TRY(ml_gguf_add_f32(w, "llama.attention.layer_norm_rms_epsilon", c->rms_norm_eps));
    ML_TRY(ml_gguf_add_f32(w, "llama.rope.freq_base", c->rope_theta));
    ML_TRY(ml_gguf_add_u32(w, "llama.rope.dimension_count", (uint32_t)D));

    if (o->tokenizer && strcasecmp(o->tokenizer, "bytes") != 0) {
        int first = ' '; /* a tokenizer.json starts with '{', a SentencePiece protobuf with 0x0a */
        FILE *f = fopen(o->tokenizer, "rb");
        while (f && (first == ' ' || first == '\n' || first == '\r' || first == '\t')) first = fgetc(f);
        if (f) fclose(f);
        if (first == '{')
            ML_TRY(ml_gguf_add_tokenizer_bpe(w, o->tokenizer, c->vocab_size, c->bos_token_id, c->eos_token_id));
        else
            ML_TRY(ml_gguf_add_tokenizer_spm(w, o->tokenizer, c->vocab_size));
    }
    else
        ML_TRY(ml_gguf_add_tokenizer_bytes(w, c->vocab_size, c->bos_token_id, c->eos_token_id, c->pad_token_id));

    ML_TRY(add_matrix(w, "token_embd.weight", m->quant[0] ? qt.emb : t, C, c->vocab_size, embed, NULL));
    for (int a = 0; a < n_applied; a++) {
        const int l = a / c->layer_repeat; /* block l runs layer_repeat times in a row */
        char name[64];
#define NAME(s) (snprintf(name, sizeof name, "blk.%d.%s", a, s), name)
        ML_TRY(add_vector(w, NAME("attn_norm.weight"), C, m->w.layer[l].attn_norm));
        ML_TRY(add_matrix(w, NAME("attn_q.weight"), t, C, (int64_t)H * D, lw->layer[l].wq, qo));
        ML_TRY(add_matrix(w, NAME("attn_k.weight"), t, C, (int64_t)KV * D, lw->layer[l].wk, ko));
        ML_TRY(add_matrix(w, NAME("attn_v.weight"), t, C, (int64_t)KV * D, lw->layer[l].wv, NULL));
        ML_TRY(add_matrix(w, NAME("attn_output.weight"), t, (int64_t)H * D, C, lw->layer[l].wo, NULL));
        ML_TRY(add_vector(w, NAME("ffn_norm.weight"), C, m->w.layer[l].mlp_norm));
        ML_TRY(add_matrix(w, NAME("ffn_gate.weight"), t, C, F, lw->layer[l].wgate, NULL));
        ML_TRY(add_matrix(w, NAME("ffn_up.weight"), t, C, F, lw->layer[l].wup, NULL));
        ML_TRY(add_matrix(w, NAME("ffn_down.weight"), t, F, C, lw->layer[l].wdown, NULL));
#undef NAME
    }
    ML_TRY(add_vector(w, "output_norm.weight", C, m->w.final_norm));
    if (!c->tie_word_embeddings) ML_TRY(add_matrix(w, "output.weight", t, C, c->vocab_size, lw->lm_head, NULL));
    return ML_OK;
}

ml_status ml_gguf_export(const ml_model *m, const char *path, const ml_gguf_export_opts *o) {
    const ml_config *c = &m->cfg;
    if (o->type != ML_GGML_F32 && o->type != ML_GGML_F16 && o->type != ML_GGML_Q8_0 && o->type != ML_GGML_Q4_0)
        return ml_fail(ML_ERR_ARG, "GGUF export: type %d is not f32, f16, q8_0 or q4_0", (int)o->type);
    ML_TRY(ml_gguf_check_expressible(c));
    int64_t *qo = NULL, *ko = NULL;
    if (c->rope_pairing == ML_ROPE_HALF_SPLIT) {
        qo = rope_row_order(c->num_heads, c->head_dim);
        ko = rope_row_order(c->num_kv_heads, c->head_dim);
        if (!qo || !ko) {
            free(qo);
            free(ko);
            return ml_fail(ML_ERR_NOMEM, "GGUF export: out of memory");
        }
    }
    ml_gguf_writer *w;
    ml_status s = ml_gguf_writer_create(&w);
    if (s == ML_OK) s = build(w, m, o, qo, ko);
    if (s == ML_OK) s = ml_gguf_writer_write(w, path);
    ml_gguf_writer_free(w);
    free(qo);
    free(ko);
    return s;
}
