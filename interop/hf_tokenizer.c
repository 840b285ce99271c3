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
        s = write_file(dir, "tokenizer.model", data, n);
        if (s == ML_OK) s = write_config(dir, "LlamaTokenizer", t, b ? bos : NULL, e ? eos : NULL, unk, 1, max_len);
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
