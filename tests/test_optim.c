/* optim/: AdamW and SGD against torch 1.13, restore and thread-count invariance, learning-rate
 * schedules, gradient norm and clipping against torch.nn.utils.clip_grad_norm_.
 *
 * The torch comparisons run ML_PYTHON on an inline script (written to the test's directory) that
 * reads the initial parameters and the gradient sequence this test writes, and writes torch's
 * results back. Tolerance: |ours - torch| <= 1e-6 * (|torch| + floor) element-wise, with floor
 * 1e-3 for parameters (an update is ~lr, so a near-zero parameter after cancellation is judged
 * on the update's scale) and 1e-30 for the moments. On this machine (torch 1.13 with its AVX2
 * kernels) the results are in fact bit-identical (the log prints the ulp counts), but the test
 * does not demand that: another torch build may round differently. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/rng.h"
#include "optim/clip.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "tests/support/test_util.h"

#define N_FLOATS 2000
#define N_STEPS 10

/* Parameter layout for the torch comparisons: odd sizes (scalar remainders), gaps between
 * segments (must stay untouched), decay and no-decay segments, listed out of offset order. */
static const ml_optim_segment SEGS[] = {
    {1472, 500, 1}, {368, 1024, 1}, {336, 17, 0}, {0, 333, 1}, {1400, 64, 0},
};
#define N_SEGS ((int)(sizeof SEGS / sizeof SEGS[0]))

static const char *PY_SCRIPT =
    "import sys, json\n"
    "import numpy as np\n"
    "try:\n"
    "    import torch\n"
    "except Exception:\n"
    "    sys.exit(77)\n"
    "d = sys.argv[1]\n"
    "spec = json.load(open(d + '/spec.json'))\n"
    "n, segs, mode = spec['n'], spec['segs'], spec['mode']\n"
    "torch.set_num_threads(1)\n"
    "def rd(name): return np.fromfile(d + '/' + name, dtype='<f4')\n"
    "def wr(name, a): np.asarray(a, dtype='<f4').tofile(d + '/' + name)\n"
    "if mode == 'clip':\n"
    "    g = rd('g.bin')\n"
    "    norms = []\n"
    "    for i, max_norm in enumerate(spec['max_norms']):\n"
    "        params = []\n"
    "        for off, k, w in segs:\n"
    "            p = torch.zeros(k, requires_grad=True)\n"
    "            p.grad = torch.from_numpy(g[off:off + k].copy())\n"
    "            params.append(p)\n"
    "        norms.append(float(torch.nn.utils.clip_grad_norm_(params, max_norm)))\n"
    "        out = g.copy()\n"
    "        for (off, k, w), p in zip(segs, params): out[off:off + k] = p.grad.numpy()\n"
    "        wr('g_out%d.bin' % i, out)\n"
    "    open(d + '/norms.txt', 'w').write(' '.join(repr(x) for x in norms))\n"
    "else:\n"
    "    steps = spec['steps']\n"
    "    p0 = rd('p0.bin')\n"
    "    gs = rd('grads.bin').reshape(steps, n)\n"
    "    params = [torch.nn.Parameter(torch.from_numpy(p0[o:o + k].copy())) for o, k, w in segs]\n"
    "    dec = [p for p, s in zip(params, segs) if s[2]]\n"
    "    nod = [p for p, s in zip(params, segs) if not s[2]]\n"
    "    groups = []\n"
    "    if dec: groups.append({'params': dec, 'weight_decay': spec['weight_decay']})\n"
    "    if nod: groups.append({'params': nod, 'weight_decay': 0.0})\n"
    "    if mode == 'adamw':\n"
    "        opt = torch.optim.AdamW(groups, lr=1.0, betas=(spec['beta1'], spec['beta2']),\n"
    "                                eps=spec['eps'], foreach=False)\n"
    "    else:\n"
    "        opt = torch.optim.SGD(groups, lr=1.0, momentum=spec['momentum'], foreach=False)\n"
    "    for s in range(steps):\n"
    "        for grp in opt.param_groups: grp['lr'] = spec['lrs'][s]\n"
    "        for p, (o, k, w) in zip(params, segs): p.grad = torch.from_numpy(gs[s, o:o + k].copy())\n"
    "        opt.step()\n"
    "    pout = p0.copy()\n"
    "    m = np.zeros(n, np.float32)\n"
    "    v = np.zeros(n, np.float32)\n"
    "    for p, (o, k, w) in zip(params, segs):\n"
    "        pout[o:o + k] = p.detach().numpy()\n"
    "        st = opt.state[p]\n"
    "        if mode == 'adamw':\n"
    "            m[o:o + k] = st['exp_avg'].numpy()\n"
    "            v[o:o + k] = st['exp_avg_sq'].numpy()\n"
    "        elif st.get('momentum_buffer') is not None:\n"
    "            m[o:o + k] = st['momentum_buffer'].numpy()\n"
    "    wr('p_out.bin', pout)\n"
    "    wr('m_out.bin', m)\n"
    "    wr('v_out.bin', v)\n";

