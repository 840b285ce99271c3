/* The table of training options (see train_options.h). */
#include "train/train_options.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distill/kd_loss.h"
#include "model/ops/gemm.h"
#include "optim/optimizer.h"

#define F(field) offsetof(ml_train_args, field)
#define SZ(field) sizeof(((ml_train_args *)0)->field)
#define SCALAR(field) F(field), 0, 0
#define NAMEBUF(field) F(field), SZ(field), 0
#define LIST(field, count) F(field), sizeof(((ml_train_args *)0)->field) / sizeof(const char *), F(count)

/* A row's help may hold one "%s": the registry's names, "a | b | c". */
#define CHOICES_OPTIM "%s"

static const ml_train_opt table[] = {
    /* flag, aliases, type, field, default, default as help words it, help, json, resume, store, group, commands, required */
    {"config", NULL, ML_TOPT_STR, SCALAR(config_path), NULL, NULL, "fresh model from an HF-style config.json (see configs/)",
     "config", ML_RESUME_RECORD, ML_STORE_SET, 0, ML_CMD_ALL, 0},
    {"init", NULL, ML_TOPT_STR, SCALAR(init_ckpt), NULL, NULL, "start from the weights of a checkpoint", "init",
     ML_RESUME_RECORD, ML_STORE_SET, 0, ML_CMD_ALL, 0},
    {"resume", NULL, ML_TOPT_STR, SCALAR(resume_ckpt), NULL, NULL, "continue a run from its checkpoint (bit-exact)", NULL,
     ML_RESUME_FREE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"data", NULL, ML_TOPT_STR_LIST, LIST(data, n_data), NULL, NULL, "training token shards", "data", ML_RESUME_RESTORE,
     ML_STORE_ALWAYS, 1, ML_CMD_ALL, 0},
    {"source", NULL, ML_TOPT_STR_LIST, LIST(sources, n_sources), NULL, NULL,
     "or a mixture: SHARD[,SHARD...]:WEIGHT[:DOMAIN] per source, drawn per row", "source", ML_RESUME_RESTORE,
     ML_STORE_SET, 1, ML_CMD_ALL, 0},
    {"mixture", NULL, ML_TOPT_STR, SCALAR(mixture), NULL, NULL,
     "or the sources of a mixture.json (mobilellm mix): its domains, shards and weights", "mixture", ML_RESUME_RECORD,
     ML_STORE_SET, 0, ML_CMD_ALL, 0},
    {"shuffle-rows", NULL, ML_TOPT_INT, SCALAR(shuffle_rows), "0", "0 = off",
     "with --source: shuffle buffer of this many rows", "shuffle_rows", ML_RESUME_RESTORE, ML_STORE_MIX, 0, ML_CMD_ALL, 0},
    {"val", NULL, ML_TOPT_STR, SCALAR(val), NULL, NULL, "held-out shard for periodic evaluation", "val", ML_RESUME_RECORD,
     ML_STORE_SET, 0, ML_CMD_ALL, 0},
    {"batch", NULL, ML_TOPT_INT, SCALAR(batch), "4", NULL, "sequences per micro-batch", "batch", ML_RESUME_RESTORE,
     ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"seq", NULL, ML_TOPT_INT, SCALAR(seq), "256", NULL, "tokens per sequence", "seq", ML_RESUME_RESTORE,
     ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"steps", NULL, ML_TOPT_I64, SCALAR(steps), "100", NULL, "total optimizer steps of the run", "steps",
     ML_RESUME_RESTORE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"stop-after", NULL, ML_TOPT_I64, SCALAR(stop_after), NULL, NULL,
     "stop with a checkpoint after this step (same schedule as --steps)", NULL, ML_RESUME_FREE, ML_STORE_ALWAYS, 0,
     ML_CMD_ALL, 0},
    {"grad-accum", NULL, ML_TOPT_INT, SCALAR(grad_accum), "1", NULL, "micro-batches per step", "grad_accum",
     ML_RESUME_RESTORE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"optim", NULL, ML_TOPT_NAME, NAMEBUF(optim), "adamw", NULL, CHOICES_OPTIM, "optim", ML_RESUME_MATCH,
     ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"lr", NULL, ML_TOPT_FLOAT, SCALAR(lr), "2e-3", NULL, "peak learning rate", "lr", ML_RESUME_RESTORE,
     ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"schedule", NULL, ML_TOPT_NAME, NAMEBUF(schedule), "cosine", NULL, "constant | linear | cosine | wsd", "schedule",
     ML_RESUME_RESTORE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"min-lr-ratio", NULL, ML_TOPT_FLOAT, SCALAR(min_lr_ratio), "0.1", NULL, "final lr as a fraction of the peak",
     "min_lr_ratio", ML_RESUME_RESTORE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"warmup", NULL, ML_TOPT_I64, SCALAR(warmup), "0", NULL, "linear warmup steps", "warmup", ML_RESUME_RESTORE,
     ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"wsd-decay", "wsd-decay-fraction", ML_TOPT_FLOAT, SCALAR(wsd_decay_fraction), "0.2", NULL,
     "wsd: fraction of steps in the decay", "wsd_decay_fraction", ML_RESUME_RESTORE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    /* NaN: the optimizer's own default (ml_train resolves it before the run arguments are stored) */
    {"weight-decay", NULL, ML_TOPT_FLOAT, SCALAR(weight_decay), "nan", "0.1 for adamw, 0 for sgd",
     "weight decay, not on norms: decoupled for adamw (p -= lr*wd*p), L2 for sgd (g += wd*p)", "weight_decay",
     ML_RESUME_RESTORE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"beta1", NULL, ML_TOPT_FLOAT, SCALAR(beta1), "0.9", NULL, "AdamW beta1", "beta1", ML_RESUME_RESTORE,
     ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"beta2", NULL, ML_TOPT_FLOAT, SCALAR(beta2), "0.95", NULL, "AdamW beta2", "beta2", ML_RESUME_RESTORE,
     ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"adam-eps", "eps", ML_TOPT_FLOAT, SCALAR(eps), "1e-8", NULL, "AdamW epsilon", "eps", ML_RESUME_RESTORE,
     ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"momentum", NULL, ML_TOPT_FLOAT, SCALAR(momentum), "0", NULL, "SGD momentum", "momentum", ML_RESUME_RESTORE,
     ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"clip", NULL, ML_TOPT_FLOAT, SCALAR(clip), "1.0", NULL, "global gradient-norm clip, 0 = off", "clip",
     ML_RESUME_RESTORE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"seed", NULL, ML_TOPT_U64, SCALAR(seed), "1", NULL, "seed for initialisation and data order", "seed",
     ML_RESUME_RESTORE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"out", NULL, ML_TOPT_STR, SCALAR(out_dir), NULL, NULL, "run directory: checkpoints and metrics.jsonl", NULL,
     ML_RESUME_FREE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 1},
    {"keep", NULL, ML_TOPT_INT, SCALAR(keep), "3", NULL, "checkpoints kept", NULL, ML_RESUME_FREE, ML_STORE_ALWAYS, 0,
     ML_CMD_ALL, 0},
    {"ckpt-every", NULL, ML_TOPT_I64, SCALAR(ckpt_every), NULL, ": at the end only", "steps between checkpoints", NULL,
     ML_RESUME_FREE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"eval-every", NULL, ML_TOPT_I64, SCALAR(eval_every), NULL, ": at the end", "steps between evaluations on --val",
     NULL, ML_RESUME_FREE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"eval-batches", NULL, ML_TOPT_INT, SCALAR(eval_batches), "8", NULL, "batches per evaluation", NULL,
     ML_RESUME_FREE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"quiet", NULL, ML_TOPT_FLAG, SCALAR(quiet), NULL, NULL, "no per-step progress lines", NULL, ML_RESUME_FREE,
     ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"doc-positions", NULL, ML_TOPT_FLAG, SCALAR(doc_positions), NULL, ": continue",
     "positions restart at each document", "doc_positions", ML_RESUME_RESTORE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"doc-mask", NULL, ML_TOPT_FLAG, SCALAR(doc_mask), NULL, NULL, "attend only within each document of a packed window",
     "doc_mask", ML_RESUME_RESTORE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"recompute", NULL, ML_TOPT_FLAG, SCALAR(recompute), NULL, NULL,
     "keep only each block's input; backward recomputes the block (long windows in less memory)", "recompute",
     ML_RESUME_RESTORE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"precision", NULL, ML_TOPT_NAME, NAMEBUF(precision), "fp32", NULL,
     "fp32 | bf16: GEMMs on bf16 inputs, fp32 accumulation and state", "precision", ML_RESUME_RESTORE,
     ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"gemm-engine", NULL, ML_TOPT_NAME, NAMEBUF(gemm_engine), "auto", NULL,
     "auto | openblas | bf16 | onednn | int8: engine of the bf16 GEMMs (auto: per machine and shape, or "
     "ML_GEMM_ENGINE) and of QAT's integer-grid forwards with --act (auto: int8 where the CPU has AVX512-VNNI; "
     "openblas: the fp32 fake-quant forward)",
     "gemm_engine", ML_RESUME_RESTORE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"rope-theta", NULL, ML_TOPT_FLOAT, SCALAR(rope_theta), NULL, NULL,
     "set RoPE theta for this run (e.g. raised for context extension)", NULL, ML_RESUME_FREE, ML_STORE_ALWAYS, 0,
     ML_CMD_ALL, 0},
    /* data parallelism (mpirun -np N) */
    {"deterministic-reduce", NULL, ML_TOPT_FLAG, SCALAR(deterministic_reduce), NULL, NULL,
     "sum the micro-batches' gradients (over --grad-accum and over MPI ranks) in a fixed order: N ranks give "
     "bit-for-bit the result of one process with N times the accumulation (costs one more gradient buffer)",
     "deterministic_reduce", ML_RESUME_RESTORE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"bucket-mb", NULL, ML_TOPT_FLOAT, SCALAR(bucket_mb), "25", NULL,
     "MPI: gradient all-reduce bucket size in MiB (buckets start during backward)", NULL, ML_RESUME_FREE,
     ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"zero1", "zero", ML_TOPT_FLAG, SCALAR(zero1), NULL, NULL,
     "MPI: ZeRO-1, each rank keeps the optimizer state of its 1/N of the parameters (same results)", NULL,
     ML_RESUME_FREE, ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    {"dist-timeout", NULL, ML_TOPT_FLOAT, SCALAR(dist_timeout), "300", NULL,
     "MPI: seconds a rank waits for the others before failing (a dead or stuck rank)", NULL, ML_RESUME_FREE,
     ML_STORE_ALWAYS, 0, ML_CMD_ALL, 0},
    /* distillation */
    {"teacher", NULL, ML_TOPT_STR, SCALAR(teacher), NULL, NULL, "teacher checkpoint or HF directory (same tokenizer)",
     "teacher", ML_RESUME_RESTORE, ML_STORE_SET, 2, ML_CMD_DISTILL, 0},
    {"teacher-latent", NULL, ML_TOPT_FLAG, SCALAR(teacher_latent), NULL, NULL,
     "load a quantized teacher checkpoint's full-precision (latent) weights, without its quantization (qat's "
     "self-distillation sets it)", "teacher_latent", ML_RESUME_RESTORE, ML_STORE_KD, 2, ML_CMD_DISTILL, 0},
    {"cache", NULL, ML_TOPT_STR, SCALAR(cache), NULL, NULL,
     "or a teacher-logit cache of this data, B and T (teacher-logits)", "cache", ML_RESUME_RESTORE, ML_STORE_SET, 2,
     ML_CMD_DISTILL, 0},
    {"tail", "kd-tail", ML_TOPT_NAME, NAMEBUF(kd_tail), "renorm", NULL, "with --cache: renorm | bucket", "kd_tail",
     ML_RESUME_RESTORE, ML_STORE_CACHE, 0, ML_CMD_DISTILL, 0},
    {"loss", "kd-loss", ML_TOPT_NAME, NAMEBUF(kd_loss), "fkl", NULL, CHOICES_OPTIM, "kd_loss", ML_RESUME_RESTORE,
     ML_STORE_KD, 0, ML_CMD_DISTILL, 0},
    {"temperature", NULL, ML_TOPT_FLOAT, SCALAR(temperature), "1", NULL, "distillation temperature", "temperature",
     ML_RESUME_RESTORE, ML_STORE_KD, 0, ML_CMD_DISTILL, 0},
    {"beta", "kd-beta", ML_TOPT_FLOAT, SCALAR(kd_beta), "0.5", NULL, "JSD mixing weight", "kd_beta", ML_RESUME_RESTORE,
     ML_STORE_KD, 0, ML_CMD_DISTILL, 0},
    {"ce-weight", NULL, ML_TOPT_FLOAT, SCALAR(ce_weight), "0", NULL, "weight of the hard-label cross-entropy",
     "ce_weight", ML_RESUME_RESTORE, ML_STORE_KD, 0, ML_CMD_DISTILL, 0},
    /* quantization-aware training (quant/quant.h). The recipe is the checkpoint's own (its `quant` attribute), not a
     * run argument: on --resume it comes from there; another --act alone may be given (how the model computes, not
     * its weights). */
    {"scheme", NULL, ML_TOPT_STR, SCALAR(quant_scheme), NULL, NULL,
     "linear layers' grid: q4_0 | q8_0 (llama.cpp's GGUF blocks) | int4-g32 | int4-g64 | int4-g128 | int4-g256 "
     "(torchao's group-wise int4) | int4-channel-lsq (per row, learned scale); required unless --init is quantized",
     NULL, ML_RESUME_FREE, ML_STORE_ALWAYS, 0, ML_CMD_QAT, 0},
    {"embedding", NULL, ML_TOPT_STR, SCALAR(quant_embedding), NULL, "none",
     "embedding grid (tied: also the head): none | q8_0 | q4_0 | int8 | int4-g32", NULL, ML_RESUME_FREE,
     ML_STORE_ALWAYS, 0, ML_CMD_QAT, 0},
    {"act", NULL, ML_TOPT_STR, SCALAR(quant_act), NULL, "none",
     "activation rounding before quantized products: none | q8_0 (llama.cpp) | int8-token (ExecuTorch 8da4w)", NULL,
     ML_RESUME_FREE, ML_STORE_ALWAYS, 0, ML_CMD_QAT, 0},
    {"no-self-distill", NULL, ML_TOPT_FLAG, SCALAR(no_self_distill), NULL, NULL,
     "cross-entropy only; by default the full-precision --init model is an online teacher on the same batches "
     "(forward KL, --temperature, --ce-weight)", NULL, ML_RESUME_FREE, ML_STORE_ALWAYS, 0, ML_CMD_QAT, 0},
};
#define N_OPTS ((int)(sizeof table / sizeof table[0]))

const ml_train_opt *ml_train_options(int *n) {
    *n = N_OPTS;
    return table;
}

static int alias_match(const char *aliases, const char *flag) {
    size_t n = strlen(flag);
    for (const char *p = aliases; p && *p;) {
        const char *e = strchr(p, ' ');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, flag, n)) return 1;
        p = e ? e + 1 : p + len;
    }
    return 0;
}

