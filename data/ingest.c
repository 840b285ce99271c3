/* Corpus ingestion: see data/ingest.h. */
#include "data/ingest.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/atomic_file.h"
#include "common/signals.h"
#include "data/shard.h"

/* ---- input files ---- */

typedef struct {
    char **paths;
    uint64_t *sizes;
    size_t n, cap;
    uint64_t total_bytes;
} file_list;

static void file_list_free(file_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
    free(l->sizes);
}

static ml_status file_list_add(file_list *l, const char *path, uint64_t size) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **p = realloc(l->paths, cap * sizeof *p);
        if (p) l->paths = p;
        uint64_t *s = realloc(l->sizes, cap * sizeof *s);
        if (s) l->sizes = s;
        if (!p || !s) return ml_fail(ML_ERR_NOMEM, "out of memory listing input files");
        l->cap = cap;
    }
    l->paths[l->n] = strdup(path);
    if (!l->paths[l->n]) return ml_fail(ML_ERR_NOMEM, "out of memory listing input files");
    l->sizes[l->n++] = size;
    l->total_bytes += size;
    return ML_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Regular files under dir, recursively, in byte-wise sorted order (locale-independent, so the
 * shard is a function of the tree). Symbolic links and special files are skipped. */
static ml_status walk_dir(file_list *l, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return ml_fail(ML_ERR_IO, "cannot open directory %s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    ml_status s = ML_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) {
                s = ml_fail(ML_ERR_NOMEM, "out of memory listing %s", dir);
                break;
            }
            names = p;
        }
        if (!(names[n] = strdup(e->d_name))) {
            s = ml_fail(ML_ERR_NOMEM, "out of memory listing %s", dir);
            break;
        }
        n++;
    }
    closedir(d);
    if (s == ML_OK) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && s == ML_OK; i++) {
        size_t len = strlen(dir) + strlen(names[i]) + 2;
        char *p = malloc(len);
        if (!p) {
            s = ml_fail(ML_ERR_NOMEM, "out of memory listing %s", dir);
            break;
        }
        snprintf(p, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", names[i]);
        struct stat st;
        if (lstat(p, &st) != 0) s = ml_fail(ML_ERR_IO, "cannot stat %s: %s", p, strerror(errno));
        else if (S_ISDIR(st.st_mode)) s = walk_dir(l, p);
        else if (S_ISREG(st.st_mode)) s = file_list_add(l, p, (uint64_t)st.st_size);
        free(p);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return s;
}

static ml_status collect_inputs(file_list *l, const char *const *inputs, int n) {
    for (int i = 0; i < n; i++) {
        const char *p = inputs[i];
        struct stat st;
        if (stat(p, &st) != 0) return ml_fail(ML_ERR_IO, "cannot open %s: %s", p, strerror(errno));
        if (S_ISDIR(st.st_mode)) ML_TRY(walk_dir(l, p));
        else if (S_ISREG(st.st_mode)) ML_TRY(file_list_add(l, p, (uint64_t)st.st_size));
        else return ml_fail(ML_ERR_IO, "%s is neither a regular file nor a directory", p);
    }
    return ML_OK;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- output: one shard, or a rolling set of shards plus a manifest ---- */

typedef struct {
    char *path;
    uint64_t tokens, docs;
} shard_rec;

typedef struct {
    const ml_ingest_opts *o;
    const char *out;  /* path or prefix */
    int rolling;
    ml_shard_writer *cur;
    shard_rec *recs;
    size_t n, cap;
    int manifest_written;
    uint64_t tokens, docs;
} out_set;

static ml_status out_open_next(out_set *s) {
    char path[4096];
    if (s->rolling) snprintf(path, sizeof path, "%s-%05zu.shard", s->out, s->n);
    else snprintf(path, sizeof path, "%s", s->out);
    ML_TRY(ml_shard_writer_open(&s->cur, path));
    const ml_tokenizer *tok = s->o->tok;
    ml_status st = ml_shard_writer_set_vocab(s->cur, ml_tokenizer_vocab_size(tok));
    if (st == ML_OK) st = ml_shard_writer_set_tokenizer(s->cur, ml_tokenizer_fingerprint(tok));
    if (st == ML_OK && s->o->domain) st = ml_shard_writer_set_domain(s->cur, s->o->domain);
    if (st == ML_OK && s->o->frame_tokens) st = ml_shard_writer_set_frame_tokens(s->cur, s->o->frame_tokens);
    if (st == ML_OK && s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        shard_rec *r = realloc(s->recs, cap * sizeof *r);
        if (!r) st = ml_fail(ML_ERR_NOMEM, "out of memory");
        else {
            s->recs = r;
            s->cap = cap;
        }
    }
    if (st == ML_OK && !(s->recs[s->n].path = strdup(path))) st = ml_fail(ML_ERR_NOMEM, "out of memory");
    if (st != ML_OK) {
        ml_shard_writer_abort(s->cur);
        s->cur = NULL;
    }
    return st;
}

/* Commit the current shard; it counts as written (removed by out_rollback) from here on. */
static ml_status out_close_cur(out_set *s) {
    shard_rec *r = &s->recs[s->n];
    r->tokens = ml_shard_writer_tokens(s->cur);
    r->docs = ml_shard_writer_docs(s->cur);
    ml_status st = ml_shard_writer_close(s->cur);
    s->cur = NULL;
    if (st != ML_OK) {
        free(r->path);
        return st;
    }
    s->n++;
    return ML_OK;
}

static ml_status out_append(out_set *s, const uint32_t *ids, size_t n) {
    if (!s->cur) ML_TRY(out_open_next(s));
    ML_TRY(ml_shard_writer_append_doc(s->cur, ids, n));
    s->tokens += n;
    s->docs++;
    if (s->rolling && ml_shard_writer_tokens(s->cur) >= s->o->shard_tokens) ML_TRY(out_close_cur(s));
    return ML_OK;
}

static cJSON *shard_json(const ml_ingest_opts *o, const char *path, uint64_t tokens, uint64_t docs) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    if (path) {
        const char *slash = strrchr(path, '/');
        cJSON_AddStringToObject(j, "path", slash ? slash + 1 : path);
    } else {
        cJSON_AddStringToObject(j, "format", "mobilellm-shard-manifest");
        cJSON_AddNumberToObject(j, "version", 1);
    }
    cJSON_AddNumberToObject(j, "tokens", (double)tokens);
    cJSON_AddNumberToObject(j, "documents", (double)docs);
    if (o->domain) cJSON_AddStringToObject(j, "domain", o->domain);
    else cJSON_AddNullToObject(j, "domain");
    cJSON_AddStringToObject(j, "tokenizer", ml_tokenizer_fingerprint(o->tok));
    cJSON_AddNumberToObject(j, "vocab_size", ml_tokenizer_vocab_size(o->tok));
    return j;
}

static ml_status write_manifest(out_set *s) {
    char path[4096];
    ml_manifest_path(path, sizeof path, s->out);
    cJSON *root = shard_json(s->o, NULL, s->tokens, s->docs);
    cJSON *arr = root ? cJSON_AddArrayToObject(root, "shards") : NULL;
    for (size_t i = 0; arr && i < s->n; i++) {
        cJSON *e = shard_json(s->o, s->recs[i].path, s->recs[i].tokens, s->recs[i].docs);
        if (!e) break;
        cJSON_AddItemToArray(arr, e);
    }
    char *text = arr && (size_t)cJSON_GetArraySize(arr) == s->n ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return ml_fail(ML_ERR_NOMEM, "out of memory writing %s", path);
    ml_atomic_file f;
    ml_status st = ml_atomic_begin(&f, path, 1);
    if (st == ML_OK) {
        size_t len = strlen(text);
        if (fwrite(text, 1, len, f.fp) != len || fputc('\n', f.fp) == EOF) {
            st = ml_fail(ML_ERR_IO, "cannot write %s: %s", path, strerror(errno));
            ml_atomic_abort(&f);
        } else {
            st = ml_atomic_commit(&f);
        }
    }
    free(text);
    if (st == ML_OK) s->manifest_written = 1;
    return st;
}

static ml_status out_finish(out_set *s) {
    if (s->cur) ML_TRY(out_close_cur(s));
    if (s->rolling) ML_TRY(write_manifest(s));
    return ML_OK;
}

/* Remove everything this set wrote (the manifest first, so no manifest names a missing shard). */
static void out_drop_cur(out_set *s) {
    if (!s->cur) return;
    ml_shard_writer_abort(s->cur);
    s->cur = NULL;
    free(s->recs[s->n].path); /* the record of the open shard */
}

static void out_rollback(out_set *s) {
    out_drop_cur(s);
    if (s->manifest_written) {
        char path[4096];
        ml_manifest_path(path, sizeof path, s->out);
        unlink(path);
        s->manifest_written = 0;
    }
    for (size_t i = 0; i < s->n; i++) unlink(s->recs[i].path);
    for (size_t i = 0; i < s->n; i++) free(s->recs[i].path);
    s->n = 0;
}

static void out_free(out_set *s) {
    out_drop_cur(s);
    for (size_t i = 0; i < s->n; i++) free(s->recs[i].path);
    free(s->recs);
}

/* ---- documents: batched, encoded in parallel, written in order ---- */

#define BATCH_BYTES (4u << 20)
#define BATCH_DOCS 2048u
#define BIG_DOC_BYTES (1u << 20) /* encoded alone, outside the parallel region */

typedef struct {
    const ml_ingest_opts *o;
    out_set train, val;
    int every;
    uint64_t n_docs; /* documents seen (decides the hold-out) */
    /* progress: bytes of the files before this one, the position in this one */
    int show;
    double t0, last;
    uint64_t done_base, pos, total;
    ml_byte_buf text;
    size_t *off, *len;
    ml_id_buf *ids;
    size_t n, cap;
} ingest;

static void progress(const ml_ingest_opts *o, uint64_t done, uint64_t total, double t0, uint64_t docs, int final);

static ml_status flush(ingest *g) {
    if (g->n == 0) return ML_OK;
    if (ml_stop_requested()) return ml_fail(ML_ERR_INTERRUPTED, "interrupted; no output written");
    const ml_tokenizer *tok = g->o->tok;
    unsigned flags = g->o->flags;
    ml_status first = ML_OK;
    size_t first_i = g->n;
    char msg[1024] = "";
    for (size_t i = 0; i < g->n; i++) g->ids[i].n = 0;
    int threads = g->o->threads > 0 ? g->o->threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads) if (threads > 1 && g->n > 1)
    for (size_t i = 0; i < g->n; i++) {
        if (g->len[i] >= BIG_DOC_BYTES) continue;
        ml_status s = ml_tokenizer_encode(tok, &g->ids[i], g->text.bytes + g->off[i], g->len[i], flags);
        if (s != ML_OK) {
#pragma omp critical(ml_ingest_err)
            if (i < first_i) {
                first_i = i;
                first = s;
                snprintf(msg, sizeof msg, "%s", ml_last_error());
            }
        }
    }
    for (size_t i = 0; i < g->n && i < first_i; i++) {
        if (g->len[i] >= BIG_DOC_BYTES) {
            ml_status s = ml_tokenizer_encode(tok, &g->ids[i], g->text.bytes + g->off[i], g->len[i], flags);
            if (s != ML_OK) return s;
        }
        int held = g->every && g->n_docs % (uint64_t)g->every == (uint64_t)g->every - 1;
        g->n_docs++;
        ML_TRY(out_append(held ? &g->val : &g->train, g->ids[i].ids, g->ids[i].n));
    }
    if (first != ML_OK) return ml_fail(first, "%s", msg);
    g->n = 0;
    g->text.n = 0;
    if (g->show && now_s() - g->last >= 1.0) {
        g->last = now_s();
        progress(g->o, g->done_base + g->pos, g->total, g->t0, g->n_docs, 0);
    }
    return ML_OK;
}

