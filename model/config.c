/* Model configuration: validation, parameter counts, FLOP estimates.
 * The JSON side (HF config.json dialects) lives in model/config_json.c. */
#include "model/config.h"

#include <math.h>
#include <string.h>

/* Upper bounds keep every size product that the model code forms (V*C, T*C, ...) far from int
 * overflow and catch garbage values early. They are well above any MobileLLM shape. */
#define ML_MAX_VOCAB (1 << 24)
#define ML_MAX_WIDTH (1 << 20)
#define ML_MAX_HEADS 4096
#define ML_MAX_POSITIONS (1 << 24)

const char *ml_dialect_name(ml_dialect d) {
    switch (d) {
    case ML_DIALECT_LLAMA: return "llama";
    case ML_DIALECT_MOBILELLM: return "mobilellm";
    case ML_DIALECT_LLAMA4_TEXT: return "llama4_text";
    case ML_DIALECT_MINISTRAL: return "ministral";
    }
    return "?";
}

static ml_status check_size(int v, int max, const char *field) {
    if (v <= 0) return ml_fail(ML_ERR_CONFIG, "%s must be positive (got %d)", field, v);
    if (v > max) return ml_fail(ML_ERR_CONFIG, "%s = %d is larger than the supported maximum %d", field, v, max);
    return ML_OK;
}

static ml_status check_token(int id, int vocab, const char *field) {
    if (id < -1 || id >= vocab)
        return ml_fail(ML_ERR_CONFIG, "%s = %d is outside the vocabulary [0, %d) (use -1 for none)", field, id,
                       vocab);
    return ML_OK;
}

ml_status ml_config_validate(ml_config *c) {
    if ((unsigned)c->dialect > ML_DIALECT_MINISTRAL)
        return ml_fail(ML_ERR_CONFIG, "dialect: unknown value %d", (int)c->dialect);
    if ((unsigned)c->rope_pairing > ML_ROPE_ADJACENT)
        return ml_fail(ML_ERR_CONFIG, "rope_pairing: unknown value %d", (int)c->rope_pairing);

    ML_TRY(check_size(c->vocab_size, ML_MAX_VOCAB, "vocab_size"));
    ML_TRY(check_size(c->hidden_size, ML_MAX_WIDTH, "hidden_size"));
    ML_TRY(check_size(c->intermediate_size, ML_MAX_WIDTH, "intermediate_size"));
    if (c->num_layers > ML_MAX_LAYERS)
        return ml_fail(ML_ERR_CONFIG, "num_hidden_layers = %d exceeds ML_MAX_LAYERS (%d)", c->num_layers,
                       ML_MAX_LAYERS);
    ML_TRY(check_size(c->num_layers, ML_MAX_LAYERS, "num_hidden_layers"));
    ML_TRY(check_size(c->num_heads, ML_MAX_HEADS, "num_attention_heads"));

    /* Derived fields: GQA defaults to MHA, head_dim to C/H (as HF does when the field is absent). */
    if (c->num_kv_heads == 0) c->num_kv_heads = c->num_heads;
    ML_TRY(check_size(c->num_kv_heads, ML_MAX_HEADS, "num_key_value_heads"));
    if (c->num_heads % c->num_kv_heads != 0)
        return ml_fail(ML_ERR_CONFIG,
                       "num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)", c->num_heads,
                       c->num_kv_heads);
    if (c->head_dim == 0) {
        if (c->hidden_size % c->num_heads != 0)
            return ml_fail(ML_ERR_CONFIG,
                           "head_dim is not given and hidden_size (%d) is not a multiple of "
                           "num_attention_heads (%d)",
                           c->hidden_size, c->num_heads);
        c->head_dim = c->hidden_size / c->num_heads;
    }
    ML_TRY(check_size(c->head_dim, ML_MAX_HEADS, "head_dim"));
    if (c->head_dim % 2 != 0)
        return ml_fail(ML_ERR_CONFIG, "head_dim = %d must be even (RoPE rotates pairs)", c->head_dim);
    if ((int64_t)c->num_heads * c->head_dim > ML_MAX_WIDTH)
        return ml_fail(ML_ERR_CONFIG, "num_attention_heads * head_dim = %lld is too large",
                       (long long)c->num_heads * c->head_dim);

    ML_TRY(check_size(c->max_position_embeddings, ML_MAX_POSITIONS, "max_position_embeddings"));
    if (!(c->rms_norm_eps > 0.0f) || !isfinite(c->rms_norm_eps))
        return ml_fail(ML_ERR_CONFIG, "rms_norm_eps must be a positive number (got %g)", (double)c->rms_norm_eps);
    if (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta))
        return ml_fail(ML_ERR_CONFIG, "rope_theta must be a positive number (got %g)", (double)c->rope_theta);
    if (!(c->initializer_range > 0.0f) || !isfinite(c->initializer_range))
        return ml_fail(ML_ERR_CONFIG, "initializer_range must be a positive number (got %g)",
                       (double)c->initializer_range);
    if (c->tie_word_embeddings != 0 && c->tie_word_embeddings != 1)
        return ml_fail(ML_ERR_CONFIG, "tie_word_embeddings must be 0 or 1 (got %d)", c->tie_word_embeddings);
    if (c->use_qk_norm != 0 && c->use_qk_norm != 1)
        return ml_fail(ML_ERR_CONFIG, "use_qk_norm must be 0 or 1 (got %d)", c->use_qk_norm);
    if (c->layer_repeat < 1)
        return ml_fail(ML_ERR_CONFIG, "layer_repeat must be at least 1 (got %d)", c->layer_repeat);
    if ((int64_t)c->layer_repeat * c->num_layers > 4 * ML_MAX_LAYERS)
        return ml_fail(ML_ERR_CONFIG, "layer_repeat = %d applies %lld blocks, more than %d", c->layer_repeat,
                       (long long)c->layer_repeat * c->num_layers, 4 * ML_MAX_LAYERS);

    /* Per-layer flags: 0/1 only; entries past num_layers are cleared so that configs compare equal. */
    int any_sliding = 0, any_nope = 0;
    for (int i = 0; i < ML_MAX_LAYERS; i++) {
        if (i >= c->num_layers) {
            c->layer_sliding[i] = 0;
            c->layer_rope[i] = 0;
            continue;
        }
        if (c->layer_sliding[i] > 1)
            return ml_fail(ML_ERR_CONFIG, "layer_sliding[%d] must be 0 or 1 (got %d)", i, c->layer_sliding[i]);
        if (c->layer_rope[i] > 1)
            return ml_fail(ML_ERR_CONFIG, "layer_rope[%d] must be 0 or 1 (got %d)", i, c->layer_rope[i]);
        any_sliding |= c->layer_sliding[i];
        any_nope |= !c->layer_rope[i];
    }
    if (c->sliding_window < 0)
        return ml_fail(ML_ERR_CONFIG, "sliding_window must not be negative (got %d)", c->sliding_window);
    if (any_sliding && c->sliding_window == 0) {
        for (int i = 0; i < c->num_layers; i++)
            if (c->layer_sliding[i])
                return ml_fail(ML_ERR_CONFIG,
                               "layer %d is a sliding-window layer (layer_types) but sliding_window is not set", i);
    }
    /* A window that no layer uses means nothing; dropping it keeps round trips exact. */
    if (!any_sliding) c->sliding_window = 0;

    /* What each HF dialect can express; everything we accept must be exportable as its dialect. */
    const char *dn = ml_dialect_name(c->dialect);
    if (c->dialect == ML_DIALECT_LLAMA4_TEXT) {
        if (c->rope_pairing != ML_ROPE_ADJACENT)
            return ml_fail(ML_ERR_CONFIG, "rope_pairing: llama4_text rotates adjacent pairs (ML_ROPE_ADJACENT)");
        if (any_sliding)
            return ml_fail(ML_ERR_CONFIG,
                           "layer_types: llama4_text has no sliding-window layers (use the ministral dialect)");
    } else {
        if (c->rope_pairing != ML_ROPE_HALF_SPLIT)
            return ml_fail(ML_ERR_CONFIG, "rope_pairing: the %s dialect uses half-split RoPE (ML_ROPE_HALF_SPLIT)",
                           dn);
        if (c->use_qk_norm)
            return ml_fail(ML_ERR_CONFIG, "use_qk_norm: the %s dialect has no QK-norm (use llama4_text)", dn);
        if (any_nope)
            return ml_fail(ML_ERR_CONFIG,
                           "layer_rope: the %s dialect applies RoPE in every layer (NoPE layers need llama4_text)",
                           dn);
    }

    ML_TRY(check_token(c->bos_token_id, c->vocab_size, "bos_token_id"));
    ML_TRY(check_token(c->eos_token_id, c->vocab_size, "eos_token_id"));
    ML_TRY(check_token(c->pad_token_id, c->vocab_size, "pad_token_id"));
    c->name[sizeof c->name - 1] = 0;
    return ML_OK;
}

