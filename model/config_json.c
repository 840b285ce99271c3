/* Hugging Face config.json dialects <-> ml_config (see model/config.h).
 *
 * Import follows what transformers would build from the same file: absent fields take the
 * defaults of the matching HF config class, and anything that would make HF compute something
 * our model does not (MoE, RoPE scaling, biases, chunked or temperature-tuned attention, other
 * activations) is refused with ML_ERR_UNSUPPORTED rather than silently approximated.
 * Export writes a file that transformers 5.x loads with its built-in classes (no remote code). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/atomic_file.h"
#include "model/config.h"

typedef struct {
    const cJSON *root;
    const char *where;
} jctx;

/* Record "<where>: <message>" and return code. */
__attribute__((format(printf, 3, 4))) static ml_status jfail(const jctx *j, ml_status code, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ml_fail(code, "%s: %s", j->where, msg);
}

static const char *json_type(const cJSON *it) {
    if (cJSON_IsString(it)) return "a string";
    if (cJSON_IsNumber(it)) return "a number";
    if (cJSON_IsBool(it)) return "a boolean";
    if (cJSON_IsNull(it)) return "null";
    if (cJSON_IsArray(it)) return "an array";
    if (cJSON_IsObject(it)) return "an object";
    return "an invalid value";
}

/* The member `key` of obj, or NULL when absent or JSON null (HF treats both as "use the default"). */
static const cJSON *member(const cJSON *obj, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (it && !cJSON_IsNull(it)) ? it : NULL;
}

static ml_status as_int(const jctx *j, const cJSON *it, const char *name, int *out) {
    if (!cJSON_IsNumber(it))
        return jfail(j, ML_ERR_CONFIG, "field \"%s\" must be an integer, not %s", name, json_type(it));
    double v = it->valuedouble;
    if (!isfinite(v) || v != floor(v) || v < -2147483648.0 || v > 2147483647.0)
        return jfail(j, ML_ERR_CONFIG, "field \"%s\" must be an integer, got %g", name, v);
    *out = (int)v;
    return ML_OK;
}

static ml_status get_int(const jctx *j, const char *key, int required, int def, int *out) {
    const cJSON *it = member(j->root, key);
    if (!it) {
        if (required) return jfail(j, ML_ERR_CONFIG, "missing required field \"%s\"", key);
        *out = def;
        return ML_OK;
    }
    return as_int(j, it, key, out);
}

/* An integer that must be positive when present (0 or less is an error naming the field, never a default). */
static ml_status get_pos_int(const jctx *j, const char *key, int required, int def, int *out) {
    ML_TRY(get_int(j, key, required, def, out));
    if (member(j->root, key) && *out <= 0)
        return jfail(j, ML_ERR_CONFIG, "field \"%s\" must be a positive integer, got %d", key, *out);
    return ML_OK;
}

static ml_status as_float(const jctx *j, const cJSON *it, const char *name, double *out) {
    if (!cJSON_IsNumber(it))
        return jfail(j, ML_ERR_CONFIG, "field \"%s\" must be a number, not %s", name, json_type(it));
    if (!isfinite(it->valuedouble) || fabs(it->valuedouble) > 3.0e38)
        return jfail(j, ML_ERR_CONFIG, "field \"%s\" = %g is out of range", name, it->valuedouble);
    *out = it->valuedouble;
    return ML_OK;
}

static ml_status get_float(const jctx *j, const char *key, double def, float *out) {
    const cJSON *it = member(j->root, key);
    double v = def;
    if (it) ML_TRY(as_float(j, it, key, &v));
    *out = (float)v;
    return ML_OK;
}

static ml_status get_bool(const jctx *j, const char *key, int def, int *out) {
    const cJSON *it = member(j->root, key);
    if (!it) {
        *out = def;
        return ML_OK;
    }
    if (!cJSON_IsBool(it))
        return jfail(j, ML_ERR_CONFIG, "field \"%s\" must be true or false, not %s", key, json_type(it));
    *out = cJSON_IsTrue(it) ? 1 : 0;
    return ML_OK;
}

static ml_status get_string(const jctx *j, const char *key, const char **out) {
    const cJSON *it = member(j->root, key);
    *out = NULL;
    if (!it) return ML_OK;
    if (!cJSON_IsString(it))
        return jfail(j, ML_ERR_CONFIG, "field \"%s\" must be a string, not %s", key, json_type(it));
    *out = it->valuestring;
    return ML_OK;
}

