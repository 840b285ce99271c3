#include "infer/eval_loss.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/shard.h"

ml_status ml_eval_loss_part(ml_model *m, ml_batch_reader *reader, int B, int T, int max_batches, int part, int parts,
                            double *loss_sum, int64_t *tokens) {
    uint64_t per_batch = (uint64_t)B * (uint64_t)(T + 1);
    int64_t whole = (int64_t)(ml_batch_reader_total_tokens(reader) / per_batch);
    if (whole < 1) whole = 1;
    int64_t n = max_batches > 0 && max_batches < whole ? max_batches : whole;
    ml_data_cursor start = {0, 0, 0};
    ML_TRY(ml_batch_reader_set_cursor(reader, &start));
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * T), *tgt = malloc(sizeof(int32_t) * (size_t)B * T);
    ml_status s = tok && tgt ? ML_OK : ml_fail(ML_ERR_NOMEM, "out of memory for evaluation batches");
    ml_batch b = {.tokens = tok, .targets = tgt, .B = B, .T = T};
    double sum = 0;
    int64_t count = 0;
    for (int64_t i = 0; i < n && s == ML_OK; i++) {
        if (i % parts != part) {
            ml_batch_reader_skip(reader, 1);
            continue;
        }
        s = ml_batch_reader_next(reader, tok, tgt, NULL, NULL);
        if (s == ML_OK) s = ml_model_forward(m, &b);
        double ls;
        int64_t c;
        if (s == ML_OK) s = ml_model_head_loss(m, &b, 0.0f, &ls, &c);
        if (s == ML_OK) {
            sum += ls;
            count += c;
        }
    }
    free(tok);
    free(tgt);
    *loss_sum = sum;
    *tokens = count;
    return s;
}

ml_status ml_eval_loss(ml_model *m, ml_batch_reader *reader, int B, int T, int max_batches, double *mean_loss,
                       int64_t *tokens) {
    double sum = 0;
    ml_status s = ml_eval_loss_part(m, reader, B, T, max_batches, 0, 1, &sum, tokens);
    *mean_loss = *tokens ? sum / (double)*tokens : 0.0;
    return s;
}

ml_status ml_eval_loss_by_domain(ml_model *m, const char *const *paths, int n_paths, int B, int T, int max_batches,
                                 ml_domain_loss *out, int *n) {
    *n = 0;
    int *group = malloc(sizeof(int) * (size_t)n_paths);
    const char **members = malloc(sizeof(char *) * (size_t)n_paths);
    ml_status s = group && members ? ML_OK : ml_fail(ML_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n_paths && s == ML_OK; i++) {
        ml_shard_reader *r;
        s = ml_shard_open(&r, paths[i]);
        if (s != ML_OK) break;
        const char *d = ml_shard_get_info(r)->domain;
        int g = 0;
        while (g < *n && strcmp(out[g].domain, d) != 0) g++;
        if (g == *n) {
            if (*n == ML_EVAL_MAX_DOMAINS) {
                ml_shard_close(r);
                s = ml_fail(ML_ERR_RANGE, "more than %d domains", ML_EVAL_MAX_DOMAINS);
                break;
            }
            memset(&out[g], 0, sizeof out[g]);
            snprintf(out[g].domain, sizeof out[g].domain, "%s", d);
            (*n)++;
        }
        out[g].n_shards++;
        group[i] = g;
        ml_shard_close(r);
    }
    if (s == ML_OK) s = ml_model_reserve(m, B, T, T);
    for (int g = 0; g < *n && s == ML_OK; g++) {
        int k = 0;
        for (int i = 0; i < n_paths; i++)
            if (group[i] == g) members[k++] = paths[i];
        ml_batch_reader *r = NULL;
        ml_batch_opts bo = {.B = B, .T = T, .pos_mode = ML_POS_ROW};
        s = ml_batch_reader_open(&r, members, k, &bo);
        if (s == ML_OK && ml_batch_reader_vocab_size(r) > (uint32_t)m->cfg.vocab_size)
            s = ml_fail(ML_ERR_CONFIG, "data vocabulary (%u) is larger than the model's (%d)",
                        ml_batch_reader_vocab_size(r), m->cfg.vocab_size);
        if (s == ML_OK) s = ml_eval_loss(m, r, B, T, max_batches, &out[g].loss, &out[g].tokens);
        ml_batch_reader_close(r);
        if (s != ML_OK) s = ml_fail_context(s, "domain '%s'", out[g].domain);
    }
    free(group);
    free(members);
    return s;
}