const ml_train_opt *ml_train_option_find(const char *flag) {
    for (int i = 0; i < N_OPTS; i++)
        if (!strcmp(table[i].flag, flag) || alias_match(table[i].aliases, flag)) return &table[i];
    return NULL;
}

const ml_train_opt *ml_train_option_by_json(const char *key) {
    for (int i = 0; i < N_OPTS; i++)
        if (table[i].json && !strcmp(table[i].json, key)) return &table[i];
    return NULL;
}

#define AT(a, o, type) ((type *)((char *)(a) + (o)->offset))

ml_status ml_train_option_set(ml_train_args *a, const ml_train_opt *o, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case ML_TOPT_STR: *AT(a, o, const char *) = v; return ML_OK;
    case ML_TOPT_NAME:
        if (strlen(v) >= o->size) return ml_fail(ML_ERR_ARG, "--%s: '%s' is too long", o->flag, v);
        snprintf(AT(a, o, char), o->size, "%s", v);
        if (!strcmp(o->flag, "precision") && strcmp(v, "fp32") && strcmp(v, "bf16"))
            return ml_fail(ML_ERR_ARG, "--precision must be fp32 or bf16, not '%s'", v);
        if (!strcmp(o->flag, "gemm-engine")) {
            ml_gemm_engine e;
            if (ml_gemm_engine_parse(v, &e) != ML_OK)
                return ml_fail(ML_ERR_ARG, "--gemm-engine must be auto, openblas, bf16, onednn or int8, not '%s'", v);
        }
        return ML_OK;
    case ML_TOPT_FLAG: *AT(a, o, int) = strcmp(v, "0") != 0; return ML_OK;
    case ML_TOPT_INT: {
        long x = strtol(v, &end, 10);
        if (errno || !*v || *end || x < -2147483647L || x > 2147483647L) break;
        *AT(a, o, int) = (int)x;
        return ML_OK;
    }
    case ML_TOPT_I64: {
        long long x = strtoll(v, &end, 10);
        if (errno || !*v || *end) break;
        *AT(a, o, int64_t) = x;
        return ML_OK;
    }
    case ML_TOPT_U64: { /* read as a signed number, as the CLI always has */
        long long x = strtoll(v, &end, 10);
        if (errno || !*v || *end) break;
        *AT(a, o, uint64_t) = (uint64_t)x;
        return ML_OK;
    }
    case ML_TOPT_FLOAT: {
        float x = strtof(v, &end);
        if (errno || !*v || *end) break;
        *AT(a, o, float) = x;
        return ML_OK;
    }
    case ML_TOPT_STR_LIST: return ml_fail(ML_ERR_ARG, "--%s takes a list", o->flag);
    }
    return ml_fail(ML_ERR_ARG, "--%s expects a %s, got '%s'", o->flag, o->type == ML_TOPT_FLOAT ? "number" : "whole number",
                   v);
}

