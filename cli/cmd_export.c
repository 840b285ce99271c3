#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli/args.h"
#include "interop/gguf_export.h"
#include "interop/hf_checkpoint.h"
#include "interop/hf_tokenizer.h"
#include "interop/model_load.h"
#include "model/checkpoint.h"
#include "model/linear.h"

static int export_gguf(const char *ckpt, const char *out, const char *type_name, const char *tokenizer) {
    ml_gguf_export_opts o = {.type = ML_GGML_F32, .tokenizer = tokenizer, .type_given = type_name != NULL};
    const char *tn = type_name ? type_name : "f32";
    if (!strcasecmp(tn, "f32")) o.type = ML_GGML_F32;
    else if (!strcasecmp(tn, "f16")) o.type = ML_GGML_F16;
    else if (!strcasecmp(tn, "q8_0")) o.type = ML_GGML_Q8_0;
    else if (!strcasecmp(tn, "q4_0")) o.type = ML_GGML_Q4_0;
    else {
        fprintf(stderr, "mobilellm export: --type must be f32, f16, q8_0 or q4_0, not '%s'\n", tn);
        return 2;
    }
    /* Refuse before loading the weights when the architecture cannot be expressed. */
    ml_config c;
    if (ml_checkpoint_read_config(ckpt, &c) != ML_OK || ml_gguf_check_expressible(&c) != ML_OK)
        return ml_cli_fail("export");
    ml_model m; /* a quantized checkpoint with its transforms: blocks of the latent weights, or dequantized ones */
    if (ml_model_load_any(ckpt, &m) != ML_OK) return ml_cli_fail("export");
    ml_status s = ml_model_refresh_weights(&m);
    if (s == ML_OK) s = ml_gguf_export(&m, out, &o);
    if (s == ML_OK)
        printf("%s: %s as GGUF arch llama, %s, %d blocks%s, %s vocabulary\n", out, m.cfg.name, ml_ggml_type_name(o.type),
               ml_config_applied_layers(&m.cfg), m.cfg.layer_repeat > 1 ? " (shared blocks written once per application)" : "",
               tokenizer && strcasecmp(tokenizer, "bytes") ? tokenizer : "byte");
    ml_model_free(&m);
    return s == ML_OK ? 0 : ml_cli_fail("export");
}

int ml_cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *format = "hf", *out = NULL, *dtype_name = NULL, *type_name = NULL, *tokenizer = NULL;
    int shard_mb = 0, latent = 0;
    ml_opt opts[] = {
        {"ckpt", ML_OPT_STR, &ckpt, "checkpoint (.h5)", 1, 0},
        {"format", ML_OPT_STR, &format, "hf (Hugging Face safetensors + config.json) | gguf (llama.cpp)", 0, 0},
        {"out", ML_OPT_STR, &out, "output directory (hf) or file (gguf)", 1, 0},
        {"dtype", ML_OPT_STR, &dtype_name, "hf: f32 | bf16 | f16 (default: the dtype the weights were imported in, else f32)", 0, 0},
        {"shard-mb", ML_OPT_INT, &shard_mb, "hf: split into shards of at most this many MB (default: one file)", 0, 0},
        {"type", ML_OPT_STR, &type_name, "gguf: f32 | f16 | q8_0 | q4_0 for the matrices (default f32; norms stay f32)", 0, 0},
        {"latent", ML_OPT_FLAG, &latent, "hf, quantized checkpoint: the latent fp32 weights (default: dequantized, what the model computes with)", 0, 0},
        {"tokenizer", ML_OPT_STR, &tokenizer, "the model's tokenizer (bytes, SentencePiece .model or byte-level BPE tokenizer.json), written beside the weights (hf) or as the GGUF vocabulary", 0, 0},
    };
    int rc = ml_args_parse("export",
                           "--ckpt CKPT --format hf --out DIR [--dtype f32|bf16|f16]\n"
                           "       --ckpt CKPT --format gguf --out FILE.gguf [--type f32|f16|q8_0|q4_0] [--tokenizer SPM.model]",
                           opts, 8, argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    int gguf = !strcasecmp(format, "gguf");
    if (!gguf && strcasecmp(format, "hf") != 0) {
        fprintf(stderr, "mobilellm export: unknown --format '%s' (supported: hf, gguf)\n", format);
        return 2;
    }
    if (gguf && latent) {
        fprintf(stderr, "mobilellm export: --latent is for --format hf (gguf writes the scheme's blocks)\n");
        return 2;
    }
    if (gguf && (dtype_name || shard_mb)) {
        fprintf(stderr, "mobilellm export: --dtype and --shard-mb are for --format hf (gguf takes --type)\n");
        return 2;
    }
    if (!gguf && type_name) {
        fprintf(stderr, "mobilellm export: --type is for --format gguf (hf takes --dtype)\n");
        return 2;
    }
    if (gguf) return export_gguf(ckpt, out, type_name, tokenizer);
    if (shard_mb < 0) {
        fprintf(stderr, "mobilellm export: --shard-mb must not be negative\n");
        return 2;
    }
    ml_model m; /* quantized: dequantized weights unless --latent */
    if ((latent ? ml_checkpoint_load(ckpt, &m, NULL) : ml_model_load_any(ckpt, &m)) != ML_OK) return ml_cli_fail("export");
    if (ml_model_refresh_weights(&m) != ML_OK) {
        ml_model_free(&m);
        return ml_cli_fail("export");
    }
    const char *dn = dtype_name ? dtype_name : (m.source_dtype[0] ? m.source_dtype : "F32");
    ml_st_dtype dt = ML_ST_F32;
    if (!strcasecmp(dn, "f32")) dt = ML_ST_F32;
    else if (!strcasecmp(dn, "bf16")) dt = ML_ST_BF16;
    else if (!strcasecmp(dn, "f16")) dt = ML_ST_F16;
    else {
        fprintf(stderr, "mobilellm export: --dtype must be f32, bf16 or f16, not '%s'\n", dn);
        ml_model_free(&m);
        return 2;
    }
    ml_status s = ml_hf_export(&m, out, dt, (uint64_t)shard_mb * 1000000ull);
    if (s == ML_OK && tokenizer) s = ml_hf_write_tokenizer(out, tokenizer, m.cfg.max_position_embeddings);
    if (s == ML_OK)
        printf("%s: %s, %lld parameters as %s (%s)\n", out, m.cfg.name, (long long)ml_config_num_params(&m.cfg),
               ml_st_dtype_name(dt), m.cfg.layer_repeat > 1 ? "shared blocks written once per application" : "HF layout");
    ml_model_free(&m);
    return s == ML_OK ? 0 : ml_cli_fail("export");
}
