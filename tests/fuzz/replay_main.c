/* Replay driver for the fuzz targets, built with the normal compiler (gcc) so that every build, the
 * sanitizer build included, runs the seed corpora through the real parsers:
 *   replay_<target> [--mutants N] [--seed S] [--max-seconds T] PATH...
 * feeds LLVMFuzzerTestOneInput every file of each PATH (a file, or a folder: its files in byte-wise name
 * order), then N deterministic mutants of those files (seeded xorshift: byte flips, interesting values,
 * truncations, insertions, deletions, duplicated and overwritten spans). A parser returning an error is
 * success; a crash, a sanitizer report or a failed FUZZ_ASSERT ends the process with a non-zero status.
 * On a crash, a sanitizer report or an abort the driver prints "replay: failed on <seed> [mutant K]" (so a
 * finding names its seed and mutant; rerun with the same --seed to reproduce it, and REPLAY_SAVE=FILE to
 * keep the failing input). */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What is running, for the failure report (written from signal handlers: fixed buffers only). */
static char current[4352];
static const uint8_t *current_data;
static size_t current_size;

static void report(void) {
    static const char pre[] = "replay: failed on ";
    if (write(2, pre, sizeof pre - 1) < 0 || write(2, current, strlen(current)) < 0 || write(2, "\n", 1) < 0) return;
    const char *save = getenv("REPLAY_SAVE");
    if (save && current_data) {
        int fd = open(save, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            if (write(fd, current_data, current_size) < 0) {}
            close(fd);
        }
    }
}

static void on_signal(int sig) {
    report();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Called by the sanitizers before they exit on a report (weak: absent in plain builds). */
void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

typedef struct {
    char *name;
    uint8_t *data;
    size_t size;
} seed;

static seed *seeds;
static size_t n_seeds, cap_seeds;

static int read_all(const char *path, uint8_t **out, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (len == cap) {
            uint8_t *p = realloc(buf, cap *= 2);
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int err = ferror(f) || !buf;
    fclose(f);
    if (err) {
        free(buf);
        return -1;
    }
    *out = buf;
    *n = len;
    return 0;
}

static int add_seed(const char *path) {
    uint8_t *d;
    size_t n;
    if (read_all(path, &d, &n) != 0) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        return -1;
    }
    if (n_seeds == cap_seeds) {
        cap_seeds = cap_seeds ? 2 * cap_seeds : 64;
        seeds = realloc(seeds, cap_seeds * sizeof *seeds);
        if (!seeds) return -1;
    }
    seeds[n_seeds].name = strdup(path);
    seeds[n_seeds].data = d;
    seeds[n_seeds].size = n;
    n_seeds++;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int add_path(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "replay: no such file or folder: %s\n", path);
        return -1;
    }
    if (!S_ISDIR(sb.st_mode)) return add_seed(path);
    DIR *d = opendir(path);
    if (!d) return -1;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap && !(names = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names))) return -1;
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", path, names[i]);
        if (stat(full, &sb) == 0 && S_ISREG(sb.st_mode) && add_seed(full) != 0) rc = -1;
        free(names[i]);
    }
    free(names);
    return rc;
}

static uint64_t rng_state;
static uint64_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