/* Weights of the matmuls in one block: q, k, v, o and the three SwiGLU projections. */
static int64_t block_matmul_params(const ml_config *c) {
    int64_t C = c->hidden_size, F = c->intermediate_size;
    int64_t q = (int64_t)c->num_heads * c->head_dim, kv = (int64_t)c->num_kv_heads * c->head_dim;
    return C * q + 2 * C * kv + q * C + 3 * C * F;
}

int64_t ml_config_num_params(const ml_config *c) {
    int64_t C = c->hidden_size, V = c->vocab_size;
    /* Block: matmuls + two RMSNorm weights (QK-norm has no weight; no biases anywhere). */
    int64_t per_block = block_matmul_params(c) + 2 * C;
    int64_t n = V * C + (int64_t)c->num_layers * per_block + C; /* embedding, blocks, final norm */
    if (!c->tie_word_embeddings) n += V * C;                     /* separate lm_head */
    return n;
}

/* Mean number of keys a query attends to over positions 1..T: min(t, W) keys at position t
 * (a token sees itself and the previous W-1 tokens). W <= 0 means full causal attention,
 * whose mean is (T+1)/2, i.e. about T/2. */
static double mean_attended_keys(int T, int W) {
    if (T <= 0) return 0.0;
    double t = (double)T;
    if (W <= 0 || W >= T) return (t + 1.0) / 2.0;
    double w = (double)W;
    return (w * (w + 1.0) / 2.0 + (t - w) * w) / t;
}

double ml_config_train_flops_per_token(const ml_config *c, int T) {
    double applied = (double)ml_config_applied_layers(c);
    /* Forward 2 FLOPs per weight per token, backward 4: 6 * (block matmuls + LM head). The embedding
     * lookup is a gather, not a matmul; the tied head still costs V*C per token. */
    double matmul = applied * (double)block_matmul_params(c) + (double)c->vocab_size * c->hidden_size;
    /* Attention scores (q.k) and the weighted sum (p.v) are 2 * H * hd FLOPs per attended key each,
     * forward; times 3 for forward + backward: 12 * H * hd * T_eff per layer application. */
    double attn = 0.0;
    for (int i = 0; i < c->num_layers; i++) {
        int W = c->layer_sliding[i] ? c->sliding_window : 0;
        attn += (double)c->layer_repeat * mean_attended_keys(T, W);
    }
    return 6.0 * matmul + 12.0 * (double)c->num_heads * c->head_dim * attn;
}