static const char *tmpdir(void) {
    const char *d = ml_test_tmpdir("test_optim");
    assert_non_null(d);
    return d;
}

static void write_floats(const char *path, const float *x, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(x, sizeof(float), n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void read_floats(const char *path, float *x, size_t n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(x, sizeof(float), n, f), n);
    fclose(f);
}

static void write_text(const char *path, const char *fmt, ...) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    assert_int_equal(fclose(f), 0);
}

static void segs_json(char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int s = 0; s < N_SEGS; s++)
        k += (size_t)snprintf(buf + k, cap - k, "%s[%zu, %zu, %d]", s ? ", " : "", SEGS[s].offset, SEGS[s].numel,
                              SEGS[s].weight_decay);
    snprintf(buf + k, cap - k, "]");
}

/* Run the torch script on the files in the test directory; skips the test if torch is missing. */
static void run_torch(void) {
    const char *d = tmpdir();
    const char *script = ml_test_path(d, "ref.py");
    write_text(script, "%s", PY_SCRIPT);
    if (ML_PYTHON[0] == '\0') ML_SKIP("no python3 found at configure time (PyTorch reference)");
    int rc = ml_test_run("'%s' '%s' '%s'", ML_PYTHON, script, d);
    if (rc == 77) ML_SKIP("PyTorch is not importable (apt-get install python3-torch)");
    assert_int_equal(rc, 0);
}

/* Distance in units in the last place (same-sign finite floats; large otherwise). */
static int64_t ulps(float a, float b) {
    int32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    if (x < 0) x = INT32_MIN - x;
    if (y < 0) y = INT32_MIN - y;
    return llabs((int64_t)x - (int64_t)y);
}

static void compare(const char *what, const float *ours, const float *ref, size_t n, double floor) {
    double rel = ml_test_max_rel_diff(ours, ref, n, floor);
    int64_t max_ulps = 0;
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t u = ulps(ours[i], ref[i]);
        if (u > max_ulps) max_ulps = u;
        differ += u != 0;
    }
    fprintf(stderr, "%s: max rel diff %.3g, %zu of %zu elements differ, max %lld ulps\n", what, rel, differ, n,
            (long long)max_ulps);
    assert_true(rel <= 1e-6);
}

static void fill_problem(float *p0, float *grads, float *lrs, uint64_t seed, float base_lr) {
    ml_rng r;
    ml_rng_seed(&r, seed);
    for (size_t i = 0; i < N_FLOATS; i++) p0[i] = (float)(0.5 * ml_rng_normal(&r));
    for (int s = 0; s < N_STEPS; s++) {
        lrs[s] = base_lr * (float)(1 + s % 3);
        for (size_t i = 0; i < N_FLOATS; i++) {
            /* gradient scales vary by region; some zeros, so v = 0 and eps alone is the denominator */
            double scale = i < 700 ? 1.0 : i < 1400 ? 1e-3 : 30.0;
            float g = (float)(scale * ml_rng_normal(&r));
            if ((i % 97) == 5 && s < 3) g = 0.0f;
            grads[(size_t)s * N_FLOATS + i] = g;
        }
    }
}