static void choices(const ml_train_opt *o, char *buf, size_t n) {
    buf[0] = 0;
    int is_optim = o->offset == F(optim);
    int k = is_optim ? ml_optim_num_kinds() : ml_kd_num_kinds();
    for (int i = 0; i < k; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, "%s%s", i ? " | " : "",
                 is_optim ? ml_optim_kind_name((ml_optim_kind)i) : ml_kd_kind_name((ml_kd_kind)i));
    }
}

void ml_train_option_help(const ml_train_opt *o, const ml_train_args *preset, char *buf, size_t n) {
    char help[512], preset_def[32] = "";
    if (!strcmp(o->help, "%s"))
        choices(o, help, sizeof help);
    else
        snprintf(help, sizeof help, "%s", o->help);
    const char *d = o->def_help ? o->def_help : o->def;
    if (preset && (o->type == ML_TOPT_FLOAT || o->type == ML_TOPT_INT)) {
        ml_train_args table_defaults;
        ml_train_args_defaults(&table_defaults);
        if (o->type == ML_TOPT_FLOAT && *AT(preset, o, const float) != *AT(&table_defaults, o, const float))
            snprintf(preset_def, sizeof preset_def, "%g", (double)*AT(preset, o, const float));
        if (o->type == ML_TOPT_INT && *AT(preset, o, const int) != *AT(&table_defaults, o, const int))
            snprintf(preset_def, sizeof preset_def, "%d", *AT(preset, o, const int));
        if (preset_def[0]) d = preset_def;
    }
    size_t k = 0;
    if (d)
        k = (size_t)snprintf(buf, n, "%s (default%s%s)", help, d[0] == ':' ? "" : " ", d);
    else
        k = (size_t)snprintf(buf, n, "%s", help);
    for (const char *p = o->aliases; p && *p && k < n;) { /* "; also --eps" */
        const char *e = strchr(p, ' ');
        int len = e ? (int)(e - p) : (int)strlen(p);
        k += (size_t)snprintf(buf + k, n - k, "%s--%.*s", p == o->aliases ? "; also " : ", ", len, p);
        p = e ? e + 1 : p + len;
    }
}