static ml_status add_doc(ingest *g, const char *text, size_t len) {
    if (len == 0) return ML_OK; /* empty documents carry nothing to learn */
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 64;
        size_t *off = realloc(g->off, cap * sizeof *off);
        if (off) g->off = off;
        size_t *ln = realloc(g->len, cap * sizeof *ln);
        if (ln) g->len = ln;
        ml_id_buf *ids = realloc(g->ids, cap * sizeof *ids);
        if (ids) {
            g->ids = ids;
            memset(ids + g->cap, 0, (cap - g->cap) * sizeof *ids);
        }
        if (!off || !ln || !ids) return ml_fail(ML_ERR_NOMEM, "out of memory batching documents");
        g->cap = cap;
    }
    ML_TRY(ml_byte_buf_reserve(&g->text, len));
    g->off[g->n] = g->text.n;
    g->len[g->n] = len;
    memcpy(g->text.bytes + g->text.n, text, len);
    g->text.n += len;
    g->n++;
    if (g->n >= BATCH_DOCS || g->text.n >= BATCH_BYTES) return flush(g);
    return ML_OK;
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

static ml_status split_docs(ingest *g, const char *s, size_t n, ml_doc_split mode) {
    if (mode == ML_SPLIT_FILE) return add_doc(g, s, n);
    size_t para = 0, para_end = 0; /* blank-lines: the current paragraph [para, para_end) */
    int in_para = 0;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - s) : n; /* the line is [i, end) */
        if (mode == ML_SPLIT_LINES) {
            size_t e = end;
            if (e > i && s[e - 1] == '\r') e--;
            g->pos = end;
            ML_TRY(add_doc(g, s + i, e - i));
        } else if (is_blank(s + i, end - i)) {
            g->pos = end;
            if (in_para) ML_TRY(add_doc(g, s + para, para_end - para));
            in_para = 0;
        } else {
            if (!in_para) para = i;
            in_para = 1;
            para_end = end;
        }
        i = end + 1;
    }
    if (in_para) ML_TRY(add_doc(g, s + para, para_end - para));
    return ML_OK;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static ml_status jsonl_docs(ingest *g, const char *path, const char *s, size_t n, uint64_t *bad) {
    const char *field = g->o->jsonl_field;
    size_t line = 0;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - s) : n;
        line++;
        const char *ls = s + i;
        size_t ll = end - i;
        i = end + 1;
        if (is_blank(ls, ll)) continue;
        const char *why = NULL, *parse_end = NULL;
        int about_field = 0;
        cJSON *j = cJSON_ParseWithLengthOpts(ls, ll, &parse_end, 0);
        const cJSON *v = NULL;
        if (!j) why = "not valid JSON";
        else {
            while (parse_end && parse_end < ls + ll && is_ws(*parse_end)) parse_end++;
            if (parse_end && parse_end != ls + ll) why = "trailing text after the JSON value";
            else if (!cJSON_IsObject(j)) why = "not a JSON object";
            else if (!(v = cJSON_GetObjectItemCaseSensitive(j, field))) why = "no field", about_field = 1;
            else if (!cJSON_IsString(v)) why = "not a string: field", about_field = 1;
        }
        ml_status st = ML_OK;
        if (why && g->o->skip_bad_lines) (*bad)++;
        else if (why)
            st = ml_fail(ML_ERR_FORMAT, "%s:%zu: %s%s%s%s", path, line, why, about_field ? " '" : "",
                         about_field ? field : "", about_field ? "'" : "");
        else {
            g->pos = (size_t)(ls - s) + ll;
            st = add_doc(g, v->valuestring, strlen(v->valuestring));
        }
        cJSON_Delete(j);
        ML_TRY(st);
    }
    return ML_OK;
}

