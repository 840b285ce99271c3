/* A tiny MobileLLM trained on the bytes of a string through the public API (include/mobilellm.h):
 * init from a config, a few AdamW steps with the loss falling, logits, byte tokenizer encode/decode,
 * save and reload. Build against the installed library:
 *     cc train_tiny.c $(pkg-config --static --cflags --libs mobilellm) -o train_tiny
 * Prints "step N loss X" lines, then "loss fell: A -> B", "decoded: ..." and "ok". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mobilellm.h>

/* MobileLLM-style (tied embeddings, GQA, SwiGLU, RoPE) and small: 259 = 256 bytes + BOS, EOS, PAD */
static const char *CONFIG =
    "{\"model_type\": \"llama\", \"vocab_size\": 259, \"hidden_size\": 64, \"intermediate_size\": 128,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16,"
    " \"max_position_embeddings\": 128, \"rms_norm_eps\": 1e-5, \"initializer_range\": 0.02, \"rope_theta\": 10000.0,"
    " \"tie_word_embeddings\": true, \"bos_token_id\": 256, \"eos_token_id\": 257, \"pad_token_id\": 258}";

static const char *TEXT =
    "MobileLLM trains small language models on the CPU. Small models learn the bytes of a string quickly, "
    "and the loss falls step by step as the model memorises this sentence. ";

#define CHECK(call)                                                                   \
    do {                                                                              \
        if ((call) != MOBILELLM_OK) {                                                 \
            fprintf(stderr, "train_tiny: %s: %s\n", #call, mobilellm_last_error());   \
            return 1;                                                                 \
        }                                                                             \
    } while (0)

int main(int argc, char **argv) {
    const char *save_path = argc > 1 ? argv[1] : NULL;
    printf("mobilellm %s\n", mobilellm_version());
    mobilellm_tokenizer *tok;
    CHECK(mobilellm_tokenizer_open(&tok, "bytes"));
    int32_t *ids;
    size_t n;
    CHECK(mobilellm_encode(tok, TEXT, strlen(TEXT), 1, &ids, &n));
    printf("encoded %zu bytes into %zu tokens (vocabulary %d)\n", strlen(TEXT), n, mobilellm_tokenizer_vocab_size(tok));

    mobilellm_model *m;
    CHECK(mobilellm_model_init(&m, CONFIG, 7));
    printf("model: %lld parameters\n", (long long)mobilellm_model_num_params(m));

    enum { B = 4, T = 32, STEPS = 30 };
    mobilellm_train_opts o;
    mobilellm_train_opts_default(&o);
    o.batch = B;
    o.seq = T;
    o.lr = 3e-3f;
    mobilellm_trainer *tr;
    CHECK(mobilellm_trainer_new(&tr, m, &o));
    int32_t tokens[B * T], targets[B * T];
    double first = 0, last = 0;
    for (int step = 0; step < STEPS; step++) {
        for (int r = 0; r < B; r++) { /* windows of the text at different offsets */
            size_t start = ((size_t)(step * B + r) * 13) % (n - T - 1);
            for (int i = 0; i < T; i++) {
                tokens[r * T + i] = ids[start + i];
                targets[r * T + i] = ids[start + i + 1];
            }
        }
        double loss;
        CHECK(mobilellm_train_step(tr, tokens, targets, &loss));
        if (step == 0) first = loss;
        last = loss;
        if (step % 5 == 0 || step == STEPS - 1) printf("step %d loss %.4f\n", step + 1, loss);
    }
    printf("loss fell: %.4f -> %.4f\n", first, last);

    /* logits: the most likely next byte after a prefix of the text */
    const int P = 16;
    int V = mobilellm_model_vocab_size(m);
    float *logits = malloc(sizeof(float) * (size_t)P * (size_t)V);
    if (!logits) return 1;
    CHECK(mobilellm_model_logits(m, ids, P, logits));
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[(size_t)(P - 1) * V + v] > logits[(size_t)(P - 1) * V + best]) best = v;
    printf("after %d tokens the model predicts token %d\n", P, best);
    free(logits);

    char *text;
    size_t len;
    CHECK(mobilellm_decode(tok, ids, 17, &text, &len));
    printf("decoded: %s\n", text);
    mobilellm_free(text);

    if (save_path) { /* a native checkpoint, loaded back: same loss on the same batch */
        double before, after;
        CHECK(mobilellm_model_loss(m, tokens, targets, B, T, &before));
        CHECK(mobilellm_model_save(m, save_path));
        mobilellm_model *again;
        CHECK(mobilellm_model_load(&again, save_path));
        CHECK(mobilellm_model_loss(again, tokens, targets, B, T, &after));
        printf("reloaded %s: loss %.6f == %.6f\n", save_path, before, after);
        if (before != after) return 1;
        mobilellm_model_free(again);
    }
    mobilellm_trainer_free(tr);
    mobilellm_model_free(m);
    mobilellm_free(ids);
    mobilellm_tokenizer_free(tok);
    if (!(last < first - 0.5)) {
        fprintf(stderr, "train_tiny: the loss did not fall\n");
        return 1;
    }
    printf("ok\n");
    return 0;
}