/* ---------------------------------------------------------------- run arguments as JSON */

void ml_train_args_defaults(ml_train_args *a) {
    memset(a, 0, sizeof *a);
    for (int i = 0; i < N_OPTS; i++)
        if (table[i].def) (void)ml_train_option_set(a, &table[i], table[i].def);
}

static int stored(const ml_train_args *a, const ml_train_opt *o) {
    switch (o->store) {
    case ML_STORE_ALWAYS: return 1;
    case ML_STORE_SET:
        return o->type == ML_TOPT_STR_LIST ? *(const int *)((const char *)a + o->count_offset) > 0
                                            : *AT(a, o, const char *const) != NULL;
    case ML_STORE_KD: return a->teacher || a->cache;
    case ML_STORE_CACHE: return a->cache != NULL;
    case ML_STORE_MIX: return a->n_sources > 0;
    }
    return 0;
}

ml_status ml_train_args_to_json(const ml_train_args *a, char **json) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return ml_fail(ML_ERR_NOMEM, "out of memory");
    for (int i = 0; i < N_OPTS; i++) {
        const ml_train_opt *r = &table[i];
        if (!r->json || !stored(a, r)) continue;
        switch (r->type) {
        case ML_TOPT_STR: cJSON_AddStringToObject(o, r->json, *AT(a, r, const char *const)); break;
        case ML_TOPT_NAME: cJSON_AddStringToObject(o, r->json, AT(a, r, const char)); break;
        case ML_TOPT_FLAG: cJSON_AddBoolToObject(o, r->json, *AT(a, r, const int)); break;
        case ML_TOPT_INT: cJSON_AddNumberToObject(o, r->json, *AT(a, r, const int)); break;
        case ML_TOPT_I64: cJSON_AddNumberToObject(o, r->json, (double)*AT(a, r, const int64_t)); break;
        case ML_TOPT_U64: cJSON_AddNumberToObject(o, r->json, (double)*AT(a, r, const uint64_t)); break;
        case ML_TOPT_FLOAT: cJSON_AddNumberToObject(o, r->json, *AT(a, r, const float)); break;
        case ML_TOPT_STR_LIST: {
            cJSON *arr = cJSON_AddArrayToObject(o, r->json);
            const char *const *items = AT(a, r, const char *const);
            int count = *(const int *)((const char *)a + r->count_offset);
            for (int k = 0; arr && k < count; k++) cJSON_AddItemToArray(arr, cJSON_CreateString(items[k]));
            break;
        }
        }
    }
    *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *json ? ML_OK : ml_fail(ML_ERR_NOMEM, "out of memory");
}