/* Token ids: integer, null (-1), or (HF allows it for eos) a list whose first entry we keep. */
static ml_status get_token(const jctx *j, const char *key, int def, int *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(j->root, key);
    if (!it) {
        *out = def;
        return ML_OK;
    }
    if (cJSON_IsNull(it)) {
        *out = -1;
        return ML_OK;
    }
    if (cJSON_IsArray(it)) {
        const cJSON *first = cJSON_GetArrayItem(it, 0);
        if (!first) {
            *out = -1;
            return ML_OK;
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, it) {
            int tmp;
            ML_TRY(as_int(j, e, key, &tmp));
        }
        return as_int(j, first, key, out);
    }
    return as_int(j, it, key, out);
}

/* ---- RoPE ---------------------------------------------------------------------------------- */

/* One RoPE parameter object ({"rope_type": ..., "rope_theta": ...}); only plain RoPE is implemented. */
static ml_status rope_object(const jctx *j, const cJSON *obj, const char *path, double *theta, int *has_theta) {
    if (!cJSON_IsObject(obj))
        return jfail(j, ML_ERR_CONFIG, "field \"%s\" must be an object, not %s", path, json_type(obj));
    const cJSON *type = member(obj, "rope_type");
    if (!type) type = member(obj, "type"); /* transformers 4.x legacy key */
    if (type) {
        if (!cJSON_IsString(type))
            return jfail(j, ML_ERR_CONFIG, "field \"%s.rope_type\" must be a string, not %s", path, json_type(type));
        if (strcmp(type->valuestring, "default") != 0)
            return jfail(j, ML_ERR_UNSUPPORTED,
                         "%s.rope_type \"%s\" is not supported (only plain RoPE, rope_type \"default\"; "
                         "llama3/linear/dynamic/yarn scaling is not implemented)",
                         path, type->valuestring);
    }
    const cJSON *t = member(obj, "rope_theta");
    if (t) {
        char name[96];
        snprintf(name, sizeof name, "%s.rope_theta", path);
        ML_TRY(as_float(j, t, name, theta));
        *has_theta = 1;
    }
    return ML_OK;
}

static ml_status parse_rope(const jctx *j, double def_theta, float *out) {
    const cJSON *scaling = member(j->root, "rope_scaling");
    double scratch = 0.0;
    int has = 0;
    if (scaling) ML_TRY(rope_object(j, scaling, "rope_scaling", &scratch, &has));

    double theta = 0.0;
    int has_theta = 0;
    const cJSON *params = member(j->root, "rope_parameters");
    if (params) {
        if (!cJSON_IsObject(params))
            return jfail(j, ML_ERR_CONFIG, "field \"rope_parameters\" must be an object, not %s", json_type(params));
        int flat = member(params, "rope_type") || member(params, "rope_theta") || member(params, "type") ||
                   cJSON_GetArraySize(params) == 0;
        if (flat) {
            ML_TRY(rope_object(j, params, "rope_parameters", &theta, &has_theta));
        } else {
            /* transformers 5 may key the parameters by layer type; we need one plain RoPE for all. */
            const cJSON *sub;
            cJSON_ArrayForEach(sub, params) {
                char path[96];
                snprintf(path, sizeof path, "rope_parameters.%s", sub->string);
                double th = 0.0;
                int h = 0;
                ML_TRY(rope_object(j, sub, path, &th, &h));
                if (h && has_theta && (float)th != (float)theta)
                    return jfail(j, ML_ERR_UNSUPPORTED,
                                 "rope_parameters: different rope_theta per layer type (%g vs %g) is not supported",
                                 theta, th);
                if (h) theta = th, has_theta = 1;
            }
        }
    }
    const cJSON *legacy = member(j->root, "rope_theta");
    if (legacy) {
        double lt = 0.0;
        ML_TRY(as_float(j, legacy, "rope_theta", &lt));
        /* transformers 4 reads rope_theta, 5 reads rope_parameters: a file where they differ means
         * different models to different readers, so refuse it. */
        if (has_theta && (float)lt != (float)theta)
            return jfail(j, ML_ERR_CONFIG, "rope_theta (%g) and rope_parameters.rope_theta (%g) disagree", lt, theta);
        theta = lt;
        has_theta = 1;
    }
    *out = (float)(has_theta ? theta : def_theta);
    return ML_OK;
}

/* ---- per-layer lists ------------------------------------------------------------------------ */

