#include "interop/hf_checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/atomic_file.h"

static ml_status write_text_file(const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ml_atomic_file f;
    ML_TRY(ml_atomic_begin(&f, path, 1));
    if (fputs(text, f.fp) < 0 || fputc('\n', f.fp) < 0) {
        ml_atomic_abort(&f);
        return ml_fail(ML_ERR_IO, "cannot write %s", path);
    }
    return ml_atomic_commit(&f);
}

/* The config transformers should see: shared blocks unrolled into distinct layers. */
static void unrolled_config(const ml_config *c, ml_config *out) {
    *out = *c;
    if (c->layer_repeat == 1) return;
    out->num_layers = c->num_layers * c->layer_repeat;
    out->layer_repeat = 1;
    for (int j = 0; j < out->num_layers; j++) {
        out->layer_sliding[j] = c->layer_sliding[j / c->layer_repeat];
        out->layer_rope[j] = c->layer_rope[j / c->layer_repeat];
    }
}

ml_status ml_hf_export(const ml_model *m, const char *dir, ml_st_dtype dtype, uint64_t max_shard_bytes) {
    if (dtype != ML_ST_F32 && dtype != ML_ST_F16 && dtype != ML_ST_BF16)
        return ml_fail(ML_ERR_ARG, "export dtype must be F32, F16 or BF16, not %s", ml_st_dtype_name(dtype));
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ml_fail(ML_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
    const ml_config *c = &m->cfg;
    ml_config hf;
    unrolled_config(c, &hf);
    if (ml_config_validate(&hf) != ML_OK) return ml_fail_context(ML_ERR_CONFIG, "unrolled config");
    char *config_json = NULL;
    const char *dtype_name = dtype == ML_ST_BF16 ? "bfloat16" : dtype == ML_ST_F16 ? "float16" : "float32";
    ML_TRY(ml_config_to_json_dtype(&hf, dtype_name, &config_json));

    ml_safetensors_writer *w = NULL;
    ml_status s = ml_safetensors_writer_new(&w);
    /* names of unrolled layers need storage that outlives the writer calls */
    const int A = ml_config_applied_layers(c);
    char(*names)[96] = calloc((size_t)m->n_params * (size_t)c->layer_repeat + 1, sizeof *names);
    if (s == ML_OK && !names) s = ml_fail(ML_ERR_NOMEM, "out of memory");
    int k = 0;
    for (int i = 0; s == ML_OK && i < m->n_params; i++) {
        const ml_param *p = &m->params[i];
        if (p->kind == ML_P_AUX) continue; /* learned quantization scales etc.: not a transformers tensor */
        /* what the network computes with: the transformed (dequantized) copy when a transform is installed */
        const float *data = m->transforms && m->transforms[i] ? m->used_arena.base + p->offset : ml_param_data(m, p);
        int64_t shape[2] = {p->shape[0], p->shape[1]};
        if (p->layer < 0) {
            s = ml_safetensors_writer_add_f32(w, p->name, dtype, p->ndim, shape, data);
            continue;
        }
        /* "model.layers.<l>.<rest>" -> one copy per application */
        const char *rest = strchr(p->name + strlen("model.layers."), '.');
        for (int r = 0; r < c->layer_repeat && s == ML_OK; r++, k++) {
            int j = p->layer * c->layer_repeat + r;
            snprintf(names[k], sizeof names[k], "model.layers.%d%s", j, rest);
            s = ml_safetensors_writer_add_f32(w, names[k], dtype, p->ndim, shape, data);
        }
    }
    (void)A;
    if (s == ML_OK) {
        if (max_shard_bytes == 0) {
            char path[4096];
            snprintf(path, sizeof path, "%s/model.safetensors", dir);
            s = ml_safetensors_writer_write(w, path);
        } else {
            s = ml_safetensors_writer_write_sharded(w, dir, max_shard_bytes, NULL);
        }
    }
    if (s == ML_OK) s = write_text_file(dir, "config.json", config_json);
    if (s == ML_OK) {
        char gen[512];
        int n = snprintf(gen, sizeof gen, "{\n  \"_from_model_config\": true");
        if (c->bos_token_id >= 0) n += snprintf(gen + n, sizeof gen - n, ",\n  \"bos_token_id\": %d", c->bos_token_id);
        if (c->eos_token_id >= 0) n += snprintf(gen + n, sizeof gen - n, ",\n  \"eos_token_id\": %d", c->eos_token_id);
        if (c->pad_token_id >= 0) n += snprintf(gen + n, sizeof gen - n, ",\n  \"pad_token_id\": %d", c->pad_token_id);
        snprintf(gen + n, sizeof gen - n, "\n}");
        s = write_text_file(dir, "generation_config.json", gen);
    }
    free(names);
    free(config_json);
    ml_safetensors_writer_free(w);
    return s;
}

/* Tensors an HF checkpoint may carry that the model does not need. */
static int ignorable(const char *name) {
    size_t n = strlen(name);
    return n >= 20 && !strcmp(name + n - 20, "rotary_emb.inv_freq");
}

ml_status ml_hf_import(ml_model *m, const char *dir, ml_st_dtype *source_dtype) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    ml_config cfg;
    ML_TRY(ml_config_load(&cfg, path));
    ml_st_dir *d = NULL;
    ML_TRY(ml_safetensors_dir_open(&d, dir));
    ml_status s = ml_model_create(m, &cfg);
    if (s != ML_OK) {
        ml_safetensors_dir_close(d);
        return s;
    }
    int dtype = -1;
    for (int i = 0; s == ML_OK && i < m->n_params; i++) {
        const ml_param *p = &m->params[i];
        const ml_st_tensor *t = ml_safetensors_dir_find(d, p->name, NULL);
        if (!t) {
            s = ml_fail(ML_ERR_FORMAT, "%s: tensor %s is missing", dir, p->name);
            break;
        }
        int ok = t->ndim == p->ndim && t->shape[0] == p->shape[0] && (p->ndim == 1 || t->shape[1] == p->shape[1]);
        if (!ok) {
            s = ml_fail(ML_ERR_FORMAT, "%s: tensor %s has shape [%lld%s%lld] but the config needs [%lld, %lld]", dir,
                        p->name, (long long)t->shape[0], t->ndim > 1 ? ", " : "", t->ndim > 1 ? (long long)t->shape[1] : 0LL,
                        (long long)p->shape[0], (long long)p->shape[1]);
            break;
        }
        if (dtype < 0) dtype = (int)t->dtype;
        s = ml_safetensors_dir_read_f32(d, p->name, ml_param_data(m, p), p->numel);
    }
    /* Tensors the config does not explain are an error, except a tied model's stored lm_head
     * (some writers keep it) when it equals the embedding, and RoPE buffers. */
    for (size_t i = 0; s == ML_OK && i < ml_safetensors_dir_count(d); i++) {
        const ml_st_tensor *t = ml_safetensors_dir_tensor(d, i);
        if (ml_model_find_param(m, t->name) || ignorable(t->name)) continue;
        if (!strcmp(t->name, "lm_head.weight") && m->cfg.tie_word_embeddings) {
            const ml_param *e = ml_model_find_param(m, "model.embed_tokens.weight");
            float *tmp = malloc(e->numel * sizeof(float));
            if (!tmp) {
                s = ml_fail(ML_ERR_NOMEM, "out of memory");
                break;
            }
            if (t->numel != e->numel)
                s = ml_fail(ML_ERR_FORMAT, "%s: lm_head.weight does not match the tied embedding's shape", dir);
            else
                s = ml_safetensors_dir_read_f32(d, t->name, tmp, e->numel);
            if (s == ML_OK && memcmp(tmp, ml_param_data(m, e), e->numel * sizeof(float)) != 0)
                s = ml_fail(ML_ERR_FORMAT,
                            "%s: config ties the embeddings but lm_head.weight differs from model.embed_tokens.weight",
                            dir);
            free(tmp);
            continue;
        }
        s = ml_fail(ML_ERR_FORMAT, "%s: unexpected tensor %s (not part of this %s model)", dir, t->name, m->cfg.name);
    }
    ml_safetensors_dir_close(d);
    if (s != ML_OK) {
        ml_model_free(m);
        return s;
    }
    if (source_dtype) *source_dtype = dtype < 0 ? ML_ST_F32 : (ml_st_dtype)dtype;
    snprintf(m->source_dtype, sizeof m->source_dtype, "%s", ml_st_dtype_name(dtype < 0 ? ML_ST_F32 : (ml_st_dtype)dtype));
    return ML_OK;
}
