#include "infer/mc_eval.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/atomic_file.h"
#include "common/signals.h"
#include "common/sysinfo.h"
#include "model/decoder.h"

static const char *task_names[] = {"hellaswag", "piqa", "arc_easy", "arc_challenge"};
static const char *task_files[] = {"hellaswag_val.jsonl", "piqa_valid.jsonl", "arc_easy_test.jsonl",
                                   "arc_challenge_test.jsonl"};

ml_status ml_mc_task_parse(const char *name, ml_mc_task *t) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, task_names[i])) {
            *t = (ml_mc_task)i;
            return ML_OK;
        }
    return ml_fail(ML_ERR_ARG, "unknown task '%s' (hellaswag, piqa, arc_easy, arc_challenge)", name);
}
const char *ml_mc_task_name(ml_mc_task t) { return task_names[t]; }
const char *ml_mc_task_file(ml_mc_task t) { return task_files[t]; }

/* ---------------------------------------------------------------- building the items */

static char *dup_printf(const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s%s", a, b, c);
    return s;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* The harness's HellaSwag preprocess: strip; " [title]" -> ". "; re.sub(r"\[.*?\]", ""); "  " -> " ". */
static char *hellaswag_preprocess(const char *in) {
    size_t n = strlen(in);
    while (n && is_space(in[n - 1])) n--;
    while (n && is_space(*in)) in++, n--;
    char *a = malloc(2 * n + 1), *b = malloc(2 * n + 1);
    if (!a || !b) {
        free(a);
        free(b);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n;) /* " [title]" -> ". " */
        if (i + 8 <= n && !memcmp(in + i, " [title]", 8)) {
            a[k++] = '.', a[k++] = ' ';
            i += 8;
        } else
            a[k++] = in[i++];
    a[k] = 0;
    size_t m = 0;
    for (size_t i = 0; i < k;) { /* lazy "[...]" not crossing a newline ('.' does not match it) */
        if (a[i] == '[') {
            size_t j = i + 1;
            while (j < k && a[j] != ']' && a[j] != '\n') j++;
            if (j < k && a[j] == ']') {
                i = j + 1;
                continue;
            }
        }
        b[m++] = a[i++];
    }
    b[m] = 0;
    k = 0;
    for (size_t i = 0; i < m;) /* one left-to-right pass, like str.replace */
        if (i + 1 < m && b[i] == ' ' && b[i + 1] == ' ') {
            a[k++] = ' ';
            i += 2;
        } else
            a[k++] = b[i++];
    a[k] = 0;
    free(b);
    return a;
}

static const char *get_str(const cJSON *o, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static ml_status parse_item(ml_mc_task t, const cJSON *o, ml_mc_item *it, const char *where) {
    memset(it, 0, sizeof *it);
    if (!cJSON_IsObject(o)) return ml_fail(ML_ERR_FORMAT, "%s: not a JSON object", where);
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(o, "label");
    if (t == ML_MC_HELLASWAG) {
        const char *ctx = get_str(o, "ctx");
        const cJSON *ends = cJSON_GetObjectItemCaseSensitive(o, "endings");
        if (!ctx || !cJSON_IsArray(ends) || !cJSON_IsNumber(label))
            return ml_fail(ML_ERR_FORMAT, "%s: expected \"ctx\", \"endings\" and \"label\"", where);
        it->context = hellaswag_preprocess(ctx);
        const cJSON *e;
        cJSON_ArrayForEach(e, ends) {
            if (!cJSON_IsString(e)) return ml_fail(ML_ERR_FORMAT, "%s: an ending is not a string", where);
            if (it->n_choices == ML_MC_MAX_CHOICES) return ml_fail(ML_ERR_FORMAT, "%s: too many endings", where);
            it->choices[it->n_choices++] = hellaswag_preprocess(e->valuestring);
        }
        it->label = label->valueint;
    } else if (t == ML_MC_PIQA) {
        const char *goal = get_str(o, "goal"), *s1 = get_str(o, "sol1"), *s2 = get_str(o, "sol2");
        if (!goal || !s1 || !s2 || !cJSON_IsNumber(label))
            return ml_fail(ML_ERR_FORMAT, "%s: expected \"goal\", \"sol1\", \"sol2\" and \"label\"", where);
        it->context = dup_printf("Question: ", goal, "\nAnswer:");
        it->choices[0] = strdup(s1);
        it->choices[1] = strdup(s2);
        it->n_choices = 2;
        it->label = label->valueint;
    } else {
        const char *q = get_str(o, "question"), *key = get_str(o, "answerKey");
        const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "choices");
        if (!q || !key || !cJSON_IsArray(ch))
            return ml_fail(ML_ERR_FORMAT, "%s: expected \"question\", \"choices\" and \"answerKey\"", where);
        it->context = dup_printf("Question: ", q, "\nAnswer:");
        it->label = -1;
        const cJSON *c;
        cJSON_ArrayForEach(c, ch) {
            const char *text = get_str(c, "text"), *lab = get_str(c, "label");
            if (!text || !lab) return ml_fail(ML_ERR_FORMAT, "%s: a choice lacks \"text\" or \"label\"", where);
            if (it->n_choices == ML_MC_MAX_CHOICES) return ml_fail(ML_ERR_FORMAT, "%s: too many choices", where);
            if (!strcmp(lab, key)) it->label = it->n_choices;
            it->choices[it->n_choices++] = strdup(text);
        }
        if (it->label < 0) return ml_fail(ML_ERR_FORMAT, "%s: answerKey \"%s\" is none of the choice labels", where, key);
    }
    if (!it->context) return ml_fail(ML_ERR_NOMEM, "%s: out of memory", where);
    for (int i = 0; i < it->n_choices; i++)
        if (!it->choices[i]) return ml_fail(ML_ERR_NOMEM, "%s: out of memory", where);
    if (it->n_choices < 2) return ml_fail(ML_ERR_FORMAT, "%s: %d choice(s), need at least 2", where, it->n_choices);
    if (it->label < 0 || it->label >= it->n_choices)
        return ml_fail(ML_ERR_FORMAT, "%s: label %d is not a choice index (0..%d)", where, it->label, it->n_choices - 1);
    return ML_OK;
}

static void free_item(ml_mc_item *it) {
    free(it->context);
    for (int i = 0; i < it->n_choices; i++) free(it->choices[i]);
    memset(it, 0, sizeof *it);
}

ml_status ml_mc_load(ml_mc_set *s, ml_mc_task t, const char *path, int limit) {
    memset(s, 0, sizeof *s);
    s->task = t;
    if (limit < 0) return ml_fail(ML_ERR_ARG, "limit %d must be >= 0", limit);
    FILE *f = fopen(path, "rb");
    if (!f) return ml_fail(ML_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, alloc = 0;
    ssize_t len;
    long lineno = 0;
    ml_status st = ML_OK;
    while ((limit == 0 || s->n < limit) && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && is_space(line[len - 1])) line[--len] = 0;
        if (len == 0) continue;
        char where[4200];
        snprintf(where, sizeof where, "%s:%ld", path, lineno);
        cJSON *o = cJSON_ParseWithLength(line, (size_t)len);
        if (!o) {
            st = ml_fail(ML_ERR_FORMAT, "%s: not valid JSON", where);
            break;
        }
        if ((size_t)s->n == alloc) {
            size_t na = alloc ? alloc * 2 : 256;
            ml_mc_item *p = realloc(s->items, na * sizeof *p);
            if (!p) {
                cJSON_Delete(o);
                st = ml_fail(ML_ERR_NOMEM, "out of memory for %zu items", na);
                break;
            }
            s->items = p;
            alloc = na;
        }
        st = parse_item(t, o, &s->items[s->n], where);
        cJSON_Delete(o);
        s->n++;
        if (st != ML_OK) break;
    }
    free(line);
    if (st == ML_OK && ferror(f)) st = ml_fail(ML_ERR_IO, "cannot read %s", path);
    fclose(f);
    if (st == ML_OK && s->n == 0) st = ml_fail(ML_ERR_FORMAT, "%s holds no items", path);
    if (st != ML_OK) ml_mc_free(s);
    return st;
}

void ml_mc_free(ml_mc_set *s) {
    for (int i = 0; i < s->n; i++) free_item(&s->items[i]);
    free(s->items);
    memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------- scoring */

static int utf8_chars(const char *s) {
    int n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* context / continuation ids of one choice, as the harness's _encode_pair */
static ml_status encode_pair(const ml_tokenizer *tok, const char *context, const char *choice, int add_bos,
                             ml_id_buf *ctx, ml_id_buf *whole, ml_byte_buf *text, size_t *n_ctx) {
    size_t cl = strlen(context), keep = cl;
    while (keep && context[keep - 1] == ' ') keep--; /* rstrip()'s spaces move to the continuation */
    text->n = 0;
    ML_TRY(ml_byte_buf_reserve(text, cl + strlen(choice) + 2));
    memcpy(text->bytes, context, cl);
    text->bytes[cl] = ' ';
    memcpy(text->bytes + cl + 1, choice, strlen(choice));
    text->n = cl + 1 + strlen(choice);
    const unsigned flags = add_bos ? ML_TOK_ADD_BOS : 0;
    ctx->n = whole->n = 0;
    ML_TRY(ml_tokenizer_encode(tok, ctx, context, keep, flags));
    ML_TRY(ml_tokenizer_encode(tok, whole, text->bytes, text->n, flags));
    *n_ctx = ctx->n;
    if (whole->n <= ctx->n) return ml_fail(ML_ERR_ARG, "choice \"%.40s\" gives no continuation tokens", choice);
    /* model input = ctx ids + whole[len(ctx):] */
    memcpy(whole->ids, ctx->ids, ctx->n * sizeof *ctx->ids);
    return ML_OK;
}

ml_status ml_mc_evaluate(ml_model *m, const ml_tokenizer *tok, const ml_mc_set *s, const ml_mc_opts *o,
                         ml_mc_result *r) {
    memset(r, 0, sizeof *r);
    const int V = m->cfg.vocab_size;
    const int max_len = o->max_len > 0 ? o->max_len : m->cfg.max_position_embeddings;
    if (ml_tokenizer_vocab_size(tok) > (uint32_t)V)
        return ml_fail(ML_ERR_CONFIG, "tokenizer has %u tokens, more than the model's %d", ml_tokenizer_vocab_size(tok), V);
    if (o->add_bos && ml_tokenizer_bos(tok) < 0) return ml_fail(ML_ERR_ARG, "the tokenizer has no BOS token");
    ml_id_buf ctx = {0}, whole = {0};
    ml_byte_buf text = {0};
    ml_decoder d;
    memset(&d, 0, sizeof d);
    float *logits = NULL;
    r->items = calloc((size_t)s->n, sizeof *r->items);
    ml_status st = r->items ? ML_OK : ml_fail(ML_ERR_NOMEM, "out of memory for %d scores", s->n);
    /* one decoder and logits buffer for the longest input, allocated before scoring */
    if (st == ML_OK) st = ml_decoder_create(&d, m, max_len, max_len < 512 ? max_len : 512);
    if (st == ML_OK && !(logits = malloc(sizeof(float) * (size_t)max_len * V)))
        st = ml_fail(ML_ERR_NOMEM, "out of memory for logits [%d, %d]", max_len, V);
    double t0 = ml_now_seconds();
    for (int i = 0; st == ML_OK && i < s->n; i++) {
        if (ml_stop_requested()) { /* Ctrl-C / SIGTERM: stop between items, write nothing */
            st = ml_fail(ML_ERR_INTERRUPTED, "interrupted after %d of %d items", i, s->n);
            break;
        }
        const ml_mc_item *it = &s->items[i];
        ml_mc_score *sc = &r->items[i];
        sc->label = it->label;
        sc->n_choices = it->n_choices;
        for (int c = 0; st == ML_OK && c < it->n_choices; c++) {
            size_t n_ctx;
            st = encode_pair(tok, it->context, it->choices[c], o->add_bos, &ctx, &whole, &text, &n_ctx);
            if (st != ML_OK) break;
            const int total = (int)whole.n, cont = total - (int)n_ctx;
            if (cont > max_len) {
                st = ml_fail(ML_ERR_RANGE, "item %d choice %d: %d continuation tokens exceed the window of %d", i, c,
                             cont, max_len);
                break;
            }
            /* input = whole[-(max_len+1):][:-1] */
            const int first = total - 1 > max_len ? total - 1 - max_len : 0, inlen = total - 1 - first;
            ml_decoder_reset(&d);
            st = ml_decoder_feed(&d, (const int32_t *)whole.ids + first, inlen, inlen - cont, logits);
            if (st != ML_OK) break;
            double ll = 0;
            for (int k = 0; k < cont; k++) {
                const float *row = logits + (size_t)k * V;
                float mx = row[0];
                for (int v = 1; v < V; v++) mx = fmaxf(mx, row[v]);
                double z = 0;
                for (int v = 0; v < V; v++) z += exp((double)row[v] - mx);
                ll += (double)row[whole.ids[n_ctx + k]] - mx - log(z);
            }
            sc->ll[c] = ll;
            sc->n_tokens[c] = cont;
            sc->n_chars[c] = utf8_chars(it->choices[c]);
            r->tokens += inlen;
        }
        if (st != ML_OK) break;
        int p = 0, pn = 0;
        for (int c = 1; c < it->n_choices; c++) {
            if (sc->ll[c] > sc->ll[p]) p = c;
            if (sc->ll[c] / sc->n_chars[c] > sc->ll[pn] / sc->n_chars[pn]) pn = c;
        }
        sc->pred = p;
        sc->pred_norm = pn;
        r->correct += p == it->label;
        r->correct_norm += pn == it->label;
        r->n = i + 1;
        if (o->progress) o->progress(o->progress_user, i + 1, s->n, r->tokens);
    }
    r->seconds = ml_now_seconds() - t0;
    if (r->n) {
        r->acc = (double)r->correct / r->n;
        r->acc_norm = (double)r->correct_norm / r->n;
    }
    free(logits);
    ml_decoder_free(&d);
    ml_id_buf_free(&ctx);
    ml_id_buf_free(&whole);
    ml_byte_buf_free(&text);
    if (st != ML_OK) ml_mc_result_free(r);
    return st;
}

void ml_mc_result_free(ml_mc_result *r) {
    free(r->items);
    memset(r, 0, sizeof *r);
}

ml_status ml_mc_write_json(const char *path, const ml_mc_set *s, const ml_mc_result *r) {
    ml_atomic_file f;
    ML_TRY(ml_atomic_begin(&f, path, 1));
    fprintf(f.fp, "{\"task\":\"%s\",\"items\":%d,\"acc\":%.6f,\"acc_norm\":%.6f,\"seconds\":%.3f,\"scores\":[",
            ml_mc_task_name(s->task), r->n, r->acc, r->acc_norm, r->seconds);
    for (int i = 0; i < r->n; i++) {
        const ml_mc_score *sc = &r->items[i];
        fprintf(f.fp, "%s\n{\"label\":%d,\"pred\":%d,\"pred_norm\":%d,\"ll\":[", i ? "," : "", sc->label, sc->pred,
                sc->pred_norm);
        for (int c = 0; c < sc->n_choices; c++) fprintf(f.fp, "%s%.9g", c ? "," : "", sc->ll[c]);
        fprintf(f.fp, "],\"tokens\":[");
        for (int c = 0; c < sc->n_choices; c++) fprintf(f.fp, "%s%d", c ? "," : "", sc->n_tokens[c]);
        fprintf(f.fp, "],\"chars\":[");
        for (int c = 0; c < sc->n_choices; c++) fprintf(f.fp, "%s%d", c ? "," : "", sc->n_chars[c]);
        fprintf(f.fp, "]}");
    }
    fprintf(f.fp, "]}\n");
    if (ferror(f.fp)) {
        ml_atomic_abort(&f);
        return ml_fail(ML_ERR_IO, "cannot write %s", path);
    }
    return ml_atomic_commit(&f);
}