static ml_status parse_layer_types(const jctx *j, const cJSON *lt, ml_config *c, int llama4, int chunk_is_full) {
    if (!cJSON_IsArray(lt))
        return jfail(j, ML_ERR_CONFIG, "field \"layer_types\" must be a list, not %s", json_type(lt));
    int n = cJSON_GetArraySize(lt);
    if (n != c->num_layers)
        return jfail(j, ML_ERR_CONFIG, "layer_types has %d entries but num_hidden_layers is %d", n, c->num_layers);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, lt) {
        if (!cJSON_IsString(e))
            return jfail(j, ML_ERR_CONFIG, "layer_types[%d] must be a string, not %s", i, json_type(e));
        const char *s = e->valuestring;
        if (strcmp(s, "full_attention") == 0) {
            c->layer_sliding[i] = 0;
        } else if (!llama4 && strcmp(s, "sliding_attention") == 0) {
            c->layer_sliding[i] = 1;
        } else if (llama4 && strcmp(s, "chunked_attention") == 0) {
            if (!chunk_is_full)
                return jfail(j, ML_ERR_UNSUPPORTED,
                             "layer_types[%d] is \"chunked_attention\" and attention_chunk_size is smaller than "
                             "max_position_embeddings: chunked attention is not implemented",
                             i);
            c->layer_sliding[i] = 0;
        } else {
            return jfail(j, ML_ERR_UNSUPPORTED, "layer_types[%d] = \"%s\" is not supported for model_type %s", i, s,
                         llama4 ? "llama4_text (full_attention or chunked_attention)"
                                : "llama/ministral (full_attention or sliding_attention)");
        }
        i++;
    }
    return ML_OK;
}

/* Llama-4 text fields: dense FFN width, QK-norm, NoPE layers, and refusal of MoE / chunking /
 * temperature tuning, with Llama4TextConfig's defaults for absent fields. */
static ml_status parse_llama4(const jctx *j, ml_config *c) {
    c->rope_pairing = ML_ROPE_ADJACENT;
    const cJSON *mlp = member(j->root, "intermediate_size_mlp");
    if (!mlp)
        return jfail(j, ML_ERR_CONFIG,
                     "missing required field \"intermediate_size_mlp\" (the dense FFN width of llama4_text; "
                     "\"intermediate_size\" is the MoE expert width)");
    ML_TRY(as_int(j, mlp, "intermediate_size_mlp", &c->intermediate_size));
    ML_TRY(get_bool(j, "use_qk_norm", 1, &c->use_qk_norm));

    /* Mixture of experts. An explicit empty moe_layers makes every layer dense, whatever
     * num_local_experts says (transformers' own default config writes 16 experts with moe_layers []);
     * otherwise experts in use, or MoE layers implied by interleave_moe_layer_step, are refused. */
    int experts = 0;
    ML_TRY(get_int(j, "num_local_experts", 0, 0, &experts));
    const cJSON *moe = member(j->root, "moe_layers");
    if (moe) {
        if (!cJSON_IsArray(moe))
            return jfail(j, ML_ERR_CONFIG, "field \"moe_layers\" must be a list, not %s", json_type(moe));
        if (cJSON_GetArraySize(moe) > 0)
            return jfail(j, ML_ERR_UNSUPPORTED,
                         "moe_layers is not empty: mixture-of-experts layers are not supported (dense models only)");
    } else {
        if (experts > 0)
            return jfail(j, ML_ERR_UNSUPPORTED,
                         "num_local_experts = %d: mixture-of-experts layers are not supported (dense models only)",
                         experts);
        int step = 1;
        ML_TRY(get_int(j, "interleave_moe_layer_step", 0, 1, &step));
        if (step > 0 && step <= c->num_layers)
            return jfail(j, ML_ERR_UNSUPPORTED,
                         "moe_layers is absent and interleave_moe_layer_step = %d makes layer %d a "
                         "mixture-of-experts layer (not supported; write \"moe_layers\": [] for a dense model)",
                         step, step - 1);
    }

    /* no_rope_layers: 1 = the layer applies RoPE. Absent/empty: HF puts a NoPE layer every
     * no_rope_layer_interval layers. */
    const cJSON *nr = member(j->root, "no_rope_layers");
    if (nr && !cJSON_IsArray(nr))
        return jfail(j, ML_ERR_CONFIG, "field \"no_rope_layers\" must be a list, not %s", json_type(nr));
    if (nr && cJSON_GetArraySize(nr) > 0) {
        int n = cJSON_GetArraySize(nr);
        if (n < c->num_layers)
            return jfail(j, ML_ERR_CONFIG, "no_rope_layers has %d entries but num_hidden_layers is %d", n,
                         c->num_layers);
        for (int i = 0; i < c->num_layers; i++) {
            const cJSON *e = cJSON_GetArrayItem(nr, i);
            int v;
            if (cJSON_IsBool(e)) {
                v = cJSON_IsTrue(e) ? 1 : 0;
            } else {
                char name[48];
                snprintf(name, sizeof name, "no_rope_layers[%d]", i);
                ML_TRY(as_int(j, e, name, &v));
                if (v != 0 && v != 1)
                    return jfail(j, ML_ERR_CONFIG, "no_rope_layers[%d] must be 0 or 1, got %d", i, v);
            }
            c->layer_rope[i] = (uint8_t)v;
        }
    } else {
        int interval = 4;
        ML_TRY(get_int(j, "no_rope_layer_interval", 0, 4, &interval));
        if (interval <= 0)
            return jfail(j, ML_ERR_CONFIG, "no_rope_layer_interval must be positive, got %d", interval);
        for (int i = 0; i < c->num_layers; i++) c->layer_rope[i] = (uint8_t)((i + 1) % interval != 0);
    }

    /* Temperature tuning scales q on NoPE layers; we do not implement it, so refuse rather than
     * compute a different model. It is harmless when every layer uses RoPE. */
    int tuning = 1;
    const cJSON *tt = member(j->root, "attn_temperature_tuning");
    if (tt) {
        if (cJSON_IsBool(tt)) tuning = cJSON_IsTrue(tt);
        else if (cJSON_IsNumber(tt)) tuning = tt->valuedouble != 0.0; /* older configs wrote a number */
        else
            return jfail(j, ML_ERR_CONFIG, "field \"attn_temperature_tuning\" must be true or false, not %s",
                         json_type(tt));
    }
    for (int i = 0; i < c->num_layers; i++)
        if (!c->layer_rope[i] && tuning)
            return jfail(j, ML_ERR_UNSUPPORTED,
                         "layer %d is a NoPE layer (no_rope_layers) and attn_temperature_tuning is on: attention "
                         "temperature tuning is not implemented (set it to false)",
                         i);

    /* Chunked attention (HF's default layer type for RoPE layers) equals full causal attention only
     * when a chunk covers every position. */
    int chunk = 8192;
    const cJSON *ck = cJSON_GetObjectItemCaseSensitive(j->root, "attention_chunk_size");
    int chunk_is_full;
    if (ck && cJSON_IsNull(ck)) {
        chunk_is_full = 1;
    } else {
        if (ck) ML_TRY(as_int(j, ck, "attention_chunk_size", &chunk));
        chunk_is_full = chunk >= c->max_position_embeddings;
    }
    const cJSON *lt = member(j->root, "layer_types");
    if (lt) {
        ML_TRY(parse_layer_types(j, lt, c, 1, chunk_is_full));
    } else if (!chunk_is_full) {
        for (int i = 0; i < c->num_layers; i++)
            if (c->layer_rope[i])
                return jfail(j, ML_ERR_UNSUPPORTED,
                             "attention_chunk_size = %d is smaller than max_position_embeddings = %d, so layer %d "
                             "uses chunked attention (not implemented; give layer_types full_attention)",
                             chunk, c->max_position_embeddings, i);
    }
    return ML_OK;
}