static void check_against_torch(const ml_optim_config *cfg, float base_lr, uint64_t seed) {
    const char *d = tmpdir();
    float *p0 = malloc(N_FLOATS * sizeof(float)), *grads = malloc(N_STEPS * N_FLOATS * sizeof(float));
    float *p = malloc(N_FLOATS * sizeof(float)), *ref = malloc(N_FLOATS * sizeof(float));
    float lrs[N_STEPS];
    assert_true(p0 && grads && p && ref);
    fill_problem(p0, grads, lrs, seed, base_lr);
    write_floats(ml_test_path(d, "p0.bin"), p0, N_FLOATS);
    write_floats(ml_test_path(d, "grads.bin"), grads, N_STEPS * N_FLOATS);
    char segs[512], lr_list[512];
    segs_json(segs, sizeof segs);
    size_t k = (size_t)snprintf(lr_list, sizeof lr_list, "[");
    for (int s = 0; s < N_STEPS; s++) k += (size_t)snprintf(lr_list + k, sizeof lr_list - k, "%s%.17g", s ? ", " : "", (double)lrs[s]);
    snprintf(lr_list + k, sizeof lr_list - k, "]");
    write_text(ml_test_path(d, "spec.json"),
               "{\"mode\": \"%s\", \"n\": %d, \"steps\": %d, \"segs\": %s, \"lrs\": %s, \"beta1\": %.17g, "
               "\"beta2\": %.17g, \"eps\": %.17g, \"weight_decay\": %.17g, \"momentum\": %.17g}\n",
               ml_optim_kind_name(cfg->kind), N_FLOATS, N_STEPS, segs, lr_list, cfg->beta1, cfg->beta2, cfg->eps,
               cfg->weight_decay, cfg->momentum);
    run_torch();

    ml_optimizer o;
    assert_int_equal(ml_optim_create(&o, cfg, SEGS, N_SEGS, N_FLOATS, NULL), ML_OK);
    memcpy(p, p0, N_FLOATS * sizeof(float));
    for (int s = 0; s < N_STEPS; s++)
        assert_int_equal(ml_optim_step(&o, p, grads + (size_t)s * N_FLOATS, lrs[s]), ML_OK);
    assert_int_equal(o.t, N_STEPS);

    read_floats(ml_test_path(d, "p_out.bin"), ref, N_FLOATS);
    compare("params", p, ref, N_FLOATS, 1e-3);
    /* the gaps between segments are untouched, bit for bit */
    for (size_t i = 0; i < N_FLOATS; i++) {
        int inside = 0;
        for (int s = 0; s < N_SEGS; s++) inside |= i >= SEGS[s].offset && i < SEGS[s].offset + SEGS[s].numel;
        if (!inside) assert_memory_equal(&p[i], &p0[i], sizeof(float));
    }
    /* the update itself, not just the parameters, agrees (it is small next to p) */
    for (size_t i = 0; i < N_FLOATS; i++) {
        double du = (double)p[i] - p0[i], dr = (double)ref[i] - p0[i];
        assert_true(fabs(du - dr) <= 1e-6 * (fabs(dr) + 1e-3) + 1e-7 * fabs(p0[i]));
    }
    if (o.m) {
        read_floats(ml_test_path(d, "m_out.bin"), ref, N_FLOATS);
        compare(cfg->kind == ML_OPTIM_ADAMW ? "exp_avg" : "momentum_buffer", o.m, ref, N_FLOATS, 1e-30);
    }
    if (o.v) {
        read_floats(ml_test_path(d, "v_out.bin"), ref, N_FLOATS);
        compare("exp_avg_sq", o.v, ref, N_FLOATS, 1e-30);
    }
    ml_optim_free(&o);
    free(p0);
    free(grads);
    free(p);
    free(ref);
}

static void test_adamw_matches_torch(void **state) {
    (void)state;
    ml_optim_config cfg = ml_optim_defaults(ML_OPTIM_ADAMW);
    assert_true(cfg.beta1 == 0.9 && cfg.beta2 == 0.95 && cfg.eps == 1e-8 && cfg.weight_decay == 0.1);
    check_against_torch(&cfg, 1e-2f, 1);
    /* large weight decay makes a wrongly decayed norm segment visible */
    cfg.weight_decay = 5.0;
    cfg.beta2 = 0.999;
    check_against_torch(&cfg, 2e-2f, 2);
}

static void test_sgd_matches_torch(void **state) {
    (void)state;
    ml_optim_config cfg = ml_optim_defaults(ML_OPTIM_SGD);
    assert_true(cfg.momentum == 0 && cfg.weight_decay == 0);
    cfg.weight_decay = 0.5;
    check_against_torch(&cfg, 1e-2f, 3);
    cfg.momentum = 0.9;
    check_against_torch(&cfg, 1e-2f, 4);
}

/* With zero gradients AdamW only decays, and only the decay segments; SGD likewise. */
static void test_weight_decay_only_on_decay_segments(void **state) {
    (void)state;
    const ml_optim_segment segs[] = {{0, 40, 1}, {40, 24, 0}};
    float p[64], p0[64], g[64] = {0};
    for (int i = 0; i < 64; i++) p0[i] = p[i] = 1.0f + 0.25f * (float)i;
    ml_optimizer o;
    ml_optim_config cfg = ml_optim_defaults(ML_OPTIM_ADAMW);
    assert_int_equal(ml_optim_create(&o, &cfg, segs, 2, 64, NULL), ML_OK);
    assert_int_equal(ml_optim_step(&o, p, g, 0.5f), ML_OK);
    const float f = (float)(1.0 - 0.5 * 0.1);
    for (int i = 0; i < 64; i++) {
        float want = i < 40 ? p0[i] * f : p0[i];
        assert_memory_equal(&p[i], &want, sizeof(float));
    }
    ml_optim_free(&o);

    cfg = ml_optim_defaults(ML_OPTIM_SGD);
    cfg.weight_decay = 0.2;
    memcpy(p, p0, sizeof p);
    assert_int_equal(ml_optim_create(&o, &cfg, segs, 2, 64, NULL), ML_OK);
    assert_null(o.m);
    assert_int_equal(ml_optim_step(&o, p, g, 0.5f), ML_OK);
    for (int i = 0; i < 64; i++) {
        float want = i < 40 ? fmaf(p0[i] * 0.2f, -0.5f, p0[i]) : p0[i];
        assert_true(fabsf(p[i] - want) <= 1e-6f * fabsf(want));
        if (i >= 40) assert_memory_equal(&p[i], &p0[i], sizeof(float));
    }
    ml_optim_free(&o);
}

