/* mobilellm tokenize: text files -> token shard(s). */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "common/atomic_file.h"
#include "common/signals.h"
#include "common/status.h"
#include "data/shard.h"
#include "data/tokenizer.h"

typedef enum { SPLIT_FILE, SPLIT_BLANK_LINES, SPLIT_LINES } split_mode;

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

static ml_status collect_inputs(file_list *l, const ml_str_list *inputs) {
    for (int i = 0; i < inputs->count; i++) {
        const char *p = inputs->items[i];
        struct stat st;
        if (stat(p, &st) != 0) return ml_fail(ML_ERR_IO, "cannot open %s: %s", p, strerror(errno));
        if (S_ISDIR(st.st_mode)) ML_TRY(walk_dir(l, p));
        else if (S_ISREG(st.st_mode)) ML_TRY(file_list_add(l, p, (uint64_t)st.st_size));
        else return ml_fail(ML_ERR_IO, "%s is neither a regular file nor a directory", p);
    }
    return ML_OK;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const ml_tokenizer *tok;
    unsigned flags;
    ml_shard_writer *train, *val;
    int every; /* hold out document k when k % every == every - 1; 0: no validation split */
    uint64_t n_docs;
    ml_id_buf ids;
} doc_sink;

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

static ml_status emit_doc(doc_sink *k, const char *text, size_t len) {
    if (len == 0) return ML_OK; /* empty documents carry nothing to learn */
    k->ids.n = 0;
    ML_TRY(ml_tokenizer_encode(k->tok, &k->ids, text, len, k->flags));
    ml_shard_writer *w = k->every && k->n_docs % (uint64_t)k->every == (uint64_t)k->every - 1 ? k->val : k->train;
    k->n_docs++;
    return ml_shard_writer_append_doc(w, k->ids.ids, k->ids.n);
}

static ml_status split_docs(doc_sink *k, const char *s, size_t n, split_mode mode) {
    if (mode == SPLIT_FILE) return emit_doc(k, s, n);
    size_t para = 0, para_end = 0; /* blank-lines: the current paragraph [para, para_end) */
    int in_para = 0;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - s) : n; /* the line is [i, end) */
        if (mode == SPLIT_LINES) {
            size_t e = end;
            if (e > i && s[e - 1] == '\r') e--;
            ML_TRY(emit_doc(k, s + i, e - i));
        } else if (is_blank(s + i, end - i)) {
            if (in_para) ML_TRY(emit_doc(k, s + para, para_end - para));
            in_para = 0;
        } else {
            if (!in_para) para = i;
            in_para = 1;
            para_end = end;
        }
        i = end + 1;
    }
    if (in_para) ML_TRY(emit_doc(k, s + para, para_end - para));
    return ML_OK;
}

static void progress(uint64_t done, uint64_t total, double t0, uint64_t docs, int final) {
    double dt = now_s() - t0, mb = (double)done / 1e6, rate = dt > 0 ? mb / dt : 0;
    double eta = rate > 0 ? ((double)(total - done) / 1e6) / rate : 0;
    int tty = isatty(2);
    fprintf(stderr, "%stokenize: %.1f of %.1f MB (%.0f%%), %.1f MB/s, ETA %.0fs, %" PRIu64 " documents%s",
            tty ? "\r" : "", mb, (double)total / 1e6, total ? 100.0 * (double)done / (double)total : 100.0, rate, eta,
            docs, tty && !final ? "" : "\n");
}

static ml_status writer_setup(ml_shard_writer **w, const char *path, const ml_tokenizer *tok, const char *domain) {
    ML_TRY(ml_shard_writer_open(w, path));
    ml_status s = ml_shard_writer_set_vocab(*w, ml_tokenizer_vocab_size(tok));
    if (s == ML_OK) s = ml_shard_writer_set_tokenizer(*w, ml_tokenizer_fingerprint(tok));
    if (s == ML_OK && domain) s = ml_shard_writer_set_domain(*w, domain);
    if (s != ML_OK) {
        ml_shard_writer_abort(*w);
        *w = NULL;
    }
    return s;
}

typedef struct {
    const char *tokenizer, *out, *split, *domain, *val_out;
    ml_str_list inputs;
    int bos, eos;
    float val_fraction;
    int val_seen;
} tok_args;

