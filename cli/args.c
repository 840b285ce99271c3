#include "cli/args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dist.h"
#include "common/status.h"
#include "data/ingest.h"

static void print_help(const char *cmd, const char *usage, const ml_opt *opts, int n) {
    printf("usage: mobilellm %s %s\n\noptions:\n", cmd, usage);
    for (int i = 0; i < n; i++) {
        const char *arg = opts[i].type == ML_OPT_FLAG ? "" : opts[i].type == ML_OPT_STR_LIST ? " X..." : " X";
        char left[64];
        snprintf(left, sizeof left, "--%s%s", opts[i].name, arg);
        printf("  %-24s %s%s\n", left, opts[i].help, opts[i].required ? " (required)" : "");
    }
}

static int parse_value(const char *cmd, ml_opt *o, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case ML_OPT_STR: *(const char **)o->dest = v; return 0;
    case ML_OPT_INT: {
        long x = strtol(v, &end, 10);
        if (errno || !*v || *end || x < -2147483647L || x > 2147483647L) break;
        *(int *)o->dest = (int)x;
        return 0;
    }
    case ML_OPT_I64: {
        long long x = strtoll(v, &end, 10);
        if (errno || !*v || *end) break;
        *(int64_t *)o->dest = x;
        return 0;
    }
    case ML_OPT_FLOAT: {
        float x = strtof(v, &end);
        if (errno || !*v || *end) break;
        *(float *)o->dest = x;
        return 0;
    }
    default: break;
    }
    fprintf(stderr, "mobilellm %s: --%s expects a %s, got '%s'\n", cmd, o->name,
            o->type == ML_OPT_FLOAT ? "number" : "whole number", v);
    return -1;
}

int ml_args_parse(const char *cmd, const char *usage, ml_opt *opts, int n_opts, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_help(cmd, usage, opts, n_opts);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "mobilellm %s: unexpected argument '%s' (see --help)\n", cmd, a);
            return -1;
        }
        ml_opt *o = NULL;
        for (int k = 0; k < n_opts; k++)
            if (!strcmp(opts[k].name, a + 2)) o = &opts[k];
        if (!o) {
            fprintf(stderr, "mobilellm %s: unknown option '%s' (see --help)\n", cmd, a);
            return -1;
        }
        o->seen = 1;
        if (o->type == ML_OPT_FLAG) {
            *(int *)o->dest = 1;
            continue;
        }
        if (o->type == ML_OPT_STR_LIST) {
            ml_str_list *l = o->dest;
            l->items = (const char **)&argv[i + 1];
            l->count = 0;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
                l->count++;
                i++;
            }
            if (l->count == 0) {
                fprintf(stderr, "mobilellm %s: --%s needs at least one value\n", cmd, o->name);
                return -1;
            }
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "mobilellm %s: --%s needs a value\n", cmd, o->name);
            return -1;
        }
        if (parse_value(cmd, o, argv[++i]) != 0) return -1;
    }
    for (int k = 0; k < n_opts; k++)
        if (opts[k].required && !opts[k].seen) {
            fprintf(stderr, "mobilellm %s: missing --%s (see --help)\n", cmd, opts[k].name);
            return -1;
        }
    return 0;
}

int ml_cli_fail(const char *cmd) {
    /* a data-parallel failure that rank 0 reports is not repeated by every rank */
    if (ml_dist_rank() == 0 || !ml_dist_failure_agreed()) fprintf(stderr, "mobilellm %s: %s\n", cmd, ml_last_error());
    return 1;
}

int ml_args_seen(const ml_opt *opts, int n_opts, const char *name) {
    for (int i = 0; i < n_opts; i++)
        if (!strcmp(opts[i].name, name)) return opts[i].seen;
    return 0;
}

typedef struct {
    const char **items;
    char **paths; /* owned strings */
    size_t n;
} expanded_list;

void ml_str_list_release(ml_str_list *l) {
    expanded_list *e = l->owned;
    if (!e) return;
    ml_manifest_paths_free(e->paths, e->n);
    free(e->items);
    free(e);
    l->owned = NULL;
    l->items = NULL;
    l->count = 0;
}

int ml_expand_data_args(const char *cmd, ml_str_list *l) {
    int any = 0;
    for (int i = 0; i < l->count; i++) any |= ml_is_manifest(l->items[i]);
    if (!any) return 0;
    expanded_list *e = calloc(1, sizeof *e);
    size_t count = 0;
    ml_status s = e ? ML_OK : ml_fail(ML_ERR_NOMEM, "out of memory");
    for (int i = 0; i < l->count && s == ML_OK; i++) {
        char **p = NULL;
        size_t n = 1;
        if (ml_is_manifest(l->items[i]) && (s = ml_manifest_read(l->items[i], &p, &n)) != ML_OK) break;
        const char **items = realloc(e->items, (count + n) * sizeof *items);
        char **paths = p ? realloc(e->paths, (e->n + n) * sizeof *paths) : e->paths;
        if (items) e->items = items;
        if (paths) e->paths = paths;
        if (!items || !paths) {
            ml_manifest_paths_free(p, n);
            s = ml_fail(ML_ERR_NOMEM, "out of memory");
            break;
        }
        for (size_t k = 0; k < n; k++) {
            if (p) e->paths[e->n++] = p[k];
            e->items[count++] = p ? p[k] : l->items[i];
        }
        free(p);
    }
    if (s != ML_OK) {
        if (e) {
            ml_manifest_paths_free(e->paths, e->n);
            free(e->items);
            free(e);
        }
        return ml_cli_fail(cmd);
    }
    l->owned = e;
    l->items = e->items;
    l->count = (int)count;
    return 0;
}
