#include "data/tokenizer_hf.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/bpe.h"
#include "data/shard.h"

int ml_hf_json_detect(const char *data, size_t n) {
    size_t i = 0;
    while (i < n && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t')) i++;
    if (i >= n || data[i] != '{') return 0;
    size_t lim = n < (1u << 20) ? n : (1u << 20);
    return memmem(data, lim, "\"model\"", 7) != NULL || memmem(data, n, "\"model\"", 7) != NULL;
}

#define UNSUP(...) ml_fail(ML_ERR_UNSUPPORTED, "unsupported tokenizer.json " __VA_ARGS__)

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jtrue(const cJSON *o, const char *k, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) return dflt;
    return cJSON_IsTrue(v);
}

static int jnonempty(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !v->valuestring[0]) &&
           !(cJSON_IsNumber(v) && v->valuedouble == 0);
}

static int jid(const cJSON *v, uint32_t *id) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= (1u << 30) || v->valuedouble != floor(v->valuedouble))
        return 0;
    *id = (uint32_t)v->valuedouble;
    return 1;
}

/* Pre-tokenizer: fills the pattern (borrowed from the JSON or a constant), keep_gaps and add_prefix_space. */
static ml_status read_pretok(const char *path, const cJSON *pt, const char **pattern, int *prefix) {
    const char *ty = pt ? jstr(pt, "type") : NULL;
    if (!ty) return UNSUP("%s: no pre_tokenizer (only byte-level BPE is supported)", path);
    if (!strcmp(ty, "Metaspace")) return UNSUP("%s: SentencePiece-style BPE (Metaspace pre-tokenizer)", path);
    if (!strcmp(ty, "ByteLevel")) {
        if (!jtrue(pt, "use_regex", 1)) return UNSUP("%s: ByteLevel pre-tokenizer without a regex", path);
        *pattern = ML_PAT_GPT2;
        *prefix = jtrue(pt, "add_prefix_space", 0);
        return ML_OK;
    }
    if (strcmp(ty, "Sequence")) return UNSUP("%s: pre_tokenizer type %s", path, ty);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
    int n = cJSON_GetArraySize(list);
    if (!cJSON_IsArray(list) || n != 2)
        return UNSUP("%s: pre_tokenizer Sequence must be [Split, ByteLevel], has %d entries", path, n);
    const cJSON *sp = cJSON_GetArrayItem(list, 0), *bl = cJSON_GetArrayItem(list, 1);
    const char *t0 = jstr(sp, "type"), *t1 = jstr(bl, "type");
    if (!t0 || strcmp(t0, "Split") || !t1 || strcmp(t1, "ByteLevel"))
        return UNSUP("%s: pre_tokenizer Sequence must be [Split, ByteLevel], is [%s, %s]", path, t0 ? t0 : "?",
                     t1 ? t1 : "?");
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(sp, "pattern");
    const char *re = pat ? jstr(pat, "Regex") : NULL;
    const char *beh = jstr(sp, "behavior");
    if (!re) return UNSUP("%s: Split pre-tokenizer without a Regex pattern", path);
    if (!beh || strcmp(beh, "Isolated") || jtrue(sp, "invert", 0))
        return UNSUP("%s: Split behavior %s (only Isolated, not inverted)", path, beh ? beh : "?");
    if (jtrue(bl, "use_regex", 1)) return UNSUP("%s: ByteLevel with use_regex after a Split", path);
    *pattern = re;
    *prefix = jtrue(bl, "add_prefix_space", 0);
    return ML_OK;
}

static const char *const bos_names[] = {"<|begin_of_text|>", "<s>", "<|startoftext|>", "<|bos|>", NULL};
static const char *const eos_names[] = {"<|end_of_text|>", "</s>", "<|endoftext|>", "<|eos|>", NULL};
static const char *const pad_names[] = {"<|finetune_right_pad_id|>", "<pad>", "<|pad|>", "<|finetune_right_pad|>", NULL};

static const char *first_special(const ml_bpe *b, const char *const *names) {
    for (; *names; names++)
        for (uint32_t i = 0; i < ml_bpe_n_ids(b); i++) {
            const char *s = ml_bpe_special_name(b, i);
            if (s && !strcmp(s, *names)) return *names;
        }
    return NULL;
}