static ml_status run(const tok_args *a) {
    split_mode mode;
    if (!strcmp(a->split, "file")) mode = SPLIT_FILE;
    else if (!strcmp(a->split, "blank-lines")) mode = SPLIT_BLANK_LINES;
    else if (!strcmp(a->split, "lines")) mode = SPLIT_LINES;
    else return ml_fail(ML_ERR_ARG, "--doc-split must be file, blank-lines or lines, got '%s'", a->split);
    int every = 0;
    if (a->val_seen || a->val_out) {
        if (!a->val_seen || !a->val_out) return ml_fail(ML_ERR_ARG, "--val-fraction and --val-out go together");
        if (!(a->val_fraction > 0 && a->val_fraction <= 0.5f))
            return ml_fail(ML_ERR_ARG, "--val-fraction must be in (0, 0.5], got %g", (double)a->val_fraction);
        every = (int)(1.0 / a->val_fraction + 0.5);
        if (!strcmp(a->val_out, a->out)) return ml_fail(ML_ERR_ARG, "--val-out must differ from --out");
    }

    ml_tokenizer *tok = NULL;
    ML_TRY(ml_tokenizer_open(&tok, a->tokenizer));
    file_list files = {0};
    doc_sink sink = {.tok = tok, .flags = (a->bos ? ML_TOK_ADD_BOS : 0) | (a->eos ? ML_TOK_ADD_EOS : 0), .every = every};
    char *data = NULL;
    uint64_t skipped = 0, done = 0;
    ml_status s = collect_inputs(&files, &a->inputs);
    if (s == ML_OK) s = writer_setup(&sink.train, a->out, tok, a->domain);
    if (s == ML_OK && every) s = writer_setup(&sink.val, a->val_out, tok, a->domain);

    double t0 = now_s(), last = t0;
    int show = files.total_bytes >= (16u << 20);
    for (size_t i = 0; i < files.n && s == ML_OK; i++) {
        if (ml_stop_requested()) {
            s = ml_fail(ML_ERR_INTERRUPTED, "interrupted; no output written");
            break;
        }
        size_t n = 0;
        s = ml_read_file(files.paths[i], &data, &n);
        if (s != ML_OK) break;
        if (memchr(data, 0, n)) skipped++; /* binary */
        else if ((s = split_docs(&sink, data, n, mode)) != ML_OK) ml_fail_context(s, "input %s", files.paths[i]);
        free(data);
        data = NULL;
        done += files.sizes[i];
        if (show && now_s() - last >= 1.0) {
            last = now_s();
            progress(done, files.total_bytes, t0, sink.n_docs, 0);
        }
    }
    if (show && s == ML_OK) progress(done, files.total_bytes, t0, sink.n_docs, 1);

    uint64_t train_docs = sink.train ? ml_shard_writer_docs(sink.train) : 0;
    uint64_t train_tokens = sink.train ? ml_shard_writer_tokens(sink.train) : 0;
    uint64_t val_docs = sink.val ? ml_shard_writer_docs(sink.val) : 0;
    uint64_t val_tokens = sink.val ? ml_shard_writer_tokens(sink.val) : 0;
    if (s == ML_OK && train_docs == 0)
        s = ml_fail(ML_ERR_ARG, "no documents in the inputs (%zu files, %" PRIu64 " binary files skipped)", files.n, skipped);
    if (s == ML_OK && every && val_docs == 0)
        s = ml_fail(ML_ERR_ARG, "no document was held out for validation: %" PRIu64 " documents, every %d-th is held out",
                    train_docs, every);
    if (s == ML_OK) {
        s = ml_shard_writer_close(sink.train);
        sink.train = NULL;
        if (s == ML_OK && sink.val) {
            s = ml_shard_writer_close(sink.val);
            sink.val = NULL;
            if (s != ML_OK) unlink(a->out); /* both outputs or neither */
        }
    }
    ml_shard_writer_abort(sink.train);
    ml_shard_writer_abort(sink.val);
    if (s == ML_OK) {
        printf("wrote %s: %" PRIu64 " documents, %" PRIu64 " tokens (%zu files read, %" PRIu64 " binary files skipped)\n",
               a->out, train_docs, train_tokens, files.n, skipped);
        if (every) printf("wrote %s: %" PRIu64 " documents, %" PRIu64 " tokens (every %d-th document)\n", a->val_out,
                          val_docs, val_tokens, every);
    }
    ml_id_buf_free(&sink.ids);
    file_list_free(&files);
    ml_tokenizer_free(tok);
    return s;
}

int ml_cmd_tokenize(int argc, char **argv) {
    tok_args a = {.split = "file"};
    ml_opt opts[] = {
        {"tokenizer", ML_OPT_STR, &a.tokenizer, "tokenizer: 'bytes' or a tokenizer file (SentencePiece .model)", 1, 0},
        {"input", ML_OPT_STR_LIST, &a.inputs, "text files or directories (walked recursively, sorted)", 1, 0},
        {"out", ML_OPT_STR, &a.out, "output token shard", 1, 0},
        {"doc-split", ML_OPT_STR, &a.split, "documents: file (default) | blank-lines | lines", 0, 0},
        {"domain", ML_OPT_STR, &a.domain, "domain label recorded in the shard", 0, 0},
        {"bos", ML_OPT_FLAG, &a.bos, "begin each document with BOS", 0, 0},
        {"eos", ML_OPT_FLAG, &a.eos, "end each document with EOS", 0, 0},
        {"val-fraction", ML_OPT_FLOAT, &a.val_fraction, "hold out every round(1/F)-th document (0 < F <= 0.5)", 0, 0},
        {"val-out", ML_OPT_STR, &a.val_out, "shard for the held-out documents", 0, 0},
    };
    int n = (int)(sizeof opts / sizeof opts[0]);
    int rc = ml_args_parse("tokenize", "--tokenizer bytes --input FILE|DIR... --out SHARD [options]", opts, n, argc, argv);
    if (rc != 0) return rc > 0 ? 0 : 2;
    a.val_seen = opts[7].seen;
    if (run(&a) != ML_OK) return ml_cli_fail("tokenize");
    return 0;
}