static void progress(const ml_ingest_opts *o, uint64_t done, uint64_t total, double t0, uint64_t docs, int final) {
    double dt = now_s() - t0, mb = (double)done / 1e6, rate = dt > 0 ? mb / dt : 0;
    double eta = rate > 0 ? ((double)(total - done) / 1e6) / rate : 0;
    char line[256];
    snprintf(line, sizeof line, "tokenize: %.1f of %.1f MB (%.0f%%), %.1f MB/s, ETA %.0fs, %" PRIu64 " documents", mb,
             (double)total / 1e6, total ? 100.0 * (double)done / (double)total : 100.0, rate, eta, docs);
    ml_progress_report r = {.task = "tokenize", .done = (double)done, .total = (double)total, .rate = rate * 1e6,
                            .eta_s = eta, .final = final, .line = line};
    ml_progress_emit(&o->on_progress, &r);
}

static ml_status check_opts(const ml_ingest_opts *o, int *every) {
    *every = 0;
    if (!o->tok || !o->out || o->n_inputs < 1) return ml_fail(ML_ERR_ARG, "ingest: a tokenizer, inputs and an output are needed");
    if (o->val_out) {
        if (!(o->val_fraction > 0 && o->val_fraction <= 0.5))
            return ml_fail(ML_ERR_ARG, "--val-fraction must be in (0, 0.5], got %g", o->val_fraction);
        *every = (int)(1.0 / o->val_fraction + 0.5);
        if (!strcmp(o->val_out, o->out)) return ml_fail(ML_ERR_ARG, "--val-out must differ from --out");
    }
    if (o->jsonl_field && !o->jsonl_field[0]) return ml_fail(ML_ERR_ARG, "--jsonl-field must not be empty");
    return ML_OK;
}