/* Strings of a resume, copied into one block: sized first, then filled. */
typedef struct {
    char *buf;
    size_t used, cap;
} strbuf;

static const char *keep_str(strbuf *sb, const char *s) {
    size_t n = strlen(s) + 1;
    if (!sb->buf) { /* sizing pass */
        sb->cap += n;
        return s;
    }
    char *p = sb->buf + sb->used;
    memcpy(p, s, n);
    sb->used += n;
    return p;
}

static int group_given(int group, const int *given) {
    for (int i = 0; given && group && i < N_OPTS; i++)
        if (table[i].group == group && given[i]) return 1;
    return 0;
}

/* Read one stored value into `a` (strings through sb). */
static ml_status read_value(ml_train_args *a, const ml_train_opt *r, const cJSON *it, strbuf *sb) {
    switch (r->type) {
    case ML_TOPT_STR:
        if (cJSON_IsString(it)) *AT(a, r, const char *) = keep_str(sb, it->valuestring);
        break;
    case ML_TOPT_NAME:
        if (cJSON_IsString(it)) snprintf(AT(a, r, char), r->size, "%s", it->valuestring);
        break;
    case ML_TOPT_FLAG:
        if (cJSON_IsBool(it)) *AT(a, r, int) = cJSON_IsTrue(it);
        break;
    case ML_TOPT_INT:
        if (cJSON_IsNumber(it)) *AT(a, r, int) = (int)it->valuedouble;
        break;
    case ML_TOPT_I64:
        if (cJSON_IsNumber(it)) *AT(a, r, int64_t) = (int64_t)it->valuedouble;
        break;
    case ML_TOPT_U64:
        if (cJSON_IsNumber(it)) *AT(a, r, uint64_t) = (uint64_t)it->valuedouble;
        break;
    case ML_TOPT_FLOAT:
        if (cJSON_IsNumber(it)) *AT(a, r, float) = (float)it->valuedouble;
        break;
    case ML_TOPT_STR_LIST: {
        const char **items = AT(a, r, const char *);
        int *count = (int *)((char *)a + r->count_offset);
        *count = 0;
        const cJSON *e;
        if (cJSON_IsArray(it))
            cJSON_ArrayForEach(e, it) if (cJSON_IsString(e) && (size_t)*count < r->size) items[(*count)++] =
                keep_str(sb, e->valuestring);
        break;
    }
    }
    return ML_OK;
}

