/* Logit-distillation losses between a teacher and a student over the same vocabulary, per row of
 * logits, with the exact gradient with respect to the student's logits. Computed inside the fused
 * chunked LM head (model/model.c), so no [B,T,V] tensor is ever kept.
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

/* A kind is an index into the registry of losses (kd_loss.c: one row per divergence with its name,
 * its dense row function and its per-category terms for sparse targets); adding a loss is one row
 * and its functions in kd_loss.c, selected by name (ml_kd_kind_parse). */
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

/* One registry row. */
typedef struct {
    const char *name; /* "fkl", "rkl", "jsd": --loss and the stored run arguments */
    /* dense targets: rows of full logits, as ml_kd_rows */
    void (*rows)(float *zs, float *zt, float *kd, float *ce, const int32_t *targets, int n, int V,
                 const ml_kd_config *c, float grad_scale);
    /* sparse targets, one category with teacher q = exp(lq) and student P = exp(lP): adds the category's
     * term of D to *div and returns h = P dD/dP (*h) and g = dD/dP (*g) */
    void (*category)(double q, double lq, double P, double lP, double beta, double *div, double *h, double *g);
    ml_status (*check)(const ml_kd_config *c); /* its own parameters (NULL: none) */
} ml_kd_loss_def;

int ml_kd_num_kinds(void);
const ml_kd_loss_def *ml_kd_loss_def_of(ml_kd_kind kind); /* NULL when out of range */

/* Rows of logits: zs [n, V] student (overwritten by grad_scale * d loss / d zs when grad_scale != 0),
 * zt [n, V] teacher (overwritten: used as scratch). targets [n] for the CE part (< 0: row not scored).
 * kd[n], ce[n]: per-row divergence (already times tau^2) and cross-entropy; rows with target < 0 get
 * no loss and no gradient. */
void ml_kd_rows(float *zs, float *zt, float *kd, float *ce, const int32_t *targets, int n, int V,
                const ml_kd_config *c, float grad_scale);

/* ---- sparse targets: the teacher's top K (an offline cache, distill/logit_cache.h) ----
 * Per position the teacher gives K distinct ids, their log-probabilities lt_k (log-softmax of the raw
 * logits, temperature 1) and the tail mass m = 1 - sum_k exp(lt_k). The student's probabilities are
 * always its full-vocabulary softmax, p_s = softmax(z / tau), read at the K ids (not renormalised over
 * them: the usual top-k KD, as DistillKit's sparse losses do, so the gradient also pulls down the mass
 * the student puts outside the teacher's top K). The divergence D is taken over categories:
 *   renorm  the K ids. Teacher q_k = softmax_k(lt_k / tau), renormalised over the K ids; student
 *           P_k = p_s(id_k). Forward KL is then the cross-entropy to the sparse target minus its entropy
 *           (>= 0); reverse KL and JSD are sums over the K ids only (they can dip slightly below 0 when
 *           the student has mass outside them; use bucket for a proper divergence).
 *   bucket  the K ids plus one "rest" category: teacher q = softmax([lt_1..lt_K, log m] / tau) over
 *           K + 1 entries (at tau = 1 exactly [p_t(id_k), m]; at other tau the rest is tempered as if it
 *           were one token); student P_rest = 1 - sum_k P_k (kept >= 1e-20). A proper divergence
 *           between two distributions on K + 1 categories.
 * With g_c = dD/dP_c the gradient is exact: d D / d z_v = p_s(v) (g_c(v) - sum_c P_c g_c) / tau, where
 * c(v) is v's category (v outside the K ids: the rest category in bucket mode, g = 0 in renorm mode).
 * The reported and optimised loss is (1 - ce_weight) tau^2 D + ce_weight CE, as for dense targets. */
typedef enum { ML_KD_TAIL_RENORM = 0, ML_KD_TAIL_BUCKET } ml_kd_tail;
#define ML_KD_MAX_TOPK 1024

ml_status ml_kd_tail_parse(const char *name, ml_kd_tail *tail);
const char *ml_kd_tail_name(ml_kd_tail tail);

/* zs [n, V] student logits (overwritten by grad_scale * d loss / d zs when grad_scale != 0); ids, lt
 * [n, K] and tail [n] the teacher's top K per row (K <= ML_KD_MAX_TOPK, ids distinct and < V); targets,
 * kd, ce as ml_kd_rows. */
void ml_kd_sparse_rows(float *zs, const int32_t *ids, const float *lt, const float *tail, int K, float *kd, float *ce,
                       const int32_t *targets, int n, int V, const ml_kd_config *c, ml_kd_tail mode,
                       float grad_scale);

#endif