/* A big problem (parallel path on): run `steps` steps from the same start. */
#define BIG 100003
static void run_big(const ml_optim_config *cfg, float *p, float *m_out, int threads, int steps) {
    ml_rng r;
    ml_rng_seed(&r, 7);
    static float g[BIG];
    const ml_optim_segment segs[] = {{0, 70001, 1}, {70016, 29987, 0}};
    for (size_t i = 0; i < BIG; i++) p[i] = (float)ml_rng_normal(&r);
    ml_optimizer o;
    assert_int_equal(ml_optim_create(&o, cfg, segs, 2, BIG, NULL), ML_OK);
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    for (int s = 0; s < steps; s++) {
        for (size_t i = 0; i < BIG; i++) g[i] = (float)ml_rng_normal(&r);
        assert_int_equal(ml_optim_step(&o, p, g, 1e-2f), ML_OK);
    }
    omp_set_num_threads(saved);
    memcpy(m_out, o.m, BIG * sizeof(float));
    ml_optim_free(&o);
}

static void test_thread_count_invariance(void **state) {
    (void)state;
    static float p1[BIG], p2[BIG], m1[BIG], m2[BIG];
    ml_optim_config cfgs[2] = {ml_optim_defaults(ML_OPTIM_ADAMW), ml_optim_defaults(ML_OPTIM_SGD)};
    cfgs[1].momentum = 0.9;
    cfgs[1].weight_decay = 0.1;
    for (int c = 0; c < 2; c++) {
        run_big(&cfgs[c], p1, m1, 1, 3);
        run_big(&cfgs[c], p2, m2, 2, 3);
        assert_memory_equal(p1, p2, sizeof p1);
        assert_memory_equal(m1, m2, sizeof m1);
    }
}

/* The vector path (whole vectors of one segment) and the scalar path (segments of one element) give the same bits for
 * the same values, over 400 AdamW steps: every bias correction until sqrt(1 - beta2^t) rounds to 1 (the vector path
 * divides by it with Markstein's correction instead of the divider), with gradients over 60 binades, zeros, and one
 * of 1e20, whose square overflows: v is +inf from then on while m stays finite, and the weight must stay put. */
static void test_adamw_vector_path_rounds_as_scalar(void **state) {
    (void)state;
    enum { n = 4096, steps = 400 };
    static float pv[n], ps[n], g[n];
    static ml_optim_segment one[1], each[n];
    ml_rng r;
    ml_rng_seed(&r, 21);
    for (int i = 0; i < n; i++) {
        pv[i] = ps[i] = (float)ml_rng_normal(&r);
        each[i] = (ml_optim_segment){(size_t)i, 1, i % 2};
    }
    one[0] = (ml_optim_segment){0, n, 1};
    ml_optim_config cfg = ml_optim_defaults(ML_OPTIM_ADAMW);
    cfg.weight_decay = 0.0; /* the two layouts decay differently otherwise */
    ml_optimizer a, b;
    assert_int_equal(ml_optim_create(&a, &cfg, one, 1, n, NULL), ML_OK);
    assert_int_equal(ml_optim_create(&b, &cfg, each, n, n, NULL), ML_OK);
    for (int t = 0; t < steps; t++) {
        for (int i = 0; i < n; i++) {
            const double scale = ldexp(1.0, (int)ml_rng_below(&r, 60) - 40);
            g[i] = i % 17 == 3 ? 0.0f : (float)(scale * ml_rng_normal(&r));
        }
        if (t == 5) g[100] = 1e20f;
        assert_int_equal(ml_optim_step(&a, pv, g, 1e-3f), ML_OK);
        assert_int_equal(ml_optim_step(&b, ps, g, 1e-3f), ML_OK);
    }
    assert_memory_equal(pv, ps, sizeof pv);
    assert_memory_equal(a.m, b.m, sizeof pv);
    assert_memory_equal(a.v, b.v, sizeof pv);
    assert_true(isinf(a.v[100]) && isfinite(a.m[100]) && isfinite(pv[100]));
    ml_optim_free(&a);
    ml_optim_free(&b);
}

/* Stop after 4 steps, carry (params, state, t) into a fresh optimizer that uses caller-owned
 * state memory, run 6 more: bit-identical to 10 uninterrupted steps. */
