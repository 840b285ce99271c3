#include "model/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/atomic_file.h"

#include "formats/h5.h"

#define ML_CKPT_FORMAT "mobilellm-checkpoint"
#define ML_CKPT_VERSION 1

void ml_train_state_free(ml_train_state *st) {
    if (!st) return;
    free(st->args_json);
    free(st->mixture);
    if (st->owns_optim_state)
        for (int i = 0; i < st->n_optim_state; i++) free(st->optim_state[i]);
    memset(st, 0, sizeof *st);
}

static ml_status write_tensors(ml_h5 *f, const ml_model *m, const char *group, const float *base) {
    char path[256];
    for (int i = 0; i < m->n_params; i++) {
        const ml_param *p = &m->params[i];
        snprintf(path, sizeof path, "%s/%s", group, p->name);
        ML_TRY(ml_h5_write_f32(f, path, p->ndim, p->shape, base + p->offset, NULL));
    }
    return ML_OK;
}

/* The auxiliary parameters (ML_P_AUX, e.g. learned quantization scales) are listed by name in the root
 * attribute aux_params, so loading finds them without iterating a group's links: libhdf5 1.10 frees
 * uninitialised memory when it iterates the dense link storage of some crafted files (found by
 * tests/fuzz/fuzz_checkpoint.c), and a named lookup does not take that path. */
static ml_status write_aux_names(ml_h5 *f, const ml_model *m) {
    size_t len = 1;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].kind == ML_P_AUX) len += strlen(m->params[i].name) + 1;
    if (len == 1) return ML_OK;
    char *list = calloc(len, 1);
    if (!list) return ml_fail(ML_ERR_NOMEM, "out of memory for the auxiliary parameter list");
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].kind == ML_P_AUX) {
            if (list[0]) strcat(list, ",");
            strcat(list, m->params[i].name);
        }
    ml_status s = ml_h5_set_attr_str(f, "/", "aux_params", list);
    free(list);
    return s;
}

static ml_status write_all(ml_h5 *f, const ml_model *m, const ml_train_state *st) {
    char *config_json = NULL;
    ML_TRY(ml_config_to_json(&m->cfg, &config_json));
    ml_status s = ml_h5_set_attr_str(f, "/", "format", ML_CKPT_FORMAT);
    if (s == ML_OK) s = ml_h5_set_attr_i64(f, "/", "version", ML_CKPT_VERSION);
    if (s == ML_OK) s = ml_h5_set_attr_str(f, "/", "config_json", config_json);
    free(config_json);
    if (s == ML_OK) s = ml_h5_set_attr_str(f, "/", "model_name", m->cfg.name);
    if (s == ML_OK) s = ml_h5_set_attr_i64(f, "/", "layer_repeat", m->cfg.layer_repeat);
    if (s == ML_OK && m->source_dtype[0]) s = ml_h5_set_attr_str(f, "/", "source_dtype", m->source_dtype);
    if (s == ML_OK && m->quant[0]) s = ml_h5_set_attr_str(f, "/", "quant", m->quant);
    if (s == ML_OK) s = write_aux_names(f, m);
    if (s == ML_OK) s = write_tensors(f, m, "params", m->param_arena.base);
    if (s != ML_OK || !st) return s;
    ML_TRY(ml_h5_set_attr_i64(f, "/", "step", st->step));
    ML_TRY(ml_h5_set_attr_i64(f, "/", "tokens_seen", st->tokens_seen));
    if (st->args_json) ML_TRY(ml_h5_set_attr_str(f, "/", "args_json", st->args_json));
    int64_t four = 4, nc = ML_CURSOR_WORDS;
    ML_TRY(ml_h5_write_u64(f, "state/rng", 1, &four, st->rng.s));
    ML_TRY(ml_h5_write_i64(f, "state/cursor", 1, &nc, st->cursor));
    if (st->n_mixture > 0) ML_TRY(ml_h5_write_i64(f, "state/mixture", 1, &st->n_mixture, st->mixture));
    if (st->optimizer[0]) {
        ML_TRY(ml_h5_set_attr_str(f, "/", "optimizer", st->optimizer));
        ML_TRY(ml_h5_set_attr_i64(f, "/", "optimizer_step", st->optimizer_step));
        char list[ML_CKPT_MAX_OPTIM_STATE * 33] = "";
        for (int i = 0; i < st->n_optim_state; i++) {
            size_t k = strlen(list);
            snprintf(list + k, sizeof list - k, "%s%s", i ? "," : "", st->optim_state_name[i]);
        }
        ML_TRY(ml_h5_set_attr_str(f, "/", "optimizer_state", list));
        for (int i = 0; i < st->n_optim_state; i++) {
            char group[64];
            snprintf(group, sizeof group, "optim/%s", st->optim_state_name[i]);
            ML_TRY(write_tensors(f, m, group, st->optim_state[i]));
        }
    }
    return ML_OK;
}

