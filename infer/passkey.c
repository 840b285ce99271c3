#include "infer/passkey.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/atomic_file.h"
#include "common/rng.h"
#include "common/sysinfo.h"

static const char *const default_filler =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";

/* The haystack is the filler text (repeated as needed) cut to about `nbytes` at a sentence end;
 * the needle goes in at the sentence boundary nearest to depth * length, the question at the end. */
static size_t sentence_end(const char *h, size_t n, size_t at) {
    while (at > 0 && at < n && !(h[at - 1] == ' ' && at >= 2 && (h[at - 2] == '.' || h[at - 2] == '\n'))) at--;
    return at;
}

/* A key of `digits` digits (0: 5), no leading zero: 10000 + below(90000) for 5, as always. */
static int key_digits(int digits) { return digits > 0 ? digits : 5; }
static void make_key(ml_rng *rng, int digits, char key[16]) {
    uint64_t lo = 1;
    for (int i = 1; i < key_digits(digits); i++) lo *= 10;
    snprintf(key, 16, "%llu", (unsigned long long)(lo + ml_rng_below(rng, 9 * lo)));
}

static ml_status build_prompt(ml_byte_buf *text, ml_byte_buf *hay, const char *filler, size_t nbytes, double depth,
                              const char *key) {
    size_t fl = strlen(filler);
    hay->n = 0;
    ML_TRY(ml_byte_buf_reserve(hay, nbytes + 1));
    while (hay->n < nbytes) {
        size_t take = nbytes - hay->n < fl ? nbytes - hay->n : fl;
        memcpy(hay->bytes + hay->n, filler, take);
        hay->n += take;
    }
    size_t len = sentence_end(hay->bytes, hay->n, hay->n);
    if (len == 0) len = hay->n;
    size_t at = sentence_end(hay->bytes, len, (size_t)(depth * (double)len));
    char needle[160];
    const char question[] = "What is the pass key? The pass key is";
    snprintf(needle, sizeof needle, "The pass key is %s. Remember it. %s is the pass key. ", key, key);
    size_t nl = strlen(needle), ql = strlen(question);
    text->n = 0;
    ML_TRY(ml_byte_buf_reserve(text, len + nl + ql + 2));
    memcpy(text->bytes, hay->bytes, at);
    memcpy(text->bytes + at, needle, nl);
    memcpy(text->bytes + at + nl, hay->bytes + at, len - at);
    text->n = len + nl;
    if (text->n && text->bytes[text->n - 1] != ' ' && text->bytes[text->n - 1] != '\n') text->bytes[text->n++] = ' ';
    memcpy(text->bytes + text->n, question, ql);
    text->n += ql;
    return ML_OK;
}

static ml_status count_tokens(const ml_tokenizer *tok, ml_id_buf *ids, const ml_byte_buf *text, size_t *n) {
    ids->n = 0;
    unsigned flags = tok->bos >= 0 ? ML_TOK_ADD_BOS : 0;
    ML_TRY(ml_tokenizer_encode(tok, ids, text->bytes, text->n, flags));
    *n = ids->n;
    return ML_OK;
}

