/* First-order influence of training samples on target sets (MobileLLM-R1 §5, Eq. 2 with H = c·I):
 *   I(x_i, c; θ) = < ∇θ ℓ(x_i; θ), ḡ_c(θ) >,   ḡ_c = mean over the target's tokens of ∇θ ℓ,
 * restricted to a selection of weight matrices. Positive = a gradient step on x_i lowers the target's
 * loss to first order (the sign Eq. 7 keeps).
 *
 * Per-sample gradients are never materialised. A batch of B samples runs one forward and one backward
 * (loss = sum over rows of each row's mean token loss, so each row's activation gradients are that
 * sample's own); a backward observer (model/model.h) sees every selected product and adds
 *   linear W (y = x W^T):  < g_i, Ḡ > = Σ_{t ∈ i} dy_t · (Ḡ x_t)     (one extra GEMM x Ḡ^T per target)
 *   embedding lookup:      < g_i, Ḡ > = Σ_{t ∈ i} dy_t · Ḡ[token_t]
 * to the sample's score (a tied embedding gets both its head and its lookup terms; a shared block
 * both applications). Cost: one training pass over the scored samples plus, per target, one forward
 * product of each selected matrix (the LM head's dominates). Norm weights are never scored. The model
 * must have no weight transforms (scores are for the used weights). */
#ifndef ML_MIX_INFLUENCE_H
#define ML_MIX_INFLUENCE_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "data/batch_reader.h"
#include "model/model.h"

/* Selected matrices from a spec, a comma-separated list of
 *   embed      the token embedding (tied: the same tensor as the head, both uses)
 *   head       the LM head (tied: the embedding)
 *   last:K     every matrix of the last K blocks       block:I   every matrix of block I
 *   all        every matrix                            or a parameter's HF name
 * sel[n_params] gets 1 for selected parameters. desc (optional) names them briefly. */
ml_status ml_influence_select(const ml_model *m, const char *spec, unsigned char *sel, char *desc, size_t desc_n);

/* Mean gradient over the target tokens of up to max_batches batches of `r` (read from its current
 * position; 0 = one pass): gbar[num_floats] holds it at the selected parameters' offsets, zero
 * elsewhere. loss/tokens (optional): the target's mean loss and scored tokens. The model is reserved
 * for B x T by the caller; its gradients are overwritten. */
ml_status ml_influence_target_grad(ml_model *m, ml_batch_reader *r, int B, int T, int max_batches,
                                   const unsigned char *sel, float *gbar, double *loss, int64_t *tokens);

/* Scores of the B rows of one batch against n_targets mean gradients:
 * scores[i * n_targets + c] = < ∇ ℓ_i, gbar[c] > with ℓ_i row i's mean token loss. row_loss[B]
 * (optional): each row's mean loss. The model's gradients are overwritten. */
ml_status ml_influence_score(ml_model *m, const ml_batch *b, const unsigned char *sel, const float *const *gbar,
                             int n_targets, double *scores, double *row_loss);

/* Dot product of two gradient arenas over the selected parameters (checks and brute force). */
double ml_influence_dot(const ml_model *m, const unsigned char *sel, const float *a, const float *b);

#endif