static void test_restore_is_bit_exact(void **state) {
    (void)state;
    float *p0 = malloc(N_FLOATS * sizeof(float)), *grads = malloc(N_STEPS * N_FLOATS * sizeof(float));
    float *pa = malloc(N_FLOATS * sizeof(float)), *pb = malloc(N_FLOATS * sizeof(float));
    float lrs[N_STEPS];
    assert_true(p0 && grads && pa && pb);
    fill_problem(p0, grads, lrs, 11, 1e-2f);
    ml_optim_config cfgs[2] = {ml_optim_defaults(ML_OPTIM_ADAMW), ml_optim_defaults(ML_OPTIM_SGD)};
    cfgs[1].momentum = 0.8;
    for (int c = 0; c < 2; c++) {
        ml_optimizer a, b;
        assert_int_equal(ml_optim_create(&a, &cfgs[c], SEGS, N_SEGS, N_FLOATS, NULL), ML_OK);
        memcpy(pa, p0, N_FLOATS * sizeof(float));
        for (int s = 0; s < N_STEPS; s++) assert_int_equal(ml_optim_step(&a, pa, grads + (size_t)s * N_FLOATS, lrs[s]), ML_OK);
        ml_optim_reset(&a);
        assert_int_equal(a.t, 0);
        memcpy(pb, p0, N_FLOATS * sizeof(float));
        for (int s = 0; s < 4; s++) assert_int_equal(ml_optim_step(&a, pb, grads + (size_t)s * N_FLOATS, lrs[s]), ML_OK);

        size_t nst = ml_optim_state_floats(&cfgs[c], N_FLOATS);
        assert_int_equal(nst, (size_t)2 * N_FLOATS / (size_t)(c + 1));
        float *st = malloc(nst * sizeof(float));
        assert_non_null(st);
        assert_int_equal(ml_optim_create(&b, &cfgs[c], SEGS, N_SEGS, N_FLOATS, st), ML_OK);
        assert_int_equal(ml_optim_num_state(&b), 2 - c);
        for (int i = 0; i < ml_optim_num_state(&b); i++) {
            const char *na, *nb;
            float *sa = ml_optim_state(&a, i, &na), *sb = ml_optim_state(&b, i, &nb);
            assert_string_equal(na, nb);
            assert_string_equal(na, c == 0 ? (i == 0 ? "exp_avg" : "exp_avg_sq") : "momentum_buffer");
            memcpy(sb, sa, N_FLOATS * sizeof(float));
        }
        assert_null(ml_optim_state(&b, 2, NULL));
        b.t = a.t;
        for (int s = 4; s < N_STEPS; s++) assert_int_equal(ml_optim_step(&b, pb, grads + (size_t)s * N_FLOATS, lrs[s]), ML_OK);
        assert_memory_equal(pa, pb, N_FLOATS * sizeof(float));
        ml_optim_free(&a);
        ml_optim_free(&b);
        free(st);
    }
    free(p0);
    free(grads);
    free(pa);
    free(pb);
}

static void test_optim_rejects_bad_input(void **state) {
    (void)state;
    ml_optimizer o;
    ml_optim_config cfg = ml_optim_defaults(ML_OPTIM_ADAMW);
    const ml_optim_segment overlap[] = {{0, 10, 1}, {20, 5, 0}, {8, 4, 1}};
    assert_int_equal(ml_optim_create(&o, &cfg, overlap, 3, 100, NULL), ML_ERR_ARG);
    assert_non_null(strstr(ml_last_error(), "overlap"));
    const ml_optim_segment outside[] = {{90, 11, 1}};
    assert_int_equal(ml_optim_create(&o, &cfg, outside, 1, 100, NULL), ML_ERR_ARG);
    assert_non_null(strstr(ml_last_error(), "outside"));
    const ml_optim_segment huge[] = {{5, SIZE_MAX, 1}};
    assert_int_equal(ml_optim_create(&o, &cfg, huge, 1, 100, NULL), ML_ERR_ARG);

    ml_optim_config bad = cfg;
    bad.beta1 = 1.0;
    assert_int_equal(ml_optim_create(&o, &bad, outside, 0, 100, NULL), ML_ERR_ARG);
    assert_non_null(strstr(ml_last_error(), "beta1"));
    bad = cfg;
    bad.weight_decay = NAN;
    assert_int_equal(ml_optim_config_check(&bad), ML_ERR_ARG);
    bad = ml_optim_defaults(ML_OPTIM_SGD);
    bad.momentum = -0.5;
    assert_int_equal(ml_optim_config_check(&bad), ML_ERR_ARG);

    ml_optim_kind k;
    assert_int_equal(ml_optim_kind_parse("sgd", &k), ML_OK);
    assert_int_equal(k, ML_OPTIM_SGD);
    assert_int_equal(ml_optim_kind_parse("adamw", &k), ML_OK);
    assert_int_equal(k, ML_OPTIM_ADAMW);
    assert_int_equal(ml_optim_kind_parse("adam", &k), ML_ERR_ARG);
    assert_non_null(strstr(ml_last_error(), "'adam'"));

    /* a rejected step changes nothing, not even the step counter */
    const ml_optim_segment one[] = {{0, 4, 1}};
    float p[4] = {1, 2, 3, 4}, g[4] = {1, 1, 1, 1};
    assert_int_equal(ml_optim_create(&o, &cfg, one, 1, 4, NULL), ML_OK);
    assert_int_equal(ml_optim_step(&o, p, g, NAN), ML_ERR_ARG);
    assert_int_equal(ml_optim_step(&o, p, g, -1.0f), ML_ERR_ARG);
    assert_int_equal(ml_optim_step(&o, p, NULL, 1.0f), ML_ERR_ARG);
    assert_int_equal(o.t, 0);
    assert_true(p[0] == 1 && p[3] == 4 && o.m[0] == 0);
    ml_optim_free(&o);
}

