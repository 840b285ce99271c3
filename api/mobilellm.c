/* The public C API (include/mobilellm.h): thin wrappers over the layers below. */
#include "include/mobilellm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/status.h"
#include "data/tokenizer.h"
#include "interop/gguf_export.h"
#include "interop/hf_checkpoint.h"
#include "interop/model_load.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/linear.h"
#include "model/model.h"
#include "optim/clip.h"
#include "optim/optimizer.h"
#include "train/trainer.h"

/* ML_TRY for functions that return the public status */
#define TRY(expr)                                        \
    do {                                                 \
        ml_status try_s_ = (expr);                       \
        if (try_s_ != ML_OK) return (mobilellm_status)try_s_; \
    } while (0)

/* the public codes are the library's */
_Static_assert((int)MOBILELLM_ERR_INTERRUPTED == (int)ML_ERR_INTERRUPTED, "status codes differ");
_Static_assert((int)MOBILELLM_LOG_ERROR == (int)ML_LOG_ERROR, "log levels differ");

struct mobilellm_model {
    ml_model m;
    int B, T; /* activations reserved for this shape (0: none) */
    int recompute;
};

struct mobilellm_trainer {
    mobilellm_model *model;
    ml_optimizer opt;
    mobilellm_train_opts o;
    int64_t steps;
};

struct mobilellm_tokenizer {
    ml_tokenizer *t;
};

const char *mobilellm_version(void) { return MOBILELLM_VERSION; }
const char *mobilellm_last_error(void) { return ml_last_error(); }
void mobilellm_free(void *p) { free(p); }

void mobilellm_set_log(mobilellm_log_fn fn, void *user, mobilellm_log_level min_level) {
    ml_log_set_sink((ml_log_fn)fn, user, (ml_log_level)min_level);
}

/* ------------------------------------------------------------------ models */

static mobilellm_status new_model(mobilellm_model **out) {
    *out = calloc(1, sizeof **out);
    return *out ? MOBILELLM_OK : (mobilellm_status)ml_fail(ML_ERR_NOMEM, "out of memory for a model handle");
}

mobilellm_status mobilellm_model_init(mobilellm_model **out, const char *config, uint64_t seed) {
    *out = NULL;
    if (!config) return (mobilellm_status)ml_fail(ML_ERR_ARG, "mobilellm_model_init: no config");
    ml_config cfg;
    ml_status s = config[0] == '{' ? ml_config_from_json(&cfg, config, "config text") : ml_config_load(&cfg, config);
    if (s != ML_OK) return (mobilellm_status)s;
    mobilellm_model *h;
    TRY((ml_status)new_model(&h));
    if ((s = ml_model_create(&h->m, &cfg)) != ML_OK) {
        free(h);
        return (mobilellm_status)s;
    }
    ml_model_init_weights(&h->m, seed);
    *out = h;
    return MOBILELLM_OK;
}

mobilellm_status mobilellm_model_load(mobilellm_model **out, const char *path) {
    *out = NULL;
    mobilellm_model *h;
    TRY((ml_status)new_model(&h));
    ml_status s = ml_model_load_any(path, &h->m);
    if (s != ML_OK) {
        free(h);
        return (mobilellm_status)s;
    }
    *out = h;
    return MOBILELLM_OK;
}

mobilellm_status mobilellm_model_save(const mobilellm_model *m, const char *path) {
    return (mobilellm_status)ml_checkpoint_save(path, &m->m, NULL);
}

void mobilellm_model_free(mobilellm_model *m) {
    if (!m) return;
    ml_model_free(&m->m);
    free(m);
}

int64_t mobilellm_model_num_params(const mobilellm_model *m) { return (int64_t)ml_config_num_params(&m->m.cfg); }
int mobilellm_model_vocab_size(const mobilellm_model *m) { return m->m.cfg.vocab_size; }
const char *mobilellm_model_name(const mobilellm_model *m) { return m->m.cfg.name; }

/* Activations for B x T (training keeps every block's; inference shares one set). */
static ml_status reserve(mobilellm_model *h, int B, int T, int recompute) {
    if (B < 1 || T < 1) return ml_fail(ML_ERR_ARG, "batch %d x sequence %d: both must be positive", B, T);
    if (T > h->m.cfg.max_position_embeddings)
        return ml_fail(ML_ERR_RANGE, "sequence of %d tokens is longer than the model's %d positions", T,
                       h->m.cfg.max_position_embeddings);
    if (h->B == B && h->T == T && h->recompute == recompute) return ML_OK;
    h->m.recompute = recompute;
    h->B = h->T = 0;
    ML_TRY(ml_model_reserve(&h->m, B, T, T));
    h->B = B, h->T = T, h->recompute = recompute;
    return ML_OK;
}

static ml_status check_tokens(const mobilellm_model *h, const int32_t *tokens, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= h->m.cfg.vocab_size)
            return ml_fail(ML_ERR_RANGE, "%s: token %d at position %zu is outside the vocabulary (%d)", what, tokens[i],
                           i, h->m.cfg.vocab_size);
    return ML_OK;
}