/* ---- import -------------------------------------------------------------------------------- */

/* A short name for messages: the file name without .json, or the folder name for .../config.json. */
static void derive_name(char *dst, size_t n, const char *where) {
    const char *s = where ? where : "config";
    size_t len = strlen(s);
    while (len > 1 && s[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && s[start - 1] != '/') start--;
    size_t end = len;
    if (end - start > 5 && strncmp(s + end - 5, ".json", 5) == 0) end -= 5;
    if (end - start == 6 && strncmp(s + start, "config", 6) == 0 && start > 1) {
        size_t pend = start - 1, pstart = pend;
        while (pstart > 0 && s[pstart - 1] != '/') pstart--;
        if (pend > pstart) start = pstart, end = pend;
    }
    size_t m = end - start < n - 1 ? end - start : n - 1;
    memcpy(dst, s + start, m);
    dst[m] = 0;
}

static ml_status parse_config(ml_config *c, const jctx *j) {
    const cJSON *root = j->root;
    /* Python's json keeps the last of duplicate keys, cJSON the first: refuse the ambiguity. */
    for (const cJSON *a = root->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && strcmp(a->string, b->string) == 0)
                return jfail(j, ML_ERR_FORMAT, "field \"%s\" appears twice", a->string);

    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!mt || cJSON_IsNull(mt)) return jfail(j, ML_ERR_CONFIG, "missing required field \"model_type\"");
    if (!cJSON_IsString(mt))
        return jfail(j, ML_ERR_CONFIG, "field \"model_type\" must be a string, not %s", json_type(mt));
    const char *type = mt->valuestring;
    /* HF class defaults per dialect: max positions, eps, theta. */
    int def_maxpos;
    double def_eps, def_theta;
    if (strcmp(type, "llama") == 0 || strcmp(type, "mobilellm") == 0) {
        c->dialect = type[0] == 'l' ? ML_DIALECT_LLAMA : ML_DIALECT_MOBILELLM;
        def_maxpos = 2048, def_eps = 1e-6, def_theta = 10000.0;
    } else if (strcmp(type, "llama4_text") == 0) {
        c->dialect = ML_DIALECT_LLAMA4_TEXT;
        def_maxpos = 131072, def_eps = 1e-5, def_theta = 500000.0;
    } else if (strcmp(type, "ministral") == 0) {
        c->dialect = ML_DIALECT_MINISTRAL;
        def_maxpos = 131072, def_eps = 1e-6, def_theta = 10000.0;
    } else {
        return jfail(j, ML_ERR_UNSUPPORTED,
                     "model_type \"%s\" is not supported (supported: llama, mobilellm, llama4_text, ministral)", type);
    }
    const int llama4 = c->dialect == ML_DIALECT_LLAMA4_TEXT;

    ML_TRY(get_pos_int(j, "vocab_size", 1, 0, &c->vocab_size));
    ML_TRY(get_pos_int(j, "hidden_size", 1, 0, &c->hidden_size));
    ML_TRY(get_pos_int(j, "num_hidden_layers", 1, 0, &c->num_layers));
    ML_TRY(get_pos_int(j, "num_attention_heads", 1, 0, &c->num_heads));
    /* Absent (or null): derived by validation as HF does (kv heads = heads, head_dim = C / H); present, they
     * must be positive: 0 is not silently replaced. */
    ML_TRY(get_pos_int(j, "num_key_value_heads", 0, 0, &c->num_kv_heads));
    ML_TRY(get_pos_int(j, "head_dim", 0, 0, &c->head_dim));
    if (!llama4) ML_TRY(get_pos_int(j, "intermediate_size", 1, 0, &c->intermediate_size));
    ML_TRY(get_pos_int(j, "max_position_embeddings", 0, def_maxpos, &c->max_position_embeddings));
    ML_TRY(get_float(j, "rms_norm_eps", def_eps, &c->rms_norm_eps));
    ML_TRY(get_float(j, "initializer_range", 0.02, &c->initializer_range));
    ML_TRY(parse_rope(j, def_theta, &c->rope_theta));
    if (c->num_layers < 1 || c->num_layers > ML_MAX_LAYERS)
        return jfail(j, ML_ERR_CONFIG, "num_hidden_layers = %d is outside 1..%d (ML_MAX_LAYERS)", c->num_layers,
                     ML_MAX_LAYERS);

    const char *act;
    ML_TRY(get_string(j, "hidden_act", &act));
    if (!act) ML_TRY(get_string(j, "hidden_activation", &act));
    if (act && strcmp(act, "silu") != 0)
        return jfail(j, ML_ERR_UNSUPPORTED, "hidden_act \"%s\" is not supported (SwiGLU with silu only)", act);
    int bias = 0;
    ML_TRY(get_bool(j, "attention_bias", 0, &bias));
    if (bias) return jfail(j, ML_ERR_UNSUPPORTED, "attention_bias = true is not supported (bias-free models only)");
    ML_TRY(get_bool(j, "mlp_bias", 0, &bias));
    if (bias) return jfail(j, ML_ERR_UNSUPPORTED, "mlp_bias = true is not supported (bias-free models only)");

    /* Tied head: HF's flag, or MobileLLM's share_embedding (its code never builds an lm_head). */
    int tie = 0, share = 0;
    ML_TRY(get_bool(j, "tie_word_embeddings", 0, &tie));
    ML_TRY(get_bool(j, "share_embedding", 0, &share));
    c->tie_word_embeddings = tie || share;

    /* Block repetition: MobileLLM-LS's layer_sharing (= 2) or our own integer layer_repeat. */
    int sharing = 0;
    ML_TRY(get_bool(j, "layer_sharing", 0, &sharing));
    ML_TRY(get_int(j, "layer_repeat", 0, sharing ? 2 : 1, &c->layer_repeat));
    if (c->layer_repeat < 1)
        return jfail(j, ML_ERR_CONFIG, "layer_repeat must be at least 1, got %d", c->layer_repeat);
    if (sharing && c->layer_repeat < 2)
        return jfail(j, ML_ERR_CONFIG, "layer_sharing is true but layer_repeat is %d", c->layer_repeat);

    ML_TRY(get_token(j, "bos_token_id", 1, &c->bos_token_id));
    ML_TRY(get_token(j, "eos_token_id", 2, &c->eos_token_id));
    ML_TRY(get_token(j, "pad_token_id", -1, &c->pad_token_id));

    for (int i = 0; i < c->num_layers; i++) c->layer_rope[i] = 1;
    c->rope_pairing = ML_ROPE_HALF_SPLIT;
    if (llama4) {
        ML_TRY(parse_llama4(j, c));
    } else {
        /* Per-layer sliding windows (Pro-style): ministral's fields, also accepted in llama configs. */
        const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
        int window = 0;
        if (!sw) {
            window = c->dialect == ML_DIALECT_MINISTRAL ? 4096 : 0; /* MinistralConfig default */
        } else if (!cJSON_IsNull(sw)) {
            ML_TRY(as_int(j, sw, "sliding_window", &window));
            if (window < 0) return jfail(j, ML_ERR_CONFIG, "sliding_window must not be negative, got %d", window);
        }
        c->sliding_window = window;
        const cJSON *lt = member(root, "layer_types");
        if (lt) {
            ML_TRY(parse_layer_types(j, lt, c, 0, 0));
        } else if (c->dialect == ML_DIALECT_MINISTRAL && window > 0) {
            for (int i = 0; i < c->num_layers; i++) c->layer_sliding[i] = 1; /* HF: all sliding */
        }
        for (int i = 0; i < c->num_layers; i++)
            if (c->layer_sliding[i] && window == 0)
                return jfail(j, ML_ERR_CONFIG,
                             "layer_types[%d] is sliding_attention but sliding_window is not set", i);
    }
    derive_name(c->name, sizeof c->name, j->where);
    return ML_OK;
}