ml_status ml_checkpoint_save(const char *path, const ml_model *m, const ml_train_state *st) {
    ml_atomic_file af;
    ML_TRY(ml_atomic_begin(&af, path, 0));
    ml_h5 *f = NULL;
    ml_status s = ml_h5_create(&f, af.tmp_path);
    if (s == ML_OK) s = write_all(f, m, st);
    ml_status c = ml_h5_close(f);
    if (s == ML_OK) s = c;
    if (s != ML_OK) {
        ml_atomic_abort(&af);
        return ml_fail_context(s, "writing checkpoint %s", path);
    }
    return ml_atomic_commit(&af);
}

static ml_status open_checked(ml_h5 **f, const char *path) {
    /* Every checkpoint is written with formats/h5.c's checksum block: an HDF5 file without a valid one is
     * not a checkpoint, or one whose block was damaged. Either way HDF5 never parses it. */
    ml_status s = ml_h5_open_ours(f, path);
    if (s != ML_OK && strstr(ml_last_error(), "no mobilellm.c checksum block"))
        return ml_fail(ML_ERR_FORMAT, "%s is not a mobilellm checkpoint, or a damaged one (no mobilellm.c checksum block)",
                       path);
    if (s != ML_OK) return s;
    char *format = NULL;
    s = ml_h5_has_attr(*f, "/", "format") ? ml_h5_get_attr_str(*f, "/", "format", &format) : ML_ERR_FORMAT;
    if (s != ML_OK && format == NULL && ml_h5_has_attr(*f, "/", "format")) {
        ml_h5_close(*f); /* the attribute is there but unreadable (e.g. a damaged global heap): say why */
        *f = NULL;
        return s;
    }
    if (s != ML_OK || strcmp(format, ML_CKPT_FORMAT) != 0) {
        free(format);
        ml_h5_close(*f);
        *f = NULL;
        return ml_fail(ML_ERR_FORMAT, "%s is not a mobilellm checkpoint (no format attribute)", path);
    }
    free(format);
    int64_t version = 0;
    s = ml_h5_get_attr_i64(*f, "/", "version", &version);
    if (s == ML_OK && version != ML_CKPT_VERSION)
        s = ml_fail(ML_ERR_UNSUPPORTED, "%s: checkpoint version %lld, this build reads version %d", path,
                    (long long)version, ML_CKPT_VERSION);
    if (s != ML_OK) {
        ml_h5_close(*f);
        *f = NULL;
    }
    return s;
}

static ml_status read_config(ml_h5 *f, const char *path, ml_config *c) {
    char *json = NULL, *name = NULL;
    ML_TRY(ml_h5_get_attr_str(f, "/", "config_json", &json));
    ml_status s = ml_config_from_json(c, json, path);
    free(json);
    if (s == ML_OK && ml_h5_has_attr(f, "/", "model_name") && ml_h5_get_attr_str(f, "/", "model_name", &name) == ML_OK) {
        snprintf(c->name, sizeof c->name, "%s", name);
        free(name);
    }
    return s;
}

ml_status ml_checkpoint_read_config(const char *path, ml_config *c) {
    ml_h5 *f;
    ML_TRY(open_checked(&f, path));
    ml_status s = read_config(f, path, c);
    ml_h5_close(f);
    return s;
}

ml_status ml_checkpoint_read_args(const char *path, char **args_json) {
    ml_h5 *f;
    *args_json = NULL;
    ML_TRY(open_checked(&f, path));
    ml_status s = ML_OK;
    if (ml_h5_has_attr(f, "/", "args_json")) s = ml_h5_get_attr_str(f, "/", "args_json", args_json);
    ml_h5_close(f);
    return s;
}

static ml_status read_tensors(ml_h5 *f, const ml_model *m, const char *group, float *base) {
    char path[256];
    for (int i = 0; i < m->n_params; i++) {
        const ml_param *p = &m->params[i];
        snprintf(path, sizeof path, "%s/%s", group, p->name);
        ML_TRY(ml_h5_read_f32(f, path, p->ndim, p->shape, base + p->offset));
    }
    return ML_OK;
}

/* The optimizer's state groups: those the optimizer_state attribute lists, or (checkpoints from
 * before it) whichever of the three groups AdamW and SGD write are present. */