ml_status ml_ingest(const ml_ingest_opts *o, ml_ingest_result *res) {
    memset(res, 0, sizeof *res);
    ingest g = {.o = o};
    ML_TRY(check_opts(o, &g.every));
    res->every = g.every;
    g.train = (out_set){.o = o, .out = o->out, .rolling = o->shard_tokens > 0};
    g.val = (out_set){.o = o, .out = o->val_out, .rolling = o->shard_tokens > 0};
    file_list files = {0};
    char *data = NULL;
    uint64_t done = 0;
    ml_status s = collect_inputs(&files, o->inputs, o->n_inputs);
    g.t0 = g.last = now_s();
    g.show = o->progress && files.total_bytes >= (16u << 20);
    g.total = files.total_bytes;
    for (size_t i = 0; i < files.n && s == ML_OK; i++) {
        if (ml_stop_requested()) {
            s = ml_fail(ML_ERR_INTERRUPTED, "interrupted; no output written");
            break;
        }
        size_t n = 0;
        g.done_base = done;
        g.pos = 0;
        s = ml_read_file(files.paths[i], &data, &n);
        if (s != ML_OK) break;
        if (memchr(data, 0, n)) res->binary_skipped++;
        else if (o->jsonl_field && ends_with(files.paths[i], ".jsonl"))
            s = jsonl_docs(&g, files.paths[i], data, n, &res->bad_lines);
        else if ((s = split_docs(&g, data, n, o->split)) != ML_OK)
            ml_fail_context(s, "input %s", files.paths[i]);
        free(data);
        data = NULL;
        done += files.sizes[i];
        if (g.show && now_s() - g.last >= 1.0) {
            g.last = now_s();
            progress(o, done, files.total_bytes, g.t0, g.n_docs + g.n, 0);
        }
    }
    if (s == ML_OK) s = flush(&g);
    if (g.show && s == ML_OK) progress(o, done, files.total_bytes, g.t0, g.n_docs, 1);
    res->files = files.n;
    if (s == ML_OK && g.train.docs == 0)
        s = ml_fail(ML_ERR_ARG, "no documents in the inputs (%zu files, %" PRIu64 " binary files skipped%s)", files.n,
                    res->binary_skipped, res->bad_lines ? ", bad lines skipped" : "");
    if (s == ML_OK && g.every && g.val.docs == 0)
        s = ml_fail(ML_ERR_ARG, "no document was held out for validation: %" PRIu64 " documents, every %d-th is held out",
                    g.train.docs, g.every);
    if (s == ML_OK) s = out_finish(&g.train);
    if (s == ML_OK && g.every) s = out_finish(&g.val);
    if (s == ML_OK && ml_stop_requested()) s = ml_fail(ML_ERR_INTERRUPTED, "interrupted; no output written");
    if (s != ML_OK) {
        out_rollback(&g.train);
        out_rollback(&g.val);
    } else {
        res->docs = g.train.docs;
        res->tokens = g.train.tokens;
        res->val_docs = g.val.docs;
        res->val_tokens = g.val.tokens;
        res->shards = g.train.n;
        res->val_shards = g.val.n;
    }
    out_free(&g.train);
    out_free(&g.val);
    for (size_t i = 0; i < g.cap; i++) ml_id_buf_free(&g.ids[i]);
    free(g.ids);
    free(g.off);
    free(g.len);
    ml_byte_buf_free(&g.text);
    file_list_free(&files);
    return s;
}

