/* Distillation through the student's fused LM head: the teacher (already run forward on the same
 * batch) supplies its logits chunk by chunk, so neither model's [B,T,V] logits are ever stored. */
#ifndef ML_KD_HEAD_H
#define ML_KD_HEAD_H

#include "distill/kd_loss.h"
#include "model/model.h"

typedef struct {
    double kd_sum, ce_sum; /* summed over scored tokens: tau^2 * divergence, cross-entropy */
    int64_t count;
} ml_kd_stats;

/* Teacher and student must share the vocabulary (and tokenizer); both reserved for the batch. */
ml_status ml_kd_check_pair(const ml_model *student, const ml_model *teacher);

/* Loss = (1 - ce_weight) * tau^2 * D + ce_weight * CE per token; loss_sum/count as ml_model_head_loss. */
ml_status ml_kd_head_loss(ml_model *student, ml_model *teacher, const ml_batch *b, const ml_kd_config *c,
                          float grad_scale, double *loss_sum, int64_t *count, ml_kd_stats *stats);

/* Distillation from a teacher-logit cache batch (distill/logit_cache.h): the sparse losses of
 * ml_kd_sparse_rows on each chunk of the student's fused head, same reporting as ml_kd_head_loss. */
typedef struct ml_logit_batch ml_logit_batch;
ml_status ml_kd_cache_head_loss(ml_model *student, const ml_logit_batch *lb, int K, const ml_batch *b,
                                const ml_kd_config *c, ml_kd_tail tail, float grad_scale, double *loss_sum,
                                int64_t *count, ml_kd_stats *stats);

#endif