/* One mutation of buf[0..*n) in place (cap bytes available). */
static void mutate_once(uint8_t *buf, size_t *n, size_t cap) {
    static const uint64_t interesting[] = {0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000u,
                                           0xffffffffu, 0x3fffffff, 0x100000000ull, 0x7fffffffffffffffull,
                                           0xffffffffffffffffull};
    size_t len = *n;
    switch (rnd() % 8) {
    case 0: /* flip a bit */
        if (len) buf[below(len)] ^= (uint8_t)(1u << (rnd() % 8));
        break;
    case 1: /* random byte */
        if (len) buf[below(len)] = (uint8_t)rnd();
        break;
    case 2: { /* interesting integer, 1/2/4/8 bytes, little-endian */
        size_t w = (size_t)1 << (rnd() % 4);
        if (len >= w) {
            uint64_t v = interesting[below(sizeof interesting / sizeof *interesting)];
            memcpy(buf + below(len - w + 1), &v, w);
        }
        break;
    }
    case 3: /* truncate */
        if (len) *n = below(len);
        break;
    case 4: { /* insert random bytes */
        size_t k = 1 + below(16), at = below(len + 1);
        if (len + k <= cap) {
            memmove(buf + at + k, buf + at, len - at);
            for (size_t i = 0; i < k; i++) buf[at + i] = (uint8_t)rnd();
            *n = len + k;
        }
        break;
    }
    case 5: { /* delete a span */
        if (len) {
            size_t at = below(len), k = 1 + below(len - at < 64 ? len - at : 64);
            memmove(buf + at, buf + at + k, len - at - k);
            *n = len - k;
        }
        break;
    }
    case 6: { /* duplicate a span */
        if (len) {
            size_t at = below(len), k = 1 + below(len - at < 64 ? len - at : 64), to = below(len + 1);
            if (len + k <= cap) {
                uint8_t tmp[64];
                memcpy(tmp, buf + at, k);
                memmove(buf + to + k, buf + to, len - to);
                memcpy(buf + to, tmp, k);
                *n = len + k;
            }
        }
        break;
    }
    default: /* ASCII digit run: numbers in text formats */
        if (len) {
            size_t at = below(len), k = 1 + below(10);
            for (size_t i = 0; i < k && at + i < len; i++) buf[at + i] = (uint8_t)('0' + rnd() % 10);
        }
        break;
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Run one input from an exact-size heap copy, so ASan sees any read past its end. */
static void run_one(const uint8_t *data, size_t n) {
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy) abort();
    memcpy(copy, data, n);
    current_data = data;
    current_size = n;
    LLVMFuzzerTestOneInput(copy, n);
    free(copy);
}

int main(int argc, char **argv) {
    long mutants = 0;
    uint64_t seed_value = 1;
    double max_seconds = 0;
    int n_paths = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mutants") && i + 1 < argc) mutants = atol(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed_value = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--max-seconds") && i + 1 < argc) max_seconds = atof(argv[++i]);
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [--mutants N] [--seed S] [--max-seconds T] PATH...\n", argv[0]);
            return 2;
        } else {
            if (add_path(argv[i]) != 0) return 2;
            n_paths++;
        }
    }
    if (!n_paths || !n_seeds) {
        fprintf(stderr, "replay: no inputs\n");
        return 2;
    }
    if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(report);
    signal(SIGABRT, on_signal);
    signal(SIGSEGV, on_signal);
    signal(SIGBUS, on_signal);
    signal(SIGFPE, on_signal);
    signal(SIGILL, on_signal);
    double t0 = now();
    for (size_t i = 0; i < n_seeds; i++) {
        snprintf(current, sizeof current, "%s", seeds[i].name);
        run_one(seeds[i].data, seeds[i].size);
    }
    rng_state = seed_value * 0x9E3779B97F4A7C15ull + 1;
    long done = 0;
    for (; done < mutants; done++) {
        if (max_seconds > 0 && now() - t0 > max_seconds) break;
        const seed *s = &seeds[(size_t)done % n_seeds];
        size_t cap = s->size + 1024, n = s->size;
        uint8_t *buf = malloc(cap);
        if (!buf) abort();
        memcpy(buf, s->data, n);
        int k = 1 + (int)(rnd() % 4);
        for (int j = 0; j < k; j++) mutate_once(buf, &n, cap);
        snprintf(current, sizeof current, "%s mutant %ld (--seed %llu)", s->name, done, (unsigned long long)seed_value);
        run_one(buf, n);
        free(buf);
    }
    printf("replay: %zu corpus files and %ld mutants in %.1f s, no crash\n", n_seeds, done, now() - t0);
    return 0;
}