/* ---- manifests ---- */

void ml_manifest_path(char *buf, size_t n, const char *out) { snprintf(buf, n, "%s%s", out, ML_MANIFEST_SUFFIX); }

int ml_is_manifest(const char *path) { return ends_with(path, ML_MANIFEST_SUFFIX); }

void ml_manifest_paths_free(char **paths, size_t n) {
    if (!paths) return;
    for (size_t i = 0; i < n; i++) free(paths[i]);
    free(paths);
}

/* A manifest number: a non-negative integer that a double holds exactly. */
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != (double)(uint64_t)v->valuedouble)
        return 0;
    *out = (uint64_t)v->valuedouble;
    return 1;
}

/* What a manifest entry `e` says equals what the shard's header says: tokens, documents, vocabulary,
 * tokenizer, domain (top = the manifest's top level: no per-shard counts). Fields the writer always writes
 * are required. */
static ml_status check_entry(const char *mpath, size_t k, const cJSON *e, int top, const ml_shard_info *in,
                             const char *spath) {
    uint64_t u = 0;
    const cJSON *v = top ? NULL : cJSON_GetObjectItemCaseSensitive(e, "tokens");
    if (!top && !json_u64(v, &u))
        return ml_fail(ML_ERR_FORMAT, "%s: shard %zu (%s) has no \"tokens\" count", mpath, k, spath);
    if (!top && u != in->n_tokens)
        return ml_fail(ML_ERR_FORMAT, "%s: shard %zu (%s) lists %" PRIu64 " tokens, the shard holds %" PRIu64, mpath,
                       k, spath, u, in->n_tokens);
    v = top ? NULL : cJSON_GetObjectItemCaseSensitive(e, "documents");
    if (v && !(json_u64(v, &u) && u == in->n_docs))
        return ml_fail(ML_ERR_FORMAT, "%s: shard %zu (%s) lists documents %s, the shard holds %" PRIu64, mpath, k,
                       spath, json_u64(v, &u) ? "a different count" : "that are not a count", in->n_docs);
    const char *level = top ? "top-level " : "";
    v = cJSON_GetObjectItemCaseSensitive(e, "vocab_size");
    if (!json_u64(v, &u) || u != in->vocab_size)
        return ml_fail(ML_ERR_FORMAT, "%s: shard %zu (%s): %svocab_size %s, the shard's is %u", mpath, k, spath, level,
                       json_u64(v, &u) ? "differs" : "missing or not a count", in->vocab_size);
    v = cJSON_GetObjectItemCaseSensitive(e, "tokenizer");
    if (!cJSON_IsString(v) || strcmp(v->valuestring, in->tokenizer) != 0)
        return ml_fail(ML_ERR_FORMAT, "%s: shard %zu (%s): %stokenizer \"%.64s\", the shard's is \"%s\"", mpath, k, spath,
                       level, cJSON_IsString(v) ? v->valuestring : "(missing)", in->tokenizer);
    v = cJSON_GetObjectItemCaseSensitive(e, "domain");
    if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && strcmp(v->valuestring, in->domain) == 0))
        return ml_fail(ML_ERR_FORMAT, "%s: shard %zu (%s): %sdomain differs from the shard's \"%s\"", mpath, k, spath,
                       level, in->domain);
    if (v && cJSON_IsNull(v) && in->domain[0])
        return ml_fail(ML_ERR_FORMAT, "%s: shard %zu (%s): %sdomain null, the shard's is \"%s\"", mpath, k, spath,
                       level, in->domain);
    return ML_OK;
}