mobilellm_status mobilellm_model_logits(mobilellm_model *m, const int32_t *tokens, int n, float *logits) {
    TRY(reserve(m, 1, n, 1));
    TRY(check_tokens(m, tokens, (size_t)n, "mobilellm_model_logits"));
    ml_batch b = {.tokens = (int32_t *)tokens, .B = 1, .T = n};
    TRY(ml_model_forward(&m->m, &b));
    return (mobilellm_status)ml_model_logits(&m->m, &b, logits);
}

mobilellm_status mobilellm_model_loss(mobilellm_model *m, const int32_t *tokens, const int32_t *targets, int batch,
                                      int seq, double *loss) {
    TRY(reserve(m, batch, seq, 1));
    TRY(check_tokens(m, tokens, (size_t)batch * seq, "mobilellm_model_loss"));
    ml_batch b = {.tokens = (int32_t *)tokens, .targets = (int32_t *)targets, .B = batch, .T = seq};
    double sum;
    int64_t count;
    TRY(ml_model_forward(&m->m, &b));
    TRY(ml_model_head_loss(&m->m, &b, 0.0f, &sum, &count));
    *loss = count ? sum / (double)count : 0.0;
    return MOBILELLM_OK;
}

mobilellm_status mobilellm_export_hf(const mobilellm_model *m, const char *dir, const char *dtype) {
    const char *dn = dtype ? dtype : (m->m.source_dtype[0] ? m->m.source_dtype : "f32");
    ml_st_dtype dt;
    if (!strcasecmp(dn, "f32")) dt = ML_ST_F32;
    else if (!strcasecmp(dn, "bf16")) dt = ML_ST_BF16;
    else if (!strcasecmp(dn, "f16")) dt = ML_ST_F16;
    else return (mobilellm_status)ml_fail(ML_ERR_ARG, "export dtype must be f32, bf16 or f16, not '%s'", dn);
    return (mobilellm_status)ml_hf_export(&m->m, dir, dt, 0);
}

mobilellm_status mobilellm_export_gguf(const mobilellm_model *m, const char *path, const char *type,
                                       const char *tokenizer) {
    ml_gguf_export_opts o = {.type = ML_GGML_F32, .tokenizer = tokenizer};
    const char *tn = type ? type : "f32";
    if (!strcasecmp(tn, "f32")) o.type = ML_GGML_F32;
    else if (!strcasecmp(tn, "f16")) o.type = ML_GGML_F16;
    else if (!strcasecmp(tn, "q8_0")) o.type = ML_GGML_Q8_0;
    else if (!strcasecmp(tn, "q4_0")) o.type = ML_GGML_Q4_0;
    else return (mobilellm_status)ml_fail(ML_ERR_ARG, "GGUF type must be f32, f16, q8_0 or q4_0, not '%s'", tn);
    TRY(ml_gguf_check_expressible(&m->m.cfg));
    return (mobilellm_status)ml_gguf_export(&m->m, path, &o);
}

/* ------------------------------------------------------------------ training steps */

void mobilellm_train_opts_default(mobilellm_train_opts *o) {
    /* the CLI's defaults: the same table (train/train_options.c) */
    ml_train_args a;
    ml_train_args_defaults(&a);
    *o = (mobilellm_train_opts){.optimizer = "adamw", .lr = a.lr, .weight_decay = a.weight_decay, .beta1 = a.beta1,
                                .beta2 = a.beta2, .eps = a.eps, .momentum = a.momentum, .clip = a.clip,
                                .batch = a.batch, .seq = a.seq};
}

mobilellm_status mobilellm_trainer_new(mobilellm_trainer **out, mobilellm_model *m, const mobilellm_train_opts *o) {
    *out = NULL;
    ml_optim_kind kind;
    TRY(ml_optim_kind_parse(o->optimizer ? o->optimizer : "adamw", &kind));
    ml_optim_config oc = ml_optim_defaults(kind);
    oc.beta1 = o->beta1;
    oc.beta2 = o->beta2;
    oc.eps = o->eps;
    oc.momentum = o->momentum;
    if (!isnan(o->weight_decay)) oc.weight_decay = o->weight_decay;
    if (!(o->lr >= 0 && isfinite(o->lr))) return (mobilellm_status)ml_fail(ML_ERR_ARG, "learning rate %g", (double)o->lr);
    TRY(reserve(m, o->batch, o->seq, 0));
    mobilellm_trainer *t = calloc(1, sizeof *t);
    if (!t) return (mobilellm_status)ml_fail(ML_ERR_NOMEM, "out of memory for a trainer");
    ml_status s = ml_optimizer_for_model(&t->opt, &m->m, &oc);
    if (s != ML_OK) {
        free(t);
        return (mobilellm_status)s;
    }
    t->model = m;
    t->o = *o;
    *out = t;
    return MOBILELLM_OK;
}

