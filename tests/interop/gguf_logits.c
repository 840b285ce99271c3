/* Logits of an exact token sequence from llama.cpp, for comparing a GGUF export with
 * `mobilellm logits`. Built by tests/cli/gguf_llamacpp.sh against a prebuilt libllama (not part
 * of the mobilellm build):
 *   gguf_logits MODEL.gguf BACKEND_DIR OUT.npy ID ID ...     float32 [T, V] .npy, every position
 *   gguf_logits MODEL.gguf BACKEND_DIR --tokenize TEXT_FILE  ids of each line-separated test
 *                                                            string (no BOS), one line each
 * BACKEND_DIR holds the dynamically loaded ggml CPU backends (libggml-cpu-*.so). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-backend.h"
#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static bool no_progress(float p, void *user) {
    (void)p;
    (void)user;
    return true;
}

static int tokenize_file(const struct llama_vocab *vocab, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return 1; }
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *sep = "\n__ggml_vocab_test__\n";
    char *p = buf;
    while (*p) {
        char *e = strstr(p, sep);
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int cap = (int)len + 16;
        llama_token *ids = malloc(sizeof(llama_token) * (size_t)cap);
        int k = llama_tokenize(vocab, p, (int32_t)len, ids, cap, false, false);
        if (k < 0) { fprintf(stderr, "tokenize failed\n"); return 1; }
        for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
        free(ids);
        if (!e) break;
        p = e + strlen(sep);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s MODEL.gguf BACKEND_DIR OUT.npy ID... | --tokenize FILE\n", argv[0]);
        return 2;
    }
    llama_log_set(quiet, NULL);
    ggml_backend_load_all_from_path(argv[2]);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.progress_callback = no_progress;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "llama.cpp could not load %s\n", argv[1]); return 1; }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    if (!strcmp(argv[3], "--tokenize")) return tokenize_file(vocab, argv[4]);

    int T = argc - 4;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = cp.n_batch = cp.n_ubatch = (uint32_t)(T < 16 ? 16 : T);
    cp.n_threads = cp.n_threads_batch = 2;
    cp.type_k = cp.type_v = GGML_TYPE_F32; /* the default F16 KV cache would round K and V */
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "llama_init_from_model failed\n"); return 1; }
    struct llama_batch b = llama_batch_init(T, 0, 1);
    for (int i = 0; i < T; i++) {
        b.token[i] = atoi(argv[4 + i]);
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = 1;
    }
    b.n_tokens = T;
    if (llama_decode(ctx, b) != 0) { fprintf(stderr, "llama_decode failed\n"); return 1; }
    int V = llama_vocab_n_tokens(vocab);
    FILE *out = fopen(argv[3], "wb");
    if (!out) { perror(argv[3]); return 1; }
    char hdr[128];
    int hl = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", T, V);
    int total = 10 + hl + 1, pad = (64 - total % 64) % 64;
    unsigned short hlen = (unsigned short)(hl + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, out);
    fwrite(&hlen, 2, 1, out);
    fwrite(hdr, 1, (size_t)hl, out);
    for (int i = 0; i < pad; i++) fputc(' ', out);
    fputc('\n', out);
    for (int i = 0; i < T; i++) fwrite(llama_get_logits_ith(ctx, i), sizeof(float), (size_t)V, out);
    fclose(out);
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