/* ---- schedules ---- */

static void assert_close(float got, double want) {
    if (!(fabs((double)got - want) <= 1e-6 * fabs(want) + 1e-12)) fail_msg("lr %.9g, expected %.9g", (double)got, want);
}

static void test_schedules(void **state) {
    (void)state;
    const double peak = 1e-3;
    ml_schedule s = ml_schedule_defaults((float)peak, 111);
    assert_int_equal(s.kind, ML_LR_COSINE);
    assert_true(s.min_ratio == 0.1f && s.decay_fraction == 0.2f && s.warmup_steps == 0);
    s.warmup_steps = 10;
    const ml_schedule_kind kinds[] = {ML_LR_CONSTANT, ML_LR_LINEAR, ML_LR_COSINE, ML_LR_WSD};
    for (int k = 0; k < 4; k++) {
        s.kind = kinds[k];
        assert_int_equal(ml_schedule_check(&s), ML_OK);
        /* warmup: peak*(step+1)/warmup, the same for every kind */
        assert_close(ml_lr_at(&s, 0), peak / 10);
        assert_close(ml_lr_at(&s, -5), peak / 10);
        assert_close(ml_lr_at(&s, 4), peak * 5 / 10);
        assert_true(ml_lr_at(&s, 9) == (float)peak);
        /* first step after warmup is at peak */
        assert_true(ml_lr_at(&s, 10) == (float)peak);
    }
    /* total 111, warmup 10: decay from step 10 (p=0) to step 110 (p=1), p = (step-10)/100 */
    s.kind = ML_LR_CONSTANT;
    assert_true(ml_lr_at(&s, 60) == (float)peak && ml_lr_at(&s, 110) == (float)peak && ml_lr_at(&s, 5000) == (float)peak);
    s.kind = ML_LR_LINEAR;
    assert_close(ml_lr_at(&s, 60), peak * 0.55);
    assert_close(ml_lr_at(&s, 35), peak * (1 - 0.9 * 0.25));
    assert_close(ml_lr_at(&s, 110), peak * 0.1);
    assert_close(ml_lr_at(&s, 500), peak * 0.1);
    s.kind = ML_LR_COSINE;
    assert_close(ml_lr_at(&s, 60), peak * 0.55);
    assert_close(ml_lr_at(&s, 35), peak * (0.1 + 0.45 * (1 + cos(M_PI / 4))));
    assert_close(ml_lr_at(&s, 110), peak * 0.1);
    assert_close(ml_lr_at(&s, 111), peak * 0.1);
    s.min_ratio = 0;
    assert_close(ml_lr_at(&s, 85), peak * 0.5 * (1 + cos(M_PI * 0.75)));
    assert_true(ml_lr_at(&s, 110) == 0.0f);
    s.min_ratio = 0.1f;

    /* WSD, total 100, warmup 10, decay over the last 20 steps: peak through step 79, then
     * linear to 0.1*peak at step 99 */
    s = ml_schedule_defaults((float)peak, 100);
    s.kind = ML_LR_WSD;
    s.warmup_steps = 10;
    assert_int_equal(ml_schedule_check(&s), ML_OK);
    assert_close(ml_lr_at(&s, 0), peak / 10);
    assert_true(ml_lr_at(&s, 9) == (float)peak);
    assert_true(ml_lr_at(&s, 10) == (float)peak);
    assert_true(ml_lr_at(&s, 50) == (float)peak);
    assert_true(ml_lr_at(&s, 79) == (float)peak);
    assert_close(ml_lr_at(&s, 80), peak * (1 - 0.9 / 20));
    assert_close(ml_lr_at(&s, 89), peak * (1 - 0.9 * 10 / 20));
    assert_close(ml_lr_at(&s, 99), peak * 0.1);
    assert_close(ml_lr_at(&s, 1000), peak * 0.1);
    /* decay longer than what is left after warmup: decays right after the last warmup step */
    s.decay_fraction = 1.0f;
    assert_true(ml_lr_at(&s, 9) == (float)peak);
    assert_close(ml_lr_at(&s, 10), peak * (1 - 0.9 / 90));
    assert_close(ml_lr_at(&s, 99), peak * 0.1);

    /* no warmup: step 0 is at peak for constant, linear, cosine */
    s = ml_schedule_defaults((float)peak, 50);
    for (int k = 0; k < 3; k++) {
        s.kind = kinds[k];
        assert_true(ml_lr_at(&s, 0) == (float)peak);
    }
    /* single-step run: its only step is the last, at the floor */
    s = ml_schedule_defaults((float)peak, 1);
    s.kind = ML_LR_LINEAR;
    assert_close(ml_lr_at(&s, 0), peak * 0.1);
}