ml_status ml_config_from_json(ml_config *c, const char *json_text, const char *where) {
    if (!where) where = "config";
    if (!json_text) return ml_fail(ML_ERR_ARG, "%s: no JSON text", where);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json_text, &end, 1);
    if (!root) {
        const char *err = cJSON_GetErrorPtr();
        size_t off = err && err >= json_text ? (size_t)(err - json_text) : 0;
        int line = 1;
        for (size_t k = 0; k < off && json_text[k]; k++) line += json_text[k] == '\n';
        return ml_fail(ML_ERR_FORMAT, "%s: malformed JSON near line %d (byte %zu)", where, line, off);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ml_fail(ML_ERR_FORMAT, "%s: a config must be a JSON object", where);
    }
    ml_config tmp;
    memset(&tmp, 0, sizeof tmp);
    jctx j = {root, where};
    ml_status st = parse_config(&tmp, &j);
    cJSON_Delete(root);
    if (st != ML_OK) return st;
    st = ml_config_validate(&tmp);
    if (st != ML_OK) return ml_fail_context(st, "%s", where);
    *c = tmp;
    return ML_OK;
}

ml_status ml_config_load(ml_config *c, const char *path) {
    char *text = NULL;
    size_t size = 0;
    struct stat sb;
    /* ml_read_file sizes with ftell, which is meaningless for a directory: check first. */
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return ml_fail(ML_ERR_IO, "%s: not a regular file (a config.json path is expected)", path);
    ML_TRY(ml_read_file(path, &text, &size));
    if (strlen(text) != size) {
        free(text);
        return ml_fail(ML_ERR_FORMAT, "%s: contains a NUL byte (not a JSON text file)", path);
    }
    ml_status st = ml_config_from_json(c, text, path);
    free(text);
    return st;
}