static ml_status read_optim_state(ml_h5 *f, const char *path, const ml_model *m, ml_train_state *st) {
    static const char *const legacy[] = {"exp_avg", "exp_avg_sq", "momentum_buffer"};
    char names[ML_CKPT_MAX_OPTIM_STATE][32];
    int n = 0;
    if (ml_h5_has_attr(f, "/", "optimizer_state")) {
        char *list = NULL;
        ML_TRY(ml_h5_get_attr_str(f, "/", "optimizer_state", &list));
        for (char *p = list, *e; *p; p = *e ? e + 1 : e) {
            e = strchr(p, ',');
            if (!e) e = p + strlen(p);
            size_t len = (size_t)(e - p);
            if (n == ML_CKPT_MAX_OPTIM_STATE || len == 0 || len >= sizeof names[0]) {
                free(list);
                return ml_fail(ML_ERR_FORMAT, "%s: optimizer_state lists more than %d groups or a bad name",
                               path, ML_CKPT_MAX_OPTIM_STATE);
            }
            memcpy(names[n], p, len);
            names[n++][len] = 0;
        }
        free(list);
    } else {
        for (int k = 0; k < 3; k++) {
            char group[64];
            snprintf(group, sizeof group, "optim/%s", legacy[k]);
            if (ml_h5_exists(f, group)) snprintf(names[n++], sizeof names[0], "%s", legacy[k]);
        }
    }
    st->owns_optim_state = 1;
    for (int k = 0; k < n; k++) {
        char group[64];
        snprintf(group, sizeof group, "optim/%s", names[k]);
        if (!ml_h5_exists(f, group))
            return ml_fail(ML_ERR_FORMAT, "%s lists optimizer state '%s' but holds no /%s", path, names[k], group);
        float *buf = ml_aligned_calloc(m->param_arena.capacity * sizeof(float));
        if (!buf) return ml_fail(ML_ERR_NOMEM, "out of memory for optimizer state");
        st->optim_state[st->n_optim_state] = buf;
        snprintf(st->optim_state_name[st->n_optim_state], sizeof st->optim_state_name[0], "%s", names[k]);
        st->n_optim_state++;
        ML_TRY(read_tensors(f, m, group, buf));
    }
    return ML_OK;
}

/* The auxiliary parameters the checkpoint lists (write_aux_names) are registered before the weights are read. */
static ml_status add_aux_params(ml_h5 *f, ml_model *m) {
    if (!ml_h5_has_attr(f, "/", "aux_params")) return ML_OK;
    char *list = NULL;
    ML_TRY(ml_h5_get_attr_str(f, "/", "aux_params", &list));
    ml_status s = ML_OK;
    for (char *p = list, *e; s == ML_OK && *p; p = *e ? e + 1 : e) {
        e = strchr(p, ',');
        if (!e) e = p + strlen(p);
        char name[sizeof m->params[0].name], path[256];
        const size_t n = (size_t)(e - p);
        if (n == 0 || n >= sizeof name) {
            s = ml_fail(ML_ERR_FORMAT, "aux_params lists an empty or too long name");
            break;
        }
        memcpy(name, p, n);
        name[n] = 0;
        if (ml_model_find_param(m, name)) {
            s = ml_fail(ML_ERR_FORMAT, "aux_params lists %s, which is a parameter of the network", name);
            break;
        }
        snprintf(path, sizeof path, "params/%s", name);
        int nd;
        int64_t shape[ML_H5_MAX_DIMS];
        ml_h5_dtype dt;
        s = ml_h5_dataset_info(f, path, &nd, shape, &dt);
        if (s == ML_OK && (nd < 1 || nd > 2 || dt != ML_H5_F32))
            s = ml_fail(ML_ERR_FORMAT, "%s is not a float32 tensor of 1 or 2 dimensions", path);
        if (s == ML_OK) s = ml_model_add_aux_param(m, name, nd, shape, 0, NULL);
    }
    free(list);
    return s;
}

