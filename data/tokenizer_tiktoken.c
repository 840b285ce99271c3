#include "data/tokenizer_tiktoken.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/bpe.h"
#include "data/shard.h"

static int b64val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decode standard padded base64 s[0..n) into out (room for 3n/4); returns the length or -1. */
static long b64decode(const char *s, size_t n, uint8_t *out) {
    if (n == 0 || n % 4) return -1;
    size_t m = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + k];
            if (c == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            } else {
                if (pad || (v[k] = b64val(c)) < 0) return -1;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[m++] = (uint8_t)(w >> 16);
        if (pad < 2) out[m++] = (uint8_t)(w >> 8);
        if (pad < 1) out[m++] = (uint8_t)w;
    }
    return (long)m;
}

int ml_tiktoken_detect(const char *data, size_t n) {
    size_t i = 0;
    while (i < n && (b64val((unsigned char)data[i]) >= 0 || data[i] == '=')) i++;
    if (i == 0 || i % 4 || i >= n || data[i] != ' ') return 0;
    size_t j = ++i;
    while (i < n && data[i] >= '0' && data[i] <= '9') i++;
    return i > j && (i == n || data[i] == '\n' || data[i] == '\r');
}

/* Llama-3.1+ specials (meta-llama/llama-models models/llama3/tokenizer.py). */
static const char *const llama3_basic[] = {
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eom_id|>", "<|eot_id|>", "<|python_tag|>", "<|image|>",
};

/* Llama-4 specials (models/llama4/tokenizer.py): basic, text post-train, vision, reasoning, then
 * <|reserved_special_token_i|> up to 2048. */
static const char *const llama4_basic[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|fim_prefix|>", "<|fim_middle|>",
                                           "<|fim_suffix|>"};
static const char *const llama4_post[] = {
    "<|header_start|>", "<|header_end|>", "<|eom|>", "<|eot|>", "<|step|>",
    "<|text_post_train_reserved_special_token_0|>", "<|text_post_train_reserved_special_token_1|>",
    "<|text_post_train_reserved_special_token_2|>", "<|text_post_train_reserved_special_token_3|>",
    "<|text_post_train_reserved_special_token_4|>", "<|text_post_train_reserved_special_token_5|>",
    "<|python_start|>", "<|python_end|>", "<|finetune_right_pad|>"}; /* + text_post_train 8..68 */
static const char *const llama4_vision[] = {
    "<|image_start|>", "<|image_end|>", "<|vision_reserved_special_token_0|>", "<|vision_reserved_special_token_1|>",
    "<|tile_x_separator|>", "<|tile_y_separator|>", "<|vision_reserved_special_token_2|>",
    "<|vision_reserved_special_token_3|>", "<|vision_reserved_special_token_4|>",
    "<|vision_reserved_special_token_5|>", "<|image|>", "<|vision_reserved_special_token_6|>",
    "<|patch|>"}; /* + vision 7..1047 */
static const char *const llama4_reasoning_named[] = {"<|reasoning_thinking_start|>", "<|reasoning_thinking_end|>"};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Fill names[0..count) with the special-token names of the flavour. */
static ml_status special_names(int llama4, char ***out, uint32_t *count) {
    uint32_t n = llama4 ? 2048 : 256;
    char **names = calloc(n, sizeof *names);
    if (!names) return ml_fail(ML_ERR_NOMEM, "out of memory");
    uint32_t k = 0;
    char buf[96];
#define ADD(s) names[k++] = strdup(s)
    if (!llama4) {
        for (size_t i = 0; i < NELEM(llama3_basic); i++) ADD(llama3_basic[i]);
        for (uint32_t i = 0; k < n; i++) {
            snprintf(buf, sizeof buf, "<|reserved_special_token_%u|>", 2 + i);
            ADD(buf);
        }
    } else {
        for (size_t i = 0; i < NELEM(llama4_basic); i++) ADD(llama4_basic[i]);
        for (size_t i = 0; i < NELEM(llama4_post); i++) ADD(llama4_post[i]);
        for (uint32_t i = 8; i < 8 + 61; i++) {
            snprintf(buf, sizeof buf, "<|text_post_train_reserved_special_token_%u|>", i);
            ADD(buf);
        }
        for (size_t i = 0; i < NELEM(llama4_vision); i++) ADD(llama4_vision[i]);
        for (uint32_t i = 7; i < 7 + 1041; i++) {
            snprintf(buf, sizeof buf, "<|vision_reserved_special_token_%u|>", i);
            ADD(buf);
        }
        for (uint32_t i = 0; i < 8; i++) {
            snprintf(buf, sizeof buf, "<|reasoning_reserved_special_token_%u|>", i);
            ADD(buf);
        }
        for (size_t i = 0; i < NELEM(llama4_reasoning_named); i++) ADD(llama4_reasoning_named[i]);
        for (uint32_t i = 0; k < n; i++) {
            snprintf(buf, sizeof buf, "<|reserved_special_token_%u|>", i);
            ADD(buf);
        }
    }
#undef ADD
    for (uint32_t i = 0; i < n; i++)
        if (!names[i]) {
            for (uint32_t j = 0; j < n; j++) free(names[j]);
            free(names);
            return ml_fail(ML_ERR_NOMEM, "out of memory");
        }
    *out = names;
    *count = n;
    return ML_OK;
}

