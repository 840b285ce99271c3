/* Logit-distillation losses between a teacher and a student over the same vocabulary, per row of
 * logits, with the exact gradient with respect to the student's logits. Computed inside the fused
 * chunked LM head (train/model.c), so no [B,T,V] tensor is ever kept.
 *
 * With p = softmax(z / tau) for student (s) and teacher (t), the reported and optimised loss is
 *   (1 - ce_weight) * tau^2 * D(t, s) + ce_weight * CE(z_s, target)
 * where D is one of
 *   forward KL   KL(p_t || p_s) = sum p_t (log p_t - log p_s)          d/dz_s = (p_s - p_t) / tau
 *   reverse KL   KL(p_s || p_t) = sum p_s (log p_s - log p_t)          d/dz_s = p_s (log p_s - log p_t - KL) / tau
 *   JSD(beta)    beta KL(p_t || m) + (1 - beta) KL(p_s || m),  m = beta p_t + (1 - beta) p_s
 *                                                                      d/dz_s = (1 - beta) p_s (log(p_s/m) - S) / tau,
 *                                                                      S = sum p_s log(p_s / m)
 * (the tau^2 factor keeps gradient magnitudes comparable across temperatures, as in Hinton et al.). */
#ifndef ML_KD_LOSS_H
#define ML_KD_LOSS_H

#include <stdint.h>

#include "common/status.h"

typedef enum { ML_KD_FKL = 0, ML_KD_RKL, ML_KD_JSD } ml_kd_kind;

typedef struct {
    ml_kd_kind kind;
    float temperature; /* tau > 0 */
    float beta;        /* JSD mixing weight in (0, 1) */
    float ce_weight;   /* weight of the hard-label cross-entropy in [0, 1] */
} ml_kd_config;

ml_status ml_kd_kind_parse(const char *name, ml_kd_kind *kind);
const char *ml_kd_kind_name(ml_kd_kind kind);
ml_status ml_kd_config_check(const ml_kd_config *c);

/* Rows of logits: zs [n, V] student (overwritten by grad_scale * d loss / d zs when grad_scale != 0),
 * zt [n, V] teacher (overwritten: used as scratch). targets [n] for the CE part (< 0: row not scored).
 * kd[n], ce[n]: per-row divergence (already times tau^2) and cross-entropy; rows with target < 0 get
 * no loss and no gradient. */
void ml_kd_rows(float *zs, float *zt, float *kd, float *ce, const int32_t *targets, int n, int V,
                const ml_kd_config *c, float grad_scale);

#endif
