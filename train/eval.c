#include "train/eval.h"

#include <stdlib.h>

ml_status ml_eval_loss(ml_model *m, ml_batch_reader *reader, int B, int T, int max_batches, double *mean_loss,
                       int64_t *tokens) {
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
    *mean_loss = count ? sum / (double)count : 0.0;
    *tokens = count;
    return s;
}