/* The id of a byte-level vocabulary string (via the BPE hash, not cJSON's linear lookup). */
static int64_t str_id(const ml_bpe *b, const char *str) {
    uint8_t stackbuf[512];
    size_t l = strlen(str);
    uint8_t *buf = l <= sizeof stackbuf ? stackbuf : malloc(l);
    if (!buf) return -1;
    long m = ml_bytelevel_decode(str, l, buf);
    int64_t id = m > 0 ? ml_bpe_lookup(b, buf, (size_t)m) : -1;
    if (buf != stackbuf) free(buf);
    return id;
}

static ml_status load(const char *path, const cJSON *root, ml_bpe **out, ml_bpe_tok_spec *spec) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return ml_fail(ML_ERR_FORMAT, "tokenizer.json %s: no \"model\" object", path);
    const char *mt = jstr(model, "type");
    if (mt && strcmp(mt, "BPE")) return UNSUP("%s: model type %s (only BPE)", path, mt);
    if (jtrue(model, "byte_fallback", 0))
        return UNSUP("%s: SentencePiece-style BPE (byte_fallback); only byte-level BPE is supported", path);
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm)) return UNSUP("%s: a normalizer (%s)", path, jstr(norm, "type") ? jstr(norm, "type") : "?");
    if (jnonempty(model, "continuing_subword_prefix") || jnonempty(model, "end_of_word_suffix"))
        return UNSUP("%s: continuing_subword_prefix / end_of_word_suffix", path);
    if (jnonempty(model, "dropout")) return UNSUP("%s: BPE dropout", path);
    ML_TRY(read_pretok(path, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), &spec->pattern,
                       &spec->add_prefix_space));
    spec->keep_gaps = 1;
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(vocab)) return ml_fail(ML_ERR_FORMAT, "tokenizer.json %s: model.vocab is not an object", path);
    if (merges && !cJSON_IsArray(merges)) return ml_fail(ML_ERR_FORMAT, "tokenizer.json %s: model.merges is not a list", path);
    uint32_t n_ids = 0, id = 0, n_entries = 0, max_entry = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!jid(e, &id)) return ml_fail(ML_ERR_FORMAT, "tokenizer.json %s: vocab entry %s has a bad id", path, e->string);
        if (id + 1 > n_ids) n_ids = id + 1, max_entry = n_entries;
        n_entries++;
    }
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return ml_fail(ML_ERR_FORMAT, "tokenizer.json %s: added_tokens is not a list", path);
    cJSON_ArrayForEach(e, added) {
        if (!jid(cJSON_GetObjectItemCaseSensitive(e, "id"), &id) || !jstr(e, "content"))
            return ml_fail(ML_ERR_FORMAT, "tokenizer.json %s: an added_tokens entry lacks id or content", path);
        if (id + 1 > n_ids) n_ids = id + 1, max_entry = n_entries;
        n_entries++;
    }
    /* Tables are sized by the largest id: ids must be (nearly) dense. Added tokens may repeat vocabulary
     * entries, so the entries bound the ids from above; a larger id is a corrupt file, not a reason to
     * allocate gigabytes. */
    if (n_ids > n_entries)
        return ml_fail(ML_ERR_FORMAT,
                       "tokenizer.json %s: id %u (entry %u) is past the %u vocabulary and added entries (ids must be dense)",
                       path, n_ids - 1, max_entry, n_entries);
    ml_bpe *b = NULL;
    ML_TRY(ml_bpe_new(&b, n_ids));
    ml_status s = ML_OK;
    uint8_t *buf = NULL;
    size_t bufcap = 0;
    cJSON_ArrayForEach(e, vocab) {
        size_t l = strlen(e->string);
        if (l + 1 > bufcap && !(buf = realloc(buf, bufcap = 2 * l + 64))) {
            s = ml_fail(ML_ERR_NOMEM, "out of memory");
            break;
        }
        long m = ml_bytelevel_decode(e->string, l, buf);
        if (m <= 0) {
            s = UNSUP("%s: vocab entry \"%s\" is not a byte-level token", path, e->string);
            break;
        }
        jid(e, &id);
        if ((s = ml_bpe_set_token(b, id, buf, (size_t)m)) != ML_OK) {
            s = ml_fail_context(s, "tokenizer.json %s: vocab entry \"%s\"", path, e->string);
            break;
        }
    }
    free(buf);
    cJSON_ArrayForEach(e, added) {
        if (s != ML_OK) break;
        jid(cJSON_GetObjectItemCaseSensitive(e, "id"), &id);
        size_t l;
        if (ml_bpe_token(b, id, &l)) continue; /* already a vocabulary token (R1 lists one such) */
        if (ml_bpe_special_name(b, id)) {
            s = ml_fail(ML_ERR_FORMAT, "tokenizer.json %s: added token id %u listed twice", path, id);
            break;
        }
        s = ml_bpe_set_special(b, id, jstr(e, "content"));
    }
    /* merges: "a b" or ["a", "b"]; rank = position */
    uint32_t rank = 0;
    cJSON_ArrayForEach(e, merges) {
        if (s != ML_OK) break;
        const char *a = NULL, *c = NULL;
        char *tmp = NULL;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (sp && (tmp = strdup(e->valuestring))) {
                tmp[sp - e->valuestring] = 0;
                a = tmp;
                c = tmp + (sp - e->valuestring) + 1;
            }
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2) {
            a = cJSON_IsString(cJSON_GetArrayItem(e, 0)) ? cJSON_GetArrayItem(e, 0)->valuestring : NULL;
            c = cJSON_IsString(cJSON_GetArrayItem(e, 1)) ? cJSON_GetArrayItem(e, 1)->valuestring : NULL;
        }
        int64_t x = a ? str_id(b, a) : -1, y = c ? str_id(b, c) : -1;
        if (x < 0 || y < 0)
            s = ml_fail(ML_ERR_FORMAT, "tokenizer.json %s: merge %u is not a pair of vocabulary tokens", path, rank);
        else if ((s = ml_bpe_add_merge(b, (uint32_t)x, (uint32_t)y, rank)) != ML_OK)
            s = ml_fail_context(s, "tokenizer.json %s", path);
        free(tmp);
        rank++;
    }
    if (s == ML_OK) s = ml_bpe_finish(b, jtrue(model, "ignore_merges", 0));
    if (s != ML_OK) {
        if (s == ML_ERR_UNSUPPORTED && !strstr(ml_last_error(), "unsupported"))
            ml_fail_context(s, "unsupported tokenizer.json %s", path);
        ml_bpe_free(b);
        return s;
    }
    spec->bos = first_special(b, bos_names);
    spec->eos = first_special(b, eos_names);
    spec->pad = first_special(b, pad_names);
    *out = b;
    return ML_OK;
}

ml_status ml_tokenizer_hf_new(ml_tokenizer **out, const char *path, const char *data, size_t n) {
    *out = NULL;
    cJSON *root = cJSON_ParseWithLength(data, n);
    if (!root) return ml_fail(ML_ERR_FORMAT, "tokenizer.json %s: not valid JSON (near byte %zu)", path,
                              cJSON_GetErrorPtr() ? (size_t)(cJSON_GetErrorPtr() - data) : (size_t)0);
    ml_bpe_tok_spec spec = {0};
    ml_bpe *b = NULL;
    ml_status s = load(path, root, &b, &spec);
    char fp[64];
    snprintf(fp, sizeof fp, "hf-bpe-%016llx", (unsigned long long)ml_fnv1a64(ML_FNV1A64_INIT, data, n));
    spec.fingerprint = fp;
    char *pattern = NULL;
    if (s == ML_OK && !(pattern = strdup(spec.pattern))) s = ml_fail(ML_ERR_NOMEM, "out of memory");
    cJSON_Delete(root); /* spec.pattern may point into it: use the copy */
    spec.pattern = pattern;
    if (s == ML_OK) s = ml_bpe_tokenizer_wrap(out, b, &spec);
    else ml_bpe_free(b);
    free(pattern);
    return s;
}