/* ---- export -------------------------------------------------------------------------------- */

/* Shortest decimal that reads back as the same float, always with a '.' or exponent so that
 * Python reads a float (HF's strict config classes type-check these fields). */
static void format_float(char *buf, size_t n, float f) {
    double a = fabs((double)f);
    buf[0] = 0;
    if (a == 0.0 || (a >= 1e-4 && a < 1e16)) {
        for (int p = 1; p <= 17; p++) {
            snprintf(buf, n, "%.*f", p, (double)f);
            if (strtof(buf, NULL) == f) break;
        }
        /* trim trailing zeros but keep one digit after the point */
        size_t len = strlen(buf);
        while (len > 2 && buf[len - 1] == '0' && buf[len - 2] != '.') buf[--len] = 0;
        return;
    }
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, n, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f) return;
    }
}

static int add_float(cJSON *o, const char *key, float f) {
    char buf[64];
    format_float(buf, sizeof buf, f);
    return cJSON_AddRawToObject(o, key, buf) != NULL;
}

static int add_token(cJSON *o, const char *key, int id) {
    return (id < 0 ? cJSON_AddNullToObject(o, key) : cJSON_AddNumberToObject(o, key, id)) != NULL;
}

/* ---- a small pretty printer: 2-space indents, short scalar lists on one line (as HF writes) -- */

typedef struct {
    char *buf;
    size_t len, cap;
    int ok;
} strbuf;

static void sb_put(strbuf *sb, const char *s, size_t n) {
    if (!sb->ok) return;
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 1024;
        while (sb->len + n + 1 > cap) cap *= 2;
        char *nb = realloc(sb->buf, cap);
        if (!nb) {
            sb->ok = 0;
            return;
        }
        sb->buf = nb, sb->cap = cap;
    }
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = 0;
}

static void sb_str(strbuf *sb, const char *s) { sb_put(sb, s, strlen(s)); }

static void sb_indent(strbuf *sb, int depth) {
    for (int i = 0; i < depth; i++) sb_put(sb, "  ", 2);
}