/* A MATCH row given again: its value must equal the stored one. */
static ml_status check_match(const ml_train_args *a, const ml_train_opt *r, const cJSON *it) {
    if (r->type == ML_TOPT_NAME && cJSON_IsString(it) && strcmp(AT(a, r, const char), it->valuestring) != 0)
        return ml_fail(ML_ERR_ARG, "checkpoint was trained with --%s %s, not %s: a resumed run keeps it", r->flag,
                       it->valuestring, AT(a, r, const char));
    return ML_OK;
}

ml_status ml_train_args_resume(ml_train_args *a, const char *json, const int *given, char **strings) {
    *strings = NULL;
    cJSON *o = cJSON_Parse(json);
    if (!o) return ml_fail(ML_ERR_FORMAT, "stored run arguments are not valid JSON");
    strbuf sb = {0};
    ml_status s = ML_OK;
    /* two passes over the rows: size the strings, then read */
    for (int pass = 0; pass < 2 && s == ML_OK; pass++) {
        ml_train_args scratch = *a;
        ml_train_args *dst = pass == 0 ? &scratch : a;
        if (pass == 1 && sb.cap) {
            sb.buf = malloc(sb.cap);
            if (!sb.buf) {
                s = ml_fail(ML_ERR_NOMEM, "out of memory");
                break;
            }
        }
        for (int i = 0; i < N_OPTS && s == ML_OK; i++) {
            const ml_train_opt *r = &table[i];
            if (!r->json || (r->resume != ML_RESUME_RESTORE && r->resume != ML_RESUME_MATCH)) continue;
            const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, r->json);
            if (!it) continue;
            int was_given = given && given[i];
            if (was_given && r->resume == ML_RESUME_MATCH) {
                if (pass == 1) s = check_match(a, r, it);
                continue;
            }
            if (was_given || (r->group && group_given(r->group, given))) continue;
            s = read_value(dst, r, it, &sb);
        }
    }
    cJSON_Delete(o);
    if (s != ML_OK) {
        free(sb.buf);
        return s;
    }
    *strings = sb.buf;
    return ML_OK;
}