static void test_schedule_names_and_checks(void **state) {
    (void)state;
    const char *names[] = {"constant", "linear", "cosine", "wsd"};
    for (int k = 0; k < 4; k++) {
        ml_schedule_kind kind;
        assert_int_equal(ml_schedule_kind_parse(names[k], &kind), ML_OK);
        assert_int_equal((int)kind, k);
        assert_string_equal(ml_schedule_kind_name(kind), names[k]);
    }
    ml_schedule_kind kind = ML_LR_LINEAR;
    assert_int_equal(ml_schedule_kind_parse("cosin", &kind), ML_ERR_ARG);
    assert_non_null(strstr(ml_last_error(), "'cosin'"));
    assert_int_equal(kind, ML_LR_LINEAR);
    assert_int_equal(ml_schedule_kind_parse("", &kind), ML_ERR_ARG);
    assert_int_equal(ml_schedule_kind_parse("Cosine", &kind), ML_ERR_ARG);

    ml_schedule s = ml_schedule_defaults(1e-3f, 100);
    s.warmup_steps = 101;
    assert_int_equal(ml_schedule_check(&s), ML_ERR_ARG);
    s = ml_schedule_defaults(1e-3f, 0);
    assert_int_equal(ml_schedule_check(&s), ML_ERR_ARG);
    s = ml_schedule_defaults(NAN, 10);
    assert_int_equal(ml_schedule_check(&s), ML_ERR_ARG);
    s = ml_schedule_defaults(1e-3f, 10);
    s.min_ratio = 1.5f;
    assert_int_equal(ml_schedule_check(&s), ML_ERR_ARG);
    s = ml_schedule_defaults(1e-3f, 10);
    s.kind = ML_LR_WSD;
    s.decay_fraction = 0;
    assert_int_equal(ml_schedule_check(&s), ML_ERR_ARG);
}

/* ---- clipping ---- */

static void test_clip_matches_torch(void **state) {
    (void)state;
    const char *d = tmpdir();
    float *g = malloc(N_FLOATS * sizeof(float)), *c = malloc(N_FLOATS * sizeof(float)), *ref = malloc(N_FLOATS * sizeof(float));
    assert_true(g && c && ref);
    ml_rng r;
    ml_rng_seed(&r, 5);
    memset(g, 0, N_FLOATS * sizeof(float));
    for (int s = 0; s < N_SEGS; s++)
        for (size_t i = SEGS[s].offset; i < SEGS[s].offset + SEGS[s].numel; i++) g[i] = (float)(0.1 * ml_rng_normal(&r));
    write_floats(ml_test_path(d, "g.bin"), g, N_FLOATS);
    char segs[512];
    segs_json(segs, sizeof segs);
    const double max_norms[2] = {1.0, 1000.0}; /* the norm is about 4.4: clip, then no clip */
    write_text(ml_test_path(d, "spec.json"), "{\"mode\": \"clip\", \"n\": %d, \"segs\": %s, \"max_norms\": [%.17g, %.17g]}\n",
               N_FLOATS, segs, max_norms[0], max_norms[1]);
    run_torch();
    double tn[2];
    FILE *f = fopen(ml_test_path(d, "norms.txt"), "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%lf %lf", &tn[0], &tn[1]), 2);
    fclose(f);
    for (int k = 0; k < 2; k++) {
        memcpy(c, g, N_FLOATS * sizeof(float));
        double norm = ml_clip_grad_norm(c, N_FLOATS, max_norms[k]);
        fprintf(stderr, "max_norm %g: norm %.9g, torch %.9g\n", max_norms[k], norm, tn[k]);
        assert_true(fabs(norm - tn[k]) <= 1e-6 * tn[k]);
        read_floats(ml_test_path(d, k == 0 ? "g_out0.bin" : "g_out1.bin"), ref, N_FLOATS);
        compare("clipped grads", c, ref, N_FLOATS, 1e-30);
        if (k == 1) assert_memory_equal(c, g, N_FLOATS * sizeof(float));
    }
    /* the clipped gradient has norm max_norm (up to the 1e-6 in the denominator) */
    memcpy(c, g, N_FLOATS * sizeof(float));
    ml_clip_grad_norm(c, N_FLOATS, 1.0);
    assert_true(fabs(ml_grad_norm(c, N_FLOATS) - 1.0) < 1e-6);
    /* max_norm <= 0: the norm only */
    memcpy(c, g, N_FLOATS * sizeof(float));
    assert_true(ml_clip_grad_norm(c, N_FLOATS, 0.0) == ml_grad_norm(g, N_FLOATS));
    assert_memory_equal(c, g, N_FLOATS * sizeof(float));
    assert_true(ml_clip_scale(3.0, 1.0) == 1.0 / (3.0 + 1e-6));
    assert_true(ml_clip_scale(0.5, 1.0) == 1.0);
    free(g);
    free(c);
    free(ref);
}