/* A leaf (string, number, bool, null, raw) in compact form. */
static void sb_leaf(strbuf *sb, const cJSON *it) {
    char *t = cJSON_PrintUnformatted((cJSON *)it);
    if (!t) {
        sb->ok = 0;
        return;
    }
    sb_str(sb, t);
    cJSON_free(t);
}

static void sb_value(strbuf *sb, const cJSON *it, int depth) {
    if (cJSON_IsObject(it)) {
        if (!it->child) {
            sb_str(sb, "{}");
            return;
        }
        sb_str(sb, "{\n");
        for (const cJSON *m = it->child; m; m = m->next) {
            sb_indent(sb, depth + 1);
            cJSON *key = cJSON_CreateString(m->string);
            if (!key) {
                sb->ok = 0;
                return;
            }
            sb_leaf(sb, key);
            cJSON_Delete(key);
            sb_str(sb, ": ");
            sb_value(sb, m, depth + 1);
            sb_str(sb, m->next ? ",\n" : "\n");
        }
        sb_indent(sb, depth);
        sb_str(sb, "}");
    } else if (cJSON_IsArray(it)) {
        /* Scalar lists on one line unless long (a 30-layer layer_types list). */
        int scalars = 1;
        size_t width = 0;
        for (const cJSON *e = it->child; e; e = e->next) {
            if (cJSON_IsArray(e) || cJSON_IsObject(e)) scalars = 0;
            width += cJSON_IsString(e) ? strlen(e->valuestring) + 4 : 4;
        }
        int inline_list = scalars && width <= 96;
        sb_str(sb, "[");
        for (const cJSON *e = it->child; e; e = e->next) {
            if (!inline_list) {
                sb_str(sb, "\n");
                sb_indent(sb, depth + 1);
            }
            sb_value(sb, e, depth + 1);
            if (e->next) sb_str(sb, inline_list ? ", " : ",");
        }
        if (!inline_list && it->child) {
            sb_str(sb, "\n");
            sb_indent(sb, depth);
        }
        sb_str(sb, "]");
    } else {
        sb_leaf(sb, it);
    }
}

ml_status ml_config_to_json(const ml_config *c, char **json_text) { return ml_config_to_json_dtype(c, "float32", json_text); }