ml_status ml_tokenizer_tiktoken_new(ml_tokenizer **out, const char *path, const char *data, size_t n) {
    *out = NULL;
    /* Count lines first: that fixes the flavour and the vocabulary. */
    uint32_t lines = 0;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(data + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - data) : n;
        if (e > i) lines++;
        i = e + 1;
    }
    int llama4;
    if (lines == 128000) llama4 = 0;
    else if (lines == 200000) llama4 = 1;
    else
        return ml_fail(ML_ERR_UNSUPPORTED,
                       "tiktoken file %s: %u ranks; only Llama-3 (128000) and Llama-4 (200000) are known", path, lines);
    uint32_t n_special = llama4 ? 2048 : 256, vocab = lines + n_special;
    ml_bpe *b = NULL;
    ML_TRY(ml_bpe_new(&b, vocab));
    ml_status s = ML_OK;
    uint8_t *tok = malloc(n / 4 * 3 + 4);
    if (!tok) s = ml_fail(ML_ERR_NOMEM, "out of memory");
    size_t line = 0;
    for (size_t i = 0; i < n && s == ML_OK;) {
        const char *nl = memchr(data + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - data) : n, le = e;
        line++;
        if (le > i && data[le - 1] == '\r') le--;
        if (le == i) {
            i = e + 1;
            continue;
        }
        const char *sp = memchr(data + i, ' ', le - i);
        long len = sp ? b64decode(data + i, (size_t)(sp - data - i), tok) : -1;
        if (len <= 0) {
            s = ml_fail(ML_ERR_FORMAT, "tiktoken file %s line %zu: expected 'base64 rank'", path, line);
            break;
        }
        uint64_t rank = 0;
        const char *q = sp + 1;
        if (q == data + le) s = ml_fail(ML_ERR_FORMAT, "tiktoken file %s line %zu: missing rank", path, line);
        for (; q < data + le && s == ML_OK; q++) {
            if (*q < '0' || *q > '9' || rank > UINT32_MAX)
                s = ml_fail(ML_ERR_FORMAT, "tiktoken file %s line %zu: bad rank", path, line);
            else rank = rank * 10 + (uint64_t)(*q - '0');
        }
        if (s != ML_OK) break;
        if (rank >= lines) {
            s = ml_fail(ML_ERR_FORMAT, "tiktoken file %s line %zu: rank %llu outside 0..%u", path, line,
                        (unsigned long long)rank, lines - 1);
            break;
        }
        s = ml_bpe_set_token(b, (uint32_t)rank, tok, (size_t)len);
        if (s != ML_OK) s = ml_fail_context(s, "tiktoken file %s line %zu", path, line);
        i = e + 1;
    }
    free(tok);
    char **names = NULL;
    uint32_t nn = 0;
    if (s == ML_OK) s = special_names(llama4, &names, &nn);
    for (uint32_t i = 0; s == ML_OK && i < nn; i++) s = ml_bpe_set_special(b, lines + i, names[i]);
    for (uint32_t i = 0; i < nn; i++) free(names[i]);
    free(names);
    if (s == ML_OK) s = ml_bpe_derive_merges(b);
    if (s == ML_OK) s = ml_bpe_finish(b, 1);
    if (s != ML_OK) {
        if ((s == ML_ERR_UNSUPPORTED || s == ML_ERR_FORMAT) && !strstr(ml_last_error(), path))
            ml_fail_context(s, "tiktoken file %s", path);
        ml_bpe_free(b);
        return s;
    }
    char fp[64];
    snprintf(fp, sizeof fp, "tiktoken-%016llx", (unsigned long long)ml_fnv1a64(ML_FNV1A64_INIT, data, n));
    ml_bpe_tok_spec spec = {
        .pattern = llama4 ? ML_PAT_LLAMA4 : ML_PAT_LLAMA3,
        .keep_gaps = 0,
        .add_prefix_space = 0,
        .bos = "<|begin_of_text|>",
        .eos = "<|end_of_text|>",
        .pad = llama4 ? "<|finetune_right_pad|>" : "<|finetune_right_pad_id|>",
        .fingerprint = fp,
    };
    return ml_bpe_tokenizer_wrap(out, b, &spec);
}