ml_status ml_manifest_read(const char *path, char ***paths, size_t *n) {
    *paths = NULL;
    *n = 0;
    char *text = NULL;
    size_t len = 0;
    ML_TRY(ml_read_file(path, &text, &len));
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!j) return ml_fail(ML_ERR_FORMAT, "%s: not valid JSON", path);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(j, "version");
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "shards");
    ml_status s = ML_OK;
    uint64_t u;
    if (!cJSON_IsObject(j) || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, "mobilellm-shard-manifest") != 0)
        s = ml_fail(ML_ERR_FORMAT, "%s: not a shard manifest (no \"format\": \"mobilellm-shard-manifest\")", path);
    else if (!json_u64(ver, &u) || u != 1)
        s = ml_fail(ML_ERR_UNSUPPORTED, "%s: manifest version %s; this build reads version 1", path,
                    cJSON_IsNumber(ver) ? "other than 1" : "missing");
    else if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0)
        s = ml_fail(ML_ERR_FORMAT, "%s: \"shards\" is not a non-empty array", path);
    size_t m = s == ML_OK ? (size_t)cJSON_GetArraySize(arr) : 0;
    char **out = m ? calloc(m, sizeof *out) : NULL;
    if (s == ML_OK && !out) s = ml_fail(ML_ERR_NOMEM, "out of memory reading %s", path);
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    size_t k = 0;
    uint64_t tokens = 0, docs = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        if (s != ML_OK) break;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "path");
        if (!cJSON_IsString(p) || !p->valuestring[0]) {
            s = ml_fail(ML_ERR_FORMAT, "%s: shard %zu has no \"path\" string", path, k);
            break;
        }
        const char *sp = p->valuestring;
        size_t l = (sp[0] == '/' ? 0 : dir_len) + strlen(sp) + 1;
        if (!(out[k] = malloc(l))) {
            s = ml_fail(ML_ERR_NOMEM, "out of memory reading %s", path);
            break;
        }
        snprintf(out[k], l, "%.*s%s", sp[0] == '/' ? 0 : (int)dir_len, path, sp);
        /* The entry must describe the shard it names (and the top level all of them). */
        ml_shard_reader *r = NULL;
        if ((s = ml_shard_open(&r, out[k])) != ML_OK) {
            s = ml_fail_context(s, "%s: shard %zu", path, k);
            break;
        }
        const ml_shard_info *in = ml_shard_get_info(r);
        s = check_entry(path, k, e, 0, in, out[k]);
        if (s == ML_OK) s = check_entry(path, k, j, 1, in, out[k]);
        tokens += in->n_tokens;
        docs += in->n_docs;
        ml_shard_close(r);
        k++;
    }
    if (s == ML_OK) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "tokens"), *d = cJSON_GetObjectItemCaseSensitive(j, "documents");
        if (t && !(json_u64(t, &u) && u == tokens))
            s = ml_fail(ML_ERR_FORMAT, "%s: \"tokens\" is not the %" PRIu64 " tokens its shards hold", path, tokens);
        else if (d && !(json_u64(d, &u) && u == docs))
            s = ml_fail(ML_ERR_FORMAT, "%s: \"documents\" is not the %" PRIu64 " documents its shards hold", path, docs);
    }
    cJSON_Delete(j);
    if (s != ML_OK) {
        ml_manifest_paths_free(out, m);
        return s;
    }
    *paths = out;
    *n = m;
    return ML_OK;
}
