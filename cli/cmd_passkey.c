#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "common/atomic_file.h"
#include "infer/passkey.h"
#include "interop/model_load.h"
#include "model/checkpoint.h"

int ml_cmd_passkey(int argc, char **argv) {
    const char *ckpt = NULL, *tokenizer = "bytes", *lengths_s = "256,512,1024", *filler_path = NULL, *json = NULL;
    int samples = 20, key_digits = 5;
    int64_t seed = 1;
    ml_opt opts[] = {
        {"ckpt", ML_OPT_STR, &ckpt, "checkpoint (.h5) or Hugging Face directory", 1, 0},
        {"tokenizer", ML_OPT_STR, &tokenizer, "bytes or a tokenizer file (default bytes)", 0, 0},
        {"lengths", ML_OPT_STR, &lengths_s, "prompt lengths in tokens, comma-separated (default 256,512,1024)", 0, 0},
        {"samples", ML_OPT_INT, &samples, "prompts per length, depths spread evenly (default 20)", 0, 0},
        {"seed", ML_OPT_I64, &seed, "seed for the pass keys (default 1)", 0, 0},
        {"filler", ML_OPT_STR, &filler_path, "text file to use as filler (default: neutral repeated sentences)", 0, 0},
        {"json", ML_OPT_STR, &json, "also write the results as JSON", 0, 0},
        {"key-digits", ML_OPT_INT, &key_digits, "digits of each pass key, 1 to 9 (default 5)", 0, 0},
    };
    int rc = ml_args_parse("passkey", "--ckpt CKPT [--tokenizer PATH] [--lengths 512,1024,...] [--samples N]", opts, 8,
                           argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    int lengths[64], n = 0;
    for (const char *p = lengths_s; *p && n < 64;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0 || v > 1 << 20) {
            fprintf(stderr, "mobilellm passkey: --lengths: '%s' is not a list of positive lengths\n", lengths_s);
            return 2;
        }
        lengths[n++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') {
            fprintf(stderr, "mobilellm passkey: --lengths: unexpected '%c' in '%s'\n", *end, lengths_s);
            return 2;
        }
    }
    if (samples < 1) {
        fprintf(stderr, "mobilellm passkey: --samples must be positive\n");
        return 2;
    }
    if (key_digits < 1 || key_digits > 9) {
        fprintf(stderr, "mobilellm passkey: --key-digits %d: expected 1 to 9\n", key_digits);
        return 2;
    }
    char *filler = NULL;
    size_t filler_n = 0;
    if (filler_path && ml_read_file(filler_path, &filler, &filler_n) != ML_OK) return ml_cli_fail("passkey");
    ml_tokenizer *tok = NULL;
    ml_model m;
    if (ml_tokenizer_open(&tok, tokenizer) != ML_OK) {
        free(filler);
        return ml_cli_fail("passkey");
    }
    if (ml_model_load_any(ckpt, &m) != ML_OK) {
        ml_tokenizer_free(tok);
        free(filler);
        return ml_cli_fail("passkey");
    }
    m.recompute = 1; /* forward only: blocks share one set of buffers */
    ml_status s = ML_OK;
    if (tok->vocab_size > (uint32_t)m.cfg.vocab_size)
        s = ml_fail(ML_ERR_CONFIG, "tokenizer vocabulary (%u) is larger than the model's (%d)", tok->vocab_size,
                    m.cfg.vocab_size);
    ml_passkey_result res[64];
    ml_passkey_opts o = {.samples = samples, .seed = (uint64_t)seed, .filler = filler, .key_digits = key_digits,
                         .progress = {ml_cli_progress_rewrite, NULL}};
    if (s == ML_OK) s = ml_passkey_eval(&m, tok, lengths, n, &o, res);
    char frac[64][24];
    if (s == ML_OK) {
        printf("%-8s %-8s %-9s %-10s %s\n", "length", "tokens", "accuracy", "retrieved", "answer nll");
        for (int i = 0; i < n; i++)
            printf("%-8d %-8.0f %7.1f%%  %-10s %.3f%s\n", res[i].length, res[i].mean_tokens,
                   res[i].samples ? 100.0 * res[i].correct / res[i].samples : 0.0,
                   (snprintf(frac[i], sizeof frac[i], "%d/%d", res[i].correct, res[i].samples), frac[i]), res[i].answer_nll,
                   res[i].skipped ? " (some prompts skipped: the answer did not fit)" : "");
    }
    if (s == ML_OK && json) {
        ml_atomic_file f;
        s = ml_atomic_begin(&f, json, 1);
        if (s == ML_OK) {
            fprintf(f.fp, "{\"model\":\"%s\",\"key_digits\":%d,\"results\":[", m.cfg.name, key_digits);
            for (int i = 0; i < n; i++) {
                fprintf(f.fp, "%s{\"length\":%d,\"mean_tokens\":%.1f,\"samples\":%d,\"correct\":%d,\"accuracy\":%.4f",
                        i ? "," : "", res[i].length, res[i].mean_tokens, res[i].samples, res[i].correct,
                        res[i].samples ? (double)res[i].correct / res[i].samples : 0.0);
                if (isfinite(res[i].answer_nll)) fprintf(f.fp, ",\"answer_nll\":%.4f", res[i].answer_nll);
                fprintf(f.fp, "}");
            }
            fprintf(f.fp, "]}\n");
            s = ml_atomic_commit(&f);
        }
    }
    ml_model_free(&m);
    ml_tokenizer_free(tok);
    free(filler);
    return s == ML_OK ? 0 : ml_cli_fail("passkey");
}