mobilellm_status mobilellm_train_step(mobilellm_trainer *t, const int32_t *tokens, const int32_t *targets,
                                      double *loss) {
    mobilellm_model *h = t->model;
    const int B = t->o.batch, T = t->o.seq;
    TRY(reserve(h, B, T, 0)); /* another call (logits, loss) may have changed the shape */
    TRY(check_tokens(h, tokens, (size_t)B * T, "mobilellm_train_step"));
    ml_model *m = &h->m;
    ml_batch b = {.tokens = (int32_t *)tokens, .targets = (int32_t *)targets, .B = B, .T = T};
    double sum;
    int64_t count;
    ml_model_zero_grad(m);
    TRY(ml_model_forward(m, &b));
    TRY(ml_model_head_loss(m, &b, 1.0f / (float)((int64_t)B * T), &sum, &count));
    TRY(ml_model_backward(m, &b));
    double l = count ? sum / (double)count : 0.0;
    if (loss) *loss = l;
    double gnorm = ml_clip_grad_norm(m->grad_arena.base, m->grad_arena.capacity, t->o.clip);
    if (!isfinite(l) || !isfinite(gnorm))
        return (mobilellm_status)ml_fail(ML_ERR_RANGE, "step %lld: loss %g, gradient norm %g not finite: no update",
                                         (long long)t->steps + 1, l, gnorm);
    TRY(ml_optim_step(&t->opt, m->param_arena.base, m->grad_arena.base, t->o.lr));
    ml_model_weights_changed(m); /* copies of the weights (bf16, transformed) are refreshed before the next forward */
    t->steps++;
    return MOBILELLM_OK;
}

void mobilellm_trainer_set_lr(mobilellm_trainer *t, float lr) { t->o.lr = lr; }
int64_t mobilellm_trainer_steps(const mobilellm_trainer *t) { return t->steps; }

void mobilellm_trainer_free(mobilellm_trainer *t) {
    if (!t) return;
    ml_optim_free(&t->opt);
    free(t);
}

/* ------------------------------------------------------------------ tokenizers */

mobilellm_status mobilellm_tokenizer_open(mobilellm_tokenizer **out, const char *spec) {
    *out = NULL;
    mobilellm_tokenizer *h = calloc(1, sizeof *h);
    if (!h) return (mobilellm_status)ml_fail(ML_ERR_NOMEM, "out of memory for a tokenizer handle");
    ml_status s = ml_tokenizer_open(&h->t, spec);
    if (s != ML_OK) {
        free(h);
        return (mobilellm_status)s;
    }
    *out = h;
    return MOBILELLM_OK;
}

void mobilellm_tokenizer_free(mobilellm_tokenizer *t) {
    if (!t) return;
    ml_tokenizer_free(t->t);
    free(t);
}

int mobilellm_tokenizer_vocab_size(const mobilellm_tokenizer *t) { return (int)ml_tokenizer_vocab_size(t->t); }

mobilellm_status mobilellm_encode(const mobilellm_tokenizer *t, const char *text, size_t len, int add_bos,
                                  int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    ml_id_buf buf = {0};
    ml_status s = ml_tokenizer_encode(t->t, &buf, text, len, add_bos ? ML_TOK_ADD_BOS : 0);
    if (s == ML_OK) {
        int32_t *out = malloc((buf.n ? buf.n : 1) * sizeof *out);
        if (!out) s = ml_fail(ML_ERR_NOMEM, "out of memory for %zu token ids", buf.n);
        for (size_t i = 0; out && i < buf.n; i++) out[i] = (int32_t)buf.ids[i];
        *ids = out;
        *n = out ? buf.n : 0;
    }
    ml_id_buf_free(&buf);
    return (mobilellm_status)s;
}

mobilellm_status mobilellm_decode(const mobilellm_tokenizer *t, const int32_t *ids, size_t n, char **text,
                                  size_t *len) {
    *text = NULL;
    *len = 0;
    uint32_t *u = malloc((n ? n : 1) * sizeof *u);
    if (!u) return (mobilellm_status)ml_fail(ML_ERR_NOMEM, "out of memory for %zu token ids", n);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0) {
            free(u);
            return (mobilellm_status)ml_fail(ML_ERR_RANGE, "token id %d at position %zu is negative", ids[i], i);
        }
        u[i] = (uint32_t)ids[i];
    }
    ml_byte_buf buf = {0};
    ml_status s = ml_tokenizer_decode(t->t, &buf, u, n);
    free(u);
    if (s == ML_OK) {
        char *out = malloc(buf.n + 1);
        if (!out) s = ml_fail(ML_ERR_NOMEM, "out of memory for %zu bytes of text", buf.n);
        if (out) {
            if (buf.n) memcpy(out, buf.bytes, buf.n);
            out[buf.n] = 0;
            *text = out;
            *len = buf.n;
        }
    }
    ml_byte_buf_free(&buf);
    return (mobilellm_status)s;
}
