#include "mix/mixture_file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/atomic_file.h"

ml_status ml_mix_relpath(const char *path, const char *base_dir, char *buf, size_t n) {
    char p[PATH_MAX], b[PATH_MAX];
    if (!realpath(path, p)) return ml_fail(ML_ERR_IO, "cannot resolve %s: %s", path, strerror(errno));
    if (!realpath(base_dir, b)) return ml_fail(ML_ERR_IO, "cannot resolve %s: %s", base_dir, strerror(errno));
    /* common prefix up to a '/' */
    size_t i = 0, last = 0;
    while (p[i] && b[i] && p[i] == b[i]) {
        if (p[i] == '/') last = i;
        i++;
    }
    if (!b[i] && (p[i] == '/' || !p[i])) last = i;
    size_t k = 0;
    buf[0] = 0;
    for (const char *q = b + last; *q; q++) /* one ".." per remaining component of the base */
        if (*q == '/' && q[1]) k += (size_t)snprintf(buf + k, k < n ? n - k : 0, "../");
    const char *rest = p + last + (p[last] == '/');
    snprintf(buf + k, k < n ? n - k : 0, "%s", rest);
    return ML_OK;
}

void ml_mixture_specs_free(char **specs, int n) {
    for (int i = 0; specs && i < n; i++) free(specs[i]);
    free(specs);
}

ml_status ml_mixture_file_specs(const char *path, char ***specs, int *n) {
    *specs = NULL, *n = 0;
    char *text;
    size_t size;
    ML_TRY(ml_read_file(path, &text, &size));
    cJSON *o = cJSON_Parse(text);
    free(text);
    if (!o) return ml_fail(ML_ERR_FORMAT, "%s is not valid JSON", path);
    ml_status s = ML_OK;
    const cJSON *doms = cJSON_GetObjectItemCaseSensitive(o, "domains");
    int nd = cJSON_IsArray(doms) ? cJSON_GetArraySize(doms) : 0;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0; else dir[0] = 0;
    char **out = calloc((size_t)(nd ? nd : 1), sizeof *out);
    int k = 0;
    double sum = 0;
    if (!out) s = ml_fail(ML_ERR_NOMEM, "out of memory reading %s", path);
    if (s == ML_OK && nd == 0) s = ml_fail(ML_ERR_FORMAT, "%s: no \"domains\" array", path);
    for (int i = 0; s == ML_OK && i < nd; i++) {
        const cJSON *d = cJSON_GetArrayItem(doms, i);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(d, "name"), *w = cJSON_GetObjectItemCaseSensitive(d, "weight"),
                    *sh = cJSON_GetObjectItemCaseSensitive(d, "shards");
        if (!cJSON_IsString(name) || !*name->valuestring || strpbrk(name->valuestring, ":,")) {
            s = ml_fail(ML_ERR_FORMAT, "%s: domain %d has no name (a string without ':' or ',')", path, i);
            break;
        }
        if (!cJSON_IsNumber(w) || !isfinite(w->valuedouble) || w->valuedouble < 0) {
            s = ml_fail(ML_ERR_FORMAT, "%s: domain '%s' needs a finite weight >= 0", path, name->valuestring);
            break;
        }
        int ns = cJSON_IsArray(sh) ? cJSON_GetArraySize(sh) : 0;
        if (ns == 0) {
            s = ml_fail(ML_ERR_FORMAT, "%s: domain '%s' lists no shards", path, name->valuestring);
            break;
        }
        sum += w->valuedouble;
        if (w->valuedouble == 0) continue; /* left out */
        size_t len = 64 + strlen(name->valuestring) + (size_t)ns * (PATH_MAX + 1);
        const cJSON *e;
        char *spec = malloc(len);
        if (!spec) {
            s = ml_fail(ML_ERR_NOMEM, "out of memory reading %s", path);
            break;
        }
        size_t at = 0;
        int j = 0;
        cJSON_ArrayForEach(e, sh) {
            if (!cJSON_IsString(e) || !*e->valuestring || strpbrk(e->valuestring, ",")) {
                s = ml_fail(ML_ERR_FORMAT, "%s: domain '%s': shard %d is not a path string without ','", path,
                            name->valuestring, j);
                break;
            }
            /* resolved now, so the run's stored sources do not depend on the mixture file's folder (a resume
             * reads them, not the file) and a missing shard is reported against the file that names it */
            char joined[PATH_MAX], real[PATH_MAX];
            const char *p = e->valuestring;
            snprintf(joined, sizeof joined, "%s%s", p[0] == '/' ? "" : dir, p);
            if (!realpath(joined, real)) {
                s = ml_fail(ML_ERR_IO, "%s: domain '%s': cannot open shard %s: %s", path, name->valuestring, joined,
                            strerror(errno));
                break;
            }
            at += (size_t)snprintf(spec + at, len - at, "%s%s", j ? "," : "", real);
            j++;
        }
        if (s != ML_OK) {
            free(spec);
            break;
        }
        snprintf(spec + at, len - at, ":%.17g:%s", w->valuedouble, name->valuestring);
        out[k++] = spec;
    }
    if (s == ML_OK && !(sum > 0))
        s = ml_fail(ML_ERR_FORMAT, "%s: the domain weights sum to %g; they must sum to a positive number", path, sum);
    cJSON_Delete(o);
    if (s != ML_OK) {
        ml_mixture_specs_free(out, k);
        return s;
    }
    *specs = out, *n = k;
    return ML_OK;
}