ml_status ml_config_to_json_dtype(const ml_config *c_in, const char *dtype, char **json_text) {
    *json_text = NULL;
    ml_config c = *c_in;
    ML_TRY(ml_config_validate(&c));
    int any_sliding = 0;
    for (int i = 0; i < c.num_layers; i++) any_sliding |= c.layer_sliding[i];

    /* The HF family to write: llama configs with sliding layers go out as ministral (HF's llama
     * would silently run full attention); the hub's remote-code "mobilellm" goes out as llama. */
    const char *arch, *type;
    ml_dialect out = c.dialect;
    if (out == ML_DIALECT_MOBILELLM) out = ML_DIALECT_LLAMA;
    if (out == ML_DIALECT_LLAMA && any_sliding) out = ML_DIALECT_MINISTRAL;
    switch (out) {
    case ML_DIALECT_LLAMA4_TEXT: arch = "Llama4ForCausalLM", type = "llama4_text"; break;
    case ML_DIALECT_MINISTRAL: arch = "MinistralForCausalLM", type = "ministral"; break;
    default: arch = "LlamaForCausalLM", type = "llama"; break;
    }

    int ok = 1;
    cJSON *o = cJSON_CreateObject();
    if (!o) return ml_fail(ML_ERR_NOMEM, "out of memory writing config JSON");
    cJSON *archs = cJSON_AddArrayToObject(o, "architectures");
    ok &= archs && cJSON_AddItemToArray(archs, cJSON_CreateString(arch));
    ok &= cJSON_AddStringToObject(o, "model_type", type) != NULL;
    ok &= cJSON_AddNumberToObject(o, "vocab_size", c.vocab_size) != NULL;
    ok &= cJSON_AddNumberToObject(o, "hidden_size", c.hidden_size) != NULL;
    /* llama4_text: intermediate_size is the (unused) expert width; keep it equal to the dense one. */
    ok &= cJSON_AddNumberToObject(o, "intermediate_size", c.intermediate_size) != NULL;
    if (out == ML_DIALECT_LLAMA4_TEXT)
        ok &= cJSON_AddNumberToObject(o, "intermediate_size_mlp", c.intermediate_size) != NULL;
    ok &= cJSON_AddNumberToObject(o, "num_hidden_layers", c.num_layers) != NULL;
    ok &= cJSON_AddNumberToObject(o, "num_attention_heads", c.num_heads) != NULL;
    ok &= cJSON_AddNumberToObject(o, "num_key_value_heads", c.num_kv_heads) != NULL;
    ok &= cJSON_AddNumberToObject(o, "head_dim", c.head_dim) != NULL;
    ok &= cJSON_AddStringToObject(o, "hidden_act", "silu") != NULL;
    ok &= cJSON_AddNumberToObject(o, "max_position_embeddings", c.max_position_embeddings) != NULL;
    ok &= add_float(o, "rms_norm_eps", c.rms_norm_eps);
    ok &= add_float(o, "initializer_range", c.initializer_range);
    /* transformers 4 reads rope_theta, 5 reads rope_parameters: write both, equal. */
    ok &= add_float(o, "rope_theta", c.rope_theta);
    cJSON *rp = cJSON_AddObjectToObject(o, "rope_parameters");
    ok &= rp && add_float(rp, "rope_theta", c.rope_theta);
    ok &= rp && cJSON_AddStringToObject(rp, "rope_type", "default") != NULL;
    ok &= cJSON_AddBoolToObject(o, "tie_word_embeddings", c.tie_word_embeddings) != NULL;
    ok &= cJSON_AddFalseToObject(o, "attention_bias") != NULL;
    ok &= cJSON_AddFalseToObject(o, "mlp_bias") != NULL;
    ok &= add_float(o, "attention_dropout", 0.0f);
    ok &= add_token(o, "bos_token_id", c.bos_token_id);
    ok &= add_token(o, "eos_token_id", c.eos_token_id);
    ok &= add_token(o, "pad_token_id", c.pad_token_id);

    if (out == ML_DIALECT_LLAMA4_TEXT) {
        /* Dense Llama-4: an explicit empty moe_layers overrides interleave_moe_layer_step in
         * Llama4TextConfig; step 0 also reads as "no MoE layer" to llama.cpp's converter. Every
         * layer is written full_attention (HF's default would be chunked) and temperature tuning
         * is off (it only acts on NoPE layers, which we run without it). */
        ok &= cJSON_AddBoolToObject(o, "use_qk_norm", c.use_qk_norm) != NULL;
        cJSON *nr = cJSON_AddArrayToObject(o, "no_rope_layers");
        cJSON *lt = cJSON_AddArrayToObject(o, "layer_types");
        ok &= nr && lt;
        for (int i = 0; ok && i < c.num_layers; i++) {
            ok &= cJSON_AddItemToArray(nr, cJSON_CreateNumber(c.layer_rope[i]));
            ok &= cJSON_AddItemToArray(lt, cJSON_CreateString("full_attention"));
        }
        ok &= cJSON_AddFalseToObject(o, "attn_temperature_tuning") != NULL;
        ok &= cJSON_AddNumberToObject(o, "attention_chunk_size", c.max_position_embeddings) != NULL;
        ok &= cJSON_AddNumberToObject(o, "num_local_experts", 0) != NULL;
        ok &= cJSON_AddNumberToObject(o, "num_experts_per_tok", 0) != NULL;
        ok &= cJSON_AddArrayToObject(o, "moe_layers") != NULL;
        ok &= cJSON_AddNumberToObject(o, "interleave_moe_layer_step", 0) != NULL;
    } else if (out == ML_DIALECT_MINISTRAL) {
        cJSON *lt = cJSON_AddArrayToObject(o, "layer_types");
        ok &= lt != NULL;
        for (int i = 0; ok && i < c.num_layers; i++)
            ok &= cJSON_AddItemToArray(
                lt, cJSON_CreateString(c.layer_sliding[i] ? "sliding_attention" : "full_attention"));
        ok &= add_token(o, "sliding_window", c.sliding_window > 0 ? c.sliding_window : -1);
    }
    /* Layer sharing: HF classes cannot express it (an HF export must duplicate the blocks); the
     * fields are informational for HF and exact for our own import. */
    if (out == ML_DIALECT_LLAMA || c.layer_repeat != 1)
        ok &= cJSON_AddBoolToObject(o, "layer_sharing", c.layer_repeat == 2) != NULL;
    if (c.layer_repeat != 1) ok &= cJSON_AddNumberToObject(o, "layer_repeat", c.layer_repeat) != NULL;
    ok &= cJSON_AddStringToObject(o, "torch_dtype", dtype) != NULL;
    ok &= cJSON_AddStringToObject(o, "dtype", dtype) != NULL;
    ok &= cJSON_AddTrueToObject(o, "use_cache") != NULL;

    strbuf sb = {NULL, 0, 0, 1};
    if (ok) {
        sb_value(&sb, o, 0);
        sb_str(&sb, "\n");
    }
    cJSON_Delete(o);
    if (!ok || !sb.ok) {
        free(sb.buf);
        return ml_fail(ML_ERR_NOMEM, "out of memory writing config JSON");
    }
    char *res = sb.buf;
    *json_text = res;
    return ML_OK;
}
