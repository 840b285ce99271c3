/* Model configuration: one struct for every MobileLLM variant (v1, LS, R1, Pro).
 * Parsed from and written to Hugging Face config.json dialects by model/config_json.c. */
#ifndef ML_CONFIG_H
#define ML_CONFIG_H

#include <stdint.h>

#include "common/status.h"

#define ML_MAX_LAYERS 256

typedef enum {
    ML_DIALECT_LLAMA = 0,   /* model_type llama (MobileLLM v1, LS) */
    ML_DIALECT_MOBILELLM,   /* model_type mobilellm (the hub's name for v1; share_embedding) */
    ML_DIALECT_LLAMA4_TEXT, /* model_type llama4_text (MobileLLM-R1) */
    ML_DIALECT_MINISTRAL,   /* model_type ministral (Pro-style per-layer sliding window) */
} ml_dialect;

typedef enum {
    ML_ROPE_HALF_SPLIT = 0, /* HF Llama rotate_half: pairs (i, i + d/2) */
    ML_ROPE_ADJACENT,       /* Llama-4 / Meta: pairs (2i, 2i + 1) */
} ml_rope_pairing;

typedef struct {
    ml_dialect dialect;
    int vocab_size;
    int hidden_size;       /* C */
    int intermediate_size; /* FFN width F (for llama4_text: intermediate_size_mlp) */
    int num_layers;        /* distinct blocks L */
    int num_heads;         /* query heads H */
    int num_kv_heads;      /* key/value heads (GQA) */
    int head_dim;          /* hd */
    int max_position_embeddings;
    float rms_norm_eps;
    float rope_theta;
    float initializer_range;
    int tie_word_embeddings; /* LM head is the embedding matrix (no lm_head.weight) */
    int layer_repeat;        /* each block applied this many times in a row (1; MobileLLM-LS: 2) */
    int use_qk_norm;         /* weightless RMS norm on q and k after RoPE (R1) */
    ml_rope_pairing rope_pairing;
    int sliding_window;                 /* window length for sliding layers (0: none) */
    uint8_t layer_sliding[ML_MAX_LAYERS]; /* 1: layer i uses the sliding window */
    uint8_t layer_rope[ML_MAX_LAYERS];    /* 1: layer i applies RoPE (Llama-4 no_rope_layers) */
    int bos_token_id, eos_token_id, pad_token_id; /* -1 when absent */
    char name[128]; /* preset name or source, for messages only */
} ml_config;

/* "llama", "mobilellm", "llama4_text", "ministral" */
const char *ml_dialect_name(ml_dialect d);

/* Fill derived fields and reject inconsistent values (one message naming the field). */
ml_status ml_config_validate(ml_config *c);

/* Parameter count (embedding counted once when tied). */
int64_t ml_config_num_params(const ml_config *c);

/* Training FLOPs per token for a forward+backward pass at sequence length T:
 * 6 * (matmul parameters incl. the LM head) + attention (12 * layers_applied * T_eff * H * hd). */
double ml_config_train_flops_per_token(const ml_config *c, int T);

/* Number of block applications (num_layers * layer_repeat). */
static inline int ml_config_applied_layers(const ml_config *c) { return c->num_layers * c->layer_repeat; }

/* Parse an HF-style config.json text / file (any supported dialect). */
ml_status ml_config_from_json(ml_config *c, const char *json_text, const char *where);
ml_status ml_config_load(ml_config *c, const char *path);
/* Serialize in the config's own dialect (for export and for checkpoints). Returns a malloc'd string.
 * The weights' dtype is written as "float32" (the training state). */
ml_status ml_config_to_json(const ml_config *c, char **json_text);
/* The same with the dtype of the exported weights ("float32", "bfloat16", "float16") under "dtype"
 * (what transformers >= 4.56 reads) and "torch_dtype" (what older transformers read; 5.x ignores it
 * silently when "dtype" is present). */
ml_status ml_config_to_json_dtype(const ml_config *c, const char *dtype, char **json_text);

#endif