static ml_status load_all(ml_h5 *f, const char *path, ml_model *m, ml_train_state *st) {
    ml_config cfg;
    ML_TRY(read_config(f, path, &cfg));
    ML_TRY(ml_model_create(m, &cfg));
    if (ml_h5_has_attr(f, "/", "source_dtype")) {
        char *dt = NULL;
        ML_TRY(ml_h5_get_attr_str(f, "/", "source_dtype", &dt));
        snprintf(m->source_dtype, sizeof m->source_dtype, "%s", dt);
        free(dt);
    }
    if (ml_h5_has_attr(f, "/", "quant")) {
        char *q = NULL;
        ML_TRY(ml_h5_get_attr_str(f, "/", "quant", &q));
        snprintf(m->quant, sizeof m->quant, "%s", q);
        free(q);
    }
    ML_TRY(add_aux_params(f, m));
    ML_TRY(read_tensors(f, m, "params", m->param_arena.base));
    if (!st) return ML_OK;
    memset(st, 0, sizeof *st);
    ml_rng_seed(&st->rng, 1);
    if (ml_h5_has_attr(f, "/", "step")) ML_TRY(ml_h5_get_attr_i64(f, "/", "step", &st->step));
    if (ml_h5_has_attr(f, "/", "tokens_seen")) ML_TRY(ml_h5_get_attr_i64(f, "/", "tokens_seen", &st->tokens_seen));
    if (ml_h5_has_attr(f, "/", "args_json")) ML_TRY(ml_h5_get_attr_str(f, "/", "args_json", &st->args_json));
    int64_t four = 4, nc = ML_CURSOR_WORDS;
    if (ml_h5_exists(f, "state/rng")) ML_TRY(ml_h5_read_u64(f, "state/rng", 1, &four, st->rng.s));
    if (ml_h5_exists(f, "state/cursor")) ML_TRY(ml_h5_read_i64(f, "state/cursor", 1, &nc, st->cursor));
    if (ml_h5_exists(f, "state/mixture")) {
        int nd;
        int64_t shape[ML_H5_MAX_DIMS];
        ml_h5_dtype dt;
        ML_TRY(ml_h5_dataset_info(f, "state/mixture", &nd, shape, &dt));
        if (nd != 1 || dt != ML_H5_I64 || shape[0] < 1 || shape[0] > (1 << 26))
            return ml_fail(ML_ERR_FORMAT, "state/mixture is not a 1-d int64 dataset of a sensible length");
        st->mixture = malloc((size_t)shape[0] * sizeof *st->mixture);
        if (!st->mixture) return ml_fail(ML_ERR_NOMEM, "out of memory for the mixture state");
        st->n_mixture = shape[0];
        ML_TRY(ml_h5_read_i64(f, "state/mixture", 1, shape, st->mixture));
    }
    if (ml_h5_has_attr(f, "/", "optimizer")) {
        char *name = NULL;
        ML_TRY(ml_h5_get_attr_str(f, "/", "optimizer", &name));
        snprintf(st->optimizer, sizeof st->optimizer, "%s", name);
        free(name);
        ML_TRY(ml_h5_get_attr_i64(f, "/", "optimizer_step", &st->optimizer_step));
        ML_TRY(read_optim_state(f, path, m, st));
    }
    return ML_OK;
}

ml_status ml_checkpoint_load(const char *path, ml_model *m, ml_train_state *st) {
    ml_h5 *f;
    memset(m, 0, sizeof *m);
    if (st) memset(st, 0, sizeof *st);
    ML_TRY(open_checked(&f, path));
    ml_status s = load_all(f, path, m, st);
    ml_h5_close(f);
    if (s != ML_OK) {
        ml_model_free(m);
        ml_train_state_free(st);
        return ml_fail_context(s, "loading %s", path);
    }
    return ML_OK;
}

ml_status ml_checkpoint_open(const char *path, ml_h5 **f, ml_config *c) {
    ML_TRY(open_checked(f, path));
    ml_status s = read_config(*f, path, c);
    if (s != ML_OK) {
        ml_h5_close(*f);
        *f = NULL;
    }
    return s;
}

ml_status ml_checkpoint_write_header(ml_h5 *f, const ml_config *c, const char *source_dtype) {
    char *config_json = NULL;
    ML_TRY(ml_config_to_json(c, &config_json));
    ml_status s = ml_h5_set_attr_str(f, "/", "format", ML_CKPT_FORMAT);
    if (s == ML_OK) s = ml_h5_set_attr_i64(f, "/", "version", ML_CKPT_VERSION);
    if (s == ML_OK) s = ml_h5_set_attr_str(f, "/", "config_json", config_json);
    free(config_json);
    if (s == ML_OK) s = ml_h5_set_attr_str(f, "/", "model_name", c->name);
    if (s == ML_OK) s = ml_h5_set_attr_i64(f, "/", "layer_repeat", c->layer_repeat);
    if (s == ML_OK && source_dtype && source_dtype[0]) s = ml_h5_set_attr_str(f, "/", "source_dtype", source_dtype);
    return s;
}