static void test_grad_norm_deterministic(void **state) {
    (void)state;
    const size_t n = (1u << 20) + 37;
    float *g = malloc(n * sizeof(float));
    assert_non_null(g);
    ml_rng r;
    ml_rng_seed(&r, 9);
    long double want = 0;
    for (size_t i = 0; i < n; i++) {
        g[i] = (float)ml_rng_normal(&r) * (i % 1000 == 0 ? 100.0f : 1.0f);
        want += (long double)g[i] * g[i];
    }
    int saved = omp_get_max_threads();
    double norms[3];
    const int threads[3] = {1, 2, 3};
    for (int k = 0; k < 3; k++) {
        omp_set_num_threads(threads[k]);
        norms[k] = ml_grad_norm(g, n);
    }
    omp_set_num_threads(saved);
    assert_memory_equal(&norms[0], &norms[1], sizeof(double));
    assert_memory_equal(&norms[0], &norms[2], sizeof(double));
    assert_true(fabs(norms[0] - (double)sqrtl(want)) <= 1e-12 * norms[0]);
    /* alignment does not matter either: the same data at another address */
    float *h = malloc((n + 1) * sizeof(float));
    assert_non_null(h);
    memcpy(h + 1, g, n * sizeof(float));
    double shifted = ml_grad_norm(h + 1, n);
    assert_memory_equal(&shifted, &norms[0], sizeof(double));
    /* empty and tiny arrays */
    assert_true(ml_grad_norm(g, 0) == 0.0);
    float three[3] = {3, 0, 4};
    assert_true(ml_grad_norm(three, 3) == 5.0);
    free(g);
    free(h);
}

static void test_non_finite_detection(void **state) {
    (void)state;
    const size_t n = 200003;
    float *g = malloc(n * sizeof(float)), *copy = malloc(n * sizeof(float));
    assert_true(g && copy);
    for (size_t i = 0; i < n; i++) g[i] = (float)i * 1e-3f - 50.0f;
    g[7] = 3.4e38f; /* large but finite; its square is fine in double */
    assert_true(ml_all_finite(g, n));
    assert_true(isfinite(ml_grad_norm(g, n)));
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    const size_t where[3] = {0, 123457, n - 1};
    for (int b = 0; b < 3; b++) {
        for (int w = 0; w < 3; w++) {
            float keep = g[where[w]];
            g[where[w]] = bad[b];
            assert_false(ml_all_finite(g, n));
            assert_false(ml_all_finite(g + where[w], 1));
            memcpy(copy, g, n * sizeof(float));
            double norm = ml_clip_grad_norm(g, n, 1.0);
            assert_false(isfinite(norm));
            /* a non-finite norm leaves the gradient alone */
            assert_memory_equal(copy, g, n * sizeof(float));
            g[where[w]] = keep;
        }
    }
    assert_true(ml_all_finite(g, n));
    assert_true(ml_all_finite(g, 0));
    free(g);
    free(copy);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_matches_torch),
        cmocka_unit_test(test_sgd_matches_torch),
        cmocka_unit_test(test_weight_decay_only_on_decay_segments),
        cmocka_unit_test(test_thread_count_invariance),
        cmocka_unit_test(test_adamw_vector_path_rounds_as_scalar),
        cmocka_unit_test(test_restore_is_bit_exact),
        cmocka_unit_test(test_optim_rejects_bad_input),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_schedule_names_and_checks),
        cmocka_unit_test(test_clip_matches_torch),
        cmocka_unit_test(test_grad_norm_deterministic),
        cmocka_unit_test(test_non_finite_detection),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
