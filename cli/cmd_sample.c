#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "interop/model_load.h"
#include "data/tokenizer.h"
#include "infer/sample.h"
#include "model/checkpoint.h"

static ml_status to_stream(void *user, int32_t token) { return ml_text_stream_push(user, token); }

int ml_cmd_sample(int argc, char **argv) {
    const char *ckpt = NULL, *prompt = "", *tok_spec = "bytes";
    int n_new = 128, bos = 0;
    int64_t seed = 0;
    ml_sampling so = {.temperature = 0.8f, .top_k = 0, .top_p = 1.0f};
    ml_opt opts[] = {
        {"ckpt", ML_OPT_STR, &ckpt, "checkpoint (.h5)", 1, 0},
        {"prompt", ML_OPT_STR, &prompt, "text to continue (default: empty, starts from BOS)", 0, 0},
        {"tokens", ML_OPT_INT, &n_new, "tokens to generate at most (default 128; stops at EOS)", 0, 0},
        {"temperature", ML_OPT_FLOAT, &so.temperature, "softmax temperature (default 0.8; 0 = greedy)", 0, 0},
        {"top-k", ML_OPT_INT, &so.top_k, "sample among the k most likely tokens (default 0: all)", 0, 0},
        {"top-p", ML_OPT_FLOAT, &so.top_p, "nucleus: smallest set with this probability (default 1: all)", 0, 0},
        {"seed", ML_OPT_I64, &seed, "random seed (default 0); the same seed gives the same text", 0, 0},
        {"tokenizer", ML_OPT_STR, &tok_spec, "bytes (default) or a tokenizer file", 0, 0},
        {"bos", ML_OPT_FLAG, &bos, "begin the prompt with BOS (as data tokenized with --bos)", 0, 0},
    };
    int rc = ml_args_parse("sample",
                           "--ckpt CKPT [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--top-p P] "
                           "[--seed S] [--tokenizer bytes|PATH] [--bos]",
                           opts, 9, argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    if (n_new < 0) {
        fprintf(stderr, "mobilellm sample: --tokens %d must be >= 0\n", n_new);
        return 2;
    }
    ml_sampler smp = {0};
    ml_model m;
    memset(&m, 0, sizeof m);
    ml_tokenizer *tok = NULL;
    ml_id_buf ids = {0};
    ml_decoder dec;
    memset(&dec, 0, sizeof dec);
    ml_text_stream ts;
    memset(&ts, 0, sizeof ts);
    ml_gen_stats st;
    ml_status s = ml_tokenizer_open(&tok, tok_spec);
    if (s == ML_OK) s = ml_model_load_any(ckpt, &m);
    if (s == ML_OK && ml_tokenizer_vocab_size(tok) > (uint32_t)m.cfg.vocab_size)
        s = ml_fail(ML_ERR_CONFIG, "tokenizer %s has %u tokens, more than the model's %d", tok_spec,
                    ml_tokenizer_vocab_size(tok), m.cfg.vocab_size);
    if (s == ML_OK) s = ml_sampler_create(&smp, m.cfg.vocab_size, &so, (uint64_t)seed);
    if (s == ML_OK) {
        int add_bos = bos || !*prompt;
        if (add_bos && ml_tokenizer_bos(tok) < 0)
            s = ml_fail(ML_ERR_ARG, "the prompt is empty and tokenizer %s has no BOS token to start from", tok_spec);
        else
            s = ml_tokenizer_encode(tok, &ids, prompt, strlen(prompt), add_bos ? ML_TOK_ADD_BOS : 0);
    }
    if (s == ML_OK && ids.n == 0) s = ml_fail(ML_ERR_ARG, "the prompt gives no tokens");
    const int n_prompt = (int)ids.n;
    if (s == ML_OK) s = ml_decoder_create(&dec, &m, n_prompt + (n_new > 0 ? n_new : 1), 256);
    if (s == ML_OK)
        s = ml_text_stream_init(&ts, tok, stdout, (const int32_t *)ids.ids, n_prompt, (size_t)n_prompt + n_new);
    if (s == ML_OK) {
        int32_t eos = ml_tokenizer_eos(tok) >= 0 ? ml_tokenizer_eos(tok) : m.cfg.eos_token_id;
        s = ml_generate(&dec, &smp, (const int32_t *)ids.ids, n_prompt, n_new, eos, to_stream, &ts, &st);
    }
    if (s == ML_OK) s = ml_text_stream_finish(&ts);
    if (s == ML_OK) {
        fprintf(stderr, "\nprefill: %d tokens in %.3f s (%.1f tokens/s); decode: %d tokens in %.3f s (%.1f tokens/s)%s\n",
                st.prompt_tokens, st.prefill_s, st.prefill_s > 0 ? st.prompt_tokens / st.prefill_s : 0.0,
                st.new_tokens, st.decode_s, st.decode_s > 0 ? st.new_tokens / st.decode_s : 0.0,
                st.hit_eos ? "; stopped at EOS" : "");
    }
    ml_text_stream_free(&ts);
    ml_decoder_free(&dec);
    ml_id_buf_free(&ids);
    ml_sampler_free(&smp);
    ml_tokenizer_free(tok);
    if (m.params) ml_model_free(&m);
    return s == ML_OK ? 0 : ml_cli_fail("sample");
}