ml_status ml_passkey_eval(ml_model *m, const ml_tokenizer *tok, const int *lengths, int n_lengths,
                          const ml_passkey_opts *o, ml_passkey_result *out) {
    const char *filler = o->filler ? o->filler : default_filler;
    if (!*filler) return ml_fail(ML_ERR_ARG, "filler text is empty");
    if (o->key_digits < 0 || o->key_digits > 9) return ml_fail(ML_ERR_ARG, "pass keys of %d digits (1 to 9)", o->key_digits);
    int max_len = 0;
    for (int i = 0; i < n_lengths; i++) {
        if (lengths[i] < 32) return ml_fail(ML_ERR_ARG, "pass-key length %d is too short (at least 32 tokens)", lengths[i]);
        if (lengths[i] > max_len) max_len = lengths[i];
    }
    const int cap = max_len + 16;
    ml_byte_buf text = {0}, full = {0}, hay = {0};
    ml_id_buf ids = {0}, fids = {0};
    int32_t *tokens = malloc(sizeof(int32_t) * (size_t)cap);
    float *logits = NULL;
    ml_status s = tokens ? ML_OK : ml_fail(ML_ERR_NOMEM, "out of memory");
    ml_rng rng;
    ml_rng_seed(&rng, o->seed);
    const size_t V = (size_t)m->cfg.vocab_size;
    double t0 = ml_now_seconds();
    int done = 0, total = n_lengths * o->samples;
    for (int li = 0; li < n_lengths && s == ML_OK; li++) {
        ml_passkey_result *r = &out[li];
        memset(r, 0, sizeof *r);
        r->length = lengths[li];
        /* one reservation per length; shorter prompts are padded at the end, which causal
         * attention never lets earlier positions see */
        const int Tl = lengths[li] + 8;
        s = ml_model_reserve(m, 1, Tl, Tl);
        if (s != ML_OK) break;
        /* the longest haystack whose prompt fits the target length (8 tokens spare for the answer) */
        char probe_key[16];
        snprintf(probe_key, sizeof probe_key, "%.*s", key_digits(o->key_digits), "123456789");
        size_t n = 0;
        s = build_prompt(&text, &hay, filler, 0, 0.5, probe_key);
        if (s == ML_OK) s = count_tokens(tok, &ids, &text, &n);
        if (s == ML_OK && n + 8 > (size_t)lengths[li])
            s = ml_fail(ML_ERR_ARG, "pass-key length %d is too short: the needle and question alone take %zu tokens",
                        lengths[li], n);
        size_t lo = 0, hi = (size_t)lengths[li] * 16; /* lo fits, hi does not (no token is under 1/16 byte) */
        while (s == ML_OK && hi - lo > 16) {
            size_t mid = (lo + hi) / 2;
            s = build_prompt(&text, &hay, filler, mid, 0.5, probe_key);
            if (s == ML_OK) s = count_tokens(tok, &ids, &text, &n);
            if (n + 8 > (size_t)lengths[li]) hi = mid;
            else lo = mid;
        }
        for (int j = 0; j < o->samples && s == ML_OK; j++) {
            char key[16];
            make_key(&rng, o->key_digits, key);
            double depth = (j + 0.5) / o->samples;
            size_t np, nf = 0;
            s = build_prompt(&text, &hay, filler, lo, depth, key);
            if (s == ML_OK) s = count_tokens(tok, &ids, &text, &np);
            if (s != ML_OK) break;
            /* full = prompt + " " + key */
            /* Greedy decoding is checked along candidate tokenizations of the answer: the suffix of
             * encode(prompt + " KEY"), and " KEY" / "KEY" encoded on their own (models trained on
             * segment-wise tokenized rows answer that way). Greedy produces the key iff at every
             * step of one candidate the argmax is that candidate's next token. */
            int ok = 0, tried = 0;
            for (int cand = 0; cand < 3 && !ok && s == ML_OK; cand++) {
                full.n = 0;
                s = ml_byte_buf_reserve(&full, text.n + 8);
                if (s != ML_OK) break;
                size_t na;
                if (cand == 0) {
                    memcpy(full.bytes, text.bytes, text.n);
                    full.n = text.n;
                }
                if (cand < 2) full.bytes[full.n++] = ' ';
                memcpy(full.bytes + full.n, key, strlen(key));
                full.n += strlen(key);
                fids.n = 0;
                s = ml_tokenizer_encode(tok, &fids, full.bytes, full.n, cand == 0 && tok->bos >= 0 ? ML_TOK_ADD_BOS : 0);
                if (s != ML_OK) break;
                const uint32_t *ans;
                if (cand == 0) {
                    if (fids.n <= np || memcmp(fids.ids, ids.ids, np * sizeof(uint32_t)) != 0) continue;
                    ans = fids.ids + np;
                    na = fids.n - np;
                } else {
                    ans = fids.ids;
                    na = fids.n;
                }
                nf = np + na;
                if (na == 0 || nf > (size_t)Tl + 1) continue;
                tried++;
                int T = (int)nf - 1; /* predict the answer tokens from the prompt and earlier answer tokens */
                for (int i = 0; i < Tl; i++)
                    tokens[i] = i < (int)np ? (int32_t)ids.ids[i] : i < T ? (int32_t)ans[i - np] : 0;
                if (!logits) logits = malloc(sizeof(float) * (size_t)cap * V);
                if (!logits) {
                    s = ml_fail(ML_ERR_NOMEM, "out of memory for logits");
                    break;
                }
                ml_batch b = {.tokens = tokens, .B = 1, .T = Tl};
                s = ml_model_forward(m, &b);
                if (s == ML_OK) s = ml_model_logits(m, &b, logits);
                if (s != ML_OK) break;
                if (cand == 0) { /* the answer's log-likelihood under the model, for answer_nll */
                    double nll = 0;
                    for (size_t p = np; p < nf; p++) {
                        const float *row = logits + (p - 1) * V;
                        float mx = row[0];
                        for (size_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
                        double z = 0;
                        for (size_t v = 0; v < V; v++) z += exp((double)(row[v] - mx));
                        nll += log(z) + mx - row[ans[p - np]];
                    }
                    r->answer_nll += nll / (double)(nf - np);
                    r->nll_samples++;
                }
                ok = 1;
                for (size_t p = np; p < nf && ok; p++) {
                    const float *row = logits + (p - 1) * V;
                    size_t best = 0;
                    for (size_t v = 1; v < V; v++)
                        if (row[v] > row[best]) best = v;
                    ok = best == ans[p - np];
                }
            }
            if (s != ML_OK) break;
            if (!tried) {
                r->skipped++;
                continue;
            }
            r->correct += ok;
            r->samples++;
            r->mean_tokens += (double)np;
            done++;
            double el = ml_now_seconds() - t0;
            char line[160];
            snprintf(line, sizeof line, "passkey: %d/%d prompts, %.1f prompts/s, ETA %.0fs", done, total, done / el,
                     el / done * (total - done));
            ml_progress_report pr = {.task = "passkey", .done = done, .total = total, .rate = done / el,
                                     .eta_s = el / done * (total - done), .line = line};
            ml_progress_emit(&o->progress, &pr);
        }
        if (r->samples) r->mean_tokens /= r->samples;
        r->answer_nll = r->nll_samples ? r->answer_nll / r->nll_samples : NAN;
    }
    if (done) { /* ends the progress line; none before an error message */
        ml_progress_report pr = {.task = "passkey", .done = done, .total = total, .final = 1, .line = ""};
        ml_progress_emit(&o->progress, &pr);
    }
    free(tokens);
    free(logits);
    ml_byte_buf_free(&text);
    ml_byte_buf_free(&full);
    ml_byte_buf_free(&hay);
    ml_id_buf_free(&ids);
    ml_id_buf_free(&fids);
    return s;
}

/* The first sentence start at or after `at` (just after ". " or a newline), or n. */
static size_t sentence_start(const char *h, size_t n, size_t at) {
    while (at > 0 && at < n && !(h[at - 1] == '\n' || (h[at - 1] == ' ' && at >= 2 && h[at - 2] == '.'))) at++;
    return at;
}

/* The built-in filler repeated to at least n bytes (a NUL-terminated copy the caller frees). */
static char *repeated_default_filler(size_t n, size_t *len) {
    const size_t fl = strlen(default_filler), reps = n / fl + 1;
    char *buf = malloc(reps * fl + 1);
    if (!buf) return NULL;
    for (size_t i = 0; i < reps; i++) memcpy(buf + i * fl, default_filler, fl);
    buf[reps * fl] = 0;
    *len = reps * fl;
    return buf;
}

static ml_status write_rows(const char *path, const char *filler, size_t filler_n, const ml_passkey_rows_opts *o);

ml_status ml_passkey_write_rows(const char *path, const char *filler, size_t filler_n, const ml_passkey_rows_opts *o) {
    if (o->rows < 1) return ml_fail(ML_ERR_ARG, "pass-key rows: the number of rows must be positive");
    if (o->key_digits < 0 || o->key_digits > 9)
        return ml_fail(ML_ERR_ARG, "pass-key rows: keys of %d digits (1 to 9)", o->key_digits);
    if (o->min_bytes < 16 || o->max_bytes < o->min_bytes)
        return ml_fail(ML_ERR_ARG, "pass-key rows: filler bytes %d..%d (need 16 <= min <= max)", o->min_bytes,
                       o->max_bytes);
    if (filler) return write_rows(path, filler, filler_n, o);
    size_t n;
    char *built_in = repeated_default_filler(2 * (size_t)o->max_bytes, &n);
    if (!built_in) return ml_fail(ML_ERR_NOMEM, "out of memory");
    ml_status s = write_rows(path, built_in, n, o);
    free(built_in);
    return s;
}

/* The rows over a filler of filler_n bytes; the options are checked. */
static ml_status write_rows(const char *path, const char *filler, size_t filler_n, const ml_passkey_rows_opts *o) {
    if (filler_n < 2 * (size_t)o->max_bytes)
        return ml_fail(ML_ERR_ARG, "pass-key rows: the filler (%zu bytes) must be at least twice the longest row (%d)",
                       filler_n, o->max_bytes);
    if (memchr(filler, 0, filler_n)) return ml_fail(ML_ERR_ARG, "pass-key rows: the filler contains a NUL byte");
    ml_byte_buf text = {0}, hay = {0}, span = {0};
    ml_rng rng;
    ml_rng_seed(&rng, o->seed);
    ml_atomic_file f;
    ml_status s = ml_atomic_begin(&f, path, 1);
    if (s != ML_OK) return s;
    for (int r = 0; r < o->rows && s == ML_OK; r++) {
        size_t want = (size_t)o->min_bytes + ml_rng_below(&rng, (uint64_t)(o->max_bytes - o->min_bytes + 1));
        size_t start = 0, len = 0;
        for (int tries = 0; tries < 64 && len < 16; tries++) { /* a span with at least one sentence in it */
            start = sentence_start(filler, filler_n, ml_rng_below(&rng, filler_n - want));
            size_t end = start + want < filler_n ? start + want : filler_n;
            len = 0; /* through the last '.' that ends a sentence in the span */
            for (size_t i = end - start; i-- > 1 && !len;)
                if (filler[start + i] == '.' && (start + i + 1 == filler_n || filler[start + i + 1] == ' ' ||
                                                 filler[start + i + 1] == '\n'))
                    len = i + 1;
        }
        if (len < 16) {
            s = ml_fail(ML_ERR_ARG, "pass-key rows: no sentence of the filler fits in %zu bytes", want);
            break;
        }
        span.n = 0;
        s = ml_byte_buf_reserve(&span, len + 1);
        if (s != ML_OK) break;
        memcpy(span.bytes, filler + start, len);
        span.bytes[len] = 0; /* build_prompt takes the filler as a string */
        span.n = len;
        char key[16];
        make_key(&rng, o->key_digits, key);
        double depth = ml_rng_uniform(&rng);
        /* build_prompt over exactly this span: nbytes = len, so no repetition */
        s = build_prompt(&text, &hay, span.bytes, len, depth, key);
        if (s != ML_OK) break;
        s = ml_byte_buf_reserve(&text, 8);
        if (s != ML_OK) break;
        text.bytes[text.n++] = ' ';
        memcpy(text.bytes + text.n, key, strlen(key));
        text.n += strlen(key);
        text.bytes[text.n] = 0;
        cJSON *row = cJSON_CreateObject();
        char *line = NULL;
        if (row && cJSON_AddStringToObject(row, "text", text.bytes)) line = cJSON_PrintUnformatted(row);
        if (!line || fprintf(f.fp, "%s\n", line) < 0) s = ml_fail(ML_ERR_IO, "writing %s failed", path);
        free(line);
        cJSON_Delete(row);
    }
    ml_byte_buf_free(&text);
    ml_byte_buf_free(&hay);
    ml_byte_buf_free(&span);
    if (s != ML_OK) {
        ml_atomic_abort(&f);
        return s;
    }
    return ml_atomic_commit(&f);
}
