#include "distill/kd_head.h"

#include "distill/logit_cache.h"
#include "model/linear.h"

ml_status ml_kd_check_pair(const ml_model *student, const ml_model *teacher) {
    if (student->cfg.vocab_size != teacher->cfg.vocab_size)
        return ml_fail(ML_ERR_CONFIG,
                       "teacher %s has a vocabulary of %d, the student %s %d: distillation needs the same "
                       "tokenizer and vocabulary",
                       teacher->cfg.name, teacher->cfg.vocab_size, student->cfg.name, student->cfg.vocab_size);
    if (student->cfg.bos_token_id != teacher->cfg.bos_token_id || student->cfg.eos_token_id != teacher->cfg.eos_token_id)
        return ml_fail(ML_ERR_CONFIG, "teacher and student disagree on BOS/EOS ids (%d/%d vs %d/%d): not the same tokenizer",
                       teacher->cfg.bos_token_id, teacher->cfg.eos_token_id, student->cfg.bos_token_id,
                       student->cfg.eos_token_id);
    return ML_OK;
}

typedef struct {
    ml_model *teacher;
    const ml_kd_config *cfg;
    ml_kd_stats *stats;
    float *kd, *ce; /* per-row parts, in the teacher's spare head scratch */
} kd_ctx;

static void kd_rows(void *p, float *logits, float *losses, const int32_t *targets, int row0, int rows, int V,
                    float grad_scale) {
    kd_ctx *k = p;
    ml_model *t = k->teacher;
    const int C = t->cfg.hidden_size;
    float *zt = t->head_scratch;
    ml_linear_forward(t, ML_P_LM_HEAD, -1, zt, t->ln_f + (int64_t)row0 * C, rows);
    ml_kd_rows(logits, zt, k->kd, k->ce, targets, rows, V, k->cfg, grad_scale);
    const float w = k->cfg->ce_weight;
    for (int r = 0; r < rows; r++) {
        losses[r] = (1.0f - w) * k->kd[r] + w * k->ce[r];
        if (targets[r] >= 0) {
            k->stats->kd_sum += k->kd[r];
            k->stats->ce_sum += k->ce[r];
            k->stats->count++;
        }
    }
}

ml_status ml_kd_head_loss(ml_model *student, ml_model *teacher, const ml_batch *b, const ml_kd_config *c,
                          float grad_scale, double *loss_sum, int64_t *count, ml_kd_stats *stats) {
    ML_TRY(ml_kd_check_pair(student, teacher));
    if (teacher->head_chunk < student->head_chunk)
        return ml_fail(ML_ERR_ARG, "teacher reserved for fewer tokens than the student");
    ml_kd_stats local = {0};
    /* per-row parts live in the two row slots after the teacher's logits chunk */
    float *tail = teacher->head_scratch + (size_t)teacher->head_chunk * teacher->cfg.vocab_size;
    kd_ctx k = {teacher, c, stats ? stats : &local, tail, tail + teacher->head_chunk};
    return ml_model_head_custom(student, b, kd_rows, &k, grad_scale, loss_sum, count);
}

typedef struct {
    const ml_logit_batch *lb;
    int K;
    const ml_kd_config *cfg;
    ml_kd_tail tail;
    ml_kd_stats *stats;
    float *ce; /* per-row cross-entropy, in the head's spare per-row slot */
} kd_cache_ctx;

static void kd_cache_rows(void *p, float *logits, float *losses, const int32_t *targets, int row0, int rows, int V,
                          float grad_scale) {
    kd_cache_ctx *k = p;
    const int64_t o = (int64_t)row0 * k->K;
    ml_kd_sparse_rows(logits, k->lb->ids + o, k->lb->logprobs + o, k->lb->tail + row0, k->K, losses, k->ce, targets,
                      rows, V, k->cfg, k->tail, grad_scale);
    const float w = k->cfg->ce_weight;
    for (int r = 0; r < rows; r++) {
        const float kd = losses[r];
        losses[r] = (1.0f - w) * kd + w * k->ce[r];
        if (targets[r] >= 0) {
            k->stats->kd_sum += kd;
            k->stats->ce_sum += k->ce[r];
            k->stats->count++;
        }
    }
}

ml_status ml_kd_cache_head_loss(ml_model *student, const ml_logit_batch *lb, int K, const ml_batch *b,
                                const ml_kd_config *c, ml_kd_tail tail, float grad_scale, double *loss_sum,
                                int64_t *count, ml_kd_stats *stats) {
    if (K < 1 || K > ML_KD_MAX_TOPK) return ml_fail(ML_ERR_ARG, "top-K of %d not in 1..%d", K, ML_KD_MAX_TOPK);
    ml_kd_stats local = {0};
    /* the fused head's per-row area is 2 * chunk floats: losses, then this */
    float *ce = student->head_scratch + (size_t)student->head_chunk * student->cfg.vocab_size + student->head_chunk;
    kd_cache_ctx k = {lb, K, c, tail, stats ? stats : &local, ce};
    return ml_model_head_custom(student, b, kd_cache_rows, &k, grad_scale, loss_sum, count);
}
