/* The CPU backend's elementwise kernels (kernels/cpu/elementwise_kernels.c, one table per ISA
 * level) give the same bits at every level: every entry, on random inputs of odd sizes (one
 * element, a few, around the 16384-element threshold where the loops go parallel, several 4096-
 * element blocks of sum_squares, more than 64 of them), starting off the vector alignment, with
 * guard elements either side of every output, at 1 and 2 threads. Each level the CPU has is run
 * against the baseline table and must match it byte for byte, guards included (and the guards
 * must be untouched). Where this test is compiled for the x86-64 baseline, the loops as they were
 * in backend_cpu.c before the split (tests/ew_legacy.h) are a further candidate: the baseline must
 * also equal them, so the build gives the same bits as before it dispatched.
 *
 * It also checks that the backend's table is the one of the level PT_CPU_ISA asked for (or the
 * detected one), and that each table was really compiled for its level; tests/test_cpu_isa.sh
 * runs it under every level. */
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "../kernels/cpu/elementwise_kernels.h"
#include "ew_legacy.h"
#include "paratrain/backend.h"
#include "paratrain/cpu.h"
#include "testutil.h"

/* The pre-split loops are a reference only where this test is compiled as backend_cpu.c was by
 * default: for the x86-64 baseline, optimized, without sanitizers (sum_squares' block sum had the
 * order the compiler's `omp simd` vectorization gave it, which the instrumentation changes). */
#if defined(__x86_64__) && !defined(__AVX__) && !defined(__FMA__) && defined(__OPTIMIZE__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define HAVE_LEGACY 1
static const pt_cpu_ew_kernels legacy = {
    .isa = "legacy (backend_cpu.c before the split)",
    .bias_act_forward = legacy_bias_act_forward,
    .act_backward = legacy_act_backward,
    .bias_backward = legacy_bias_backward,
    .sum_squares = legacy_sum_squares,
    .scale = legacy_scale,
    .all_finite = legacy_all_finite,
    .sgd_update = legacy_sgd_update,
    .adagrad_update = legacy_adagrad_update,
    .adam_update = legacy_adam_update,
};
#else
#define HAVE_LEGACY 0
#endif

enum { G = 5 }; /* guard elements either side; odd, so the data starts off 16/32/64-byte alignment */
static const uint32_t GUARD = 0x7fc0beefu; /* a NaN pattern no kernel writes */

/* a recorded result: every output array with its guards, and the scalar results */
typedef struct {
    unsigned char *p;
    size_t n, cap;
} blob;
static void put(blob *b, const void *x, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (n) memcpy(b->p + b->n, x, n);
    b->n += n;
}

static uint64_t rng_state;
static uint32_t next_u32(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 32);
}
/* uniform in [lo, hi), with exact zeros, negative zeros and tiny values mixed in */
static float rnd(float lo, float hi)
{
    const uint32_t u = next_u32();
    switch (u % 97) {
    case 0: return 0.0f;
    case 1: return lo < 0.0f ? -0.0f : 0.0f;
    case 2: return lo < 0.0f ? -1e-30f : 1e-30f;
    default: return lo + (hi - lo) * (float)((next_u32() >> 8) * (1.0 / 16777216.0));
    }
}

/* an array of n floats between guards; returns the data pointer */
static float *garr(int64_t n, float lo, float hi)
{
    float *a = malloc(sizeof(float) * (size_t)(n + 2 * G));
    if (!a) abort();
    for (int i = 0; i < G; i++) memcpy(a + i, &GUARD, 4), memcpy(a + G + n + i, &GUARD, 4);
    for (int64_t i = 0; i < n; i++) a[G + i] = rnd(lo, hi);
    return a + G;
}
static void gput(blob *b, const float *x, int64_t n, const char *what)
{
    const float *a = x - G;
    for (int i = 0; i < G; i++)
        CHECK(!memcmp(a + i, &GUARD, 4) && !memcmp(a + G + n + i, &GUARD, 4),
              "%s (n=%lld): a guard element was written", what, (long long)n);
    put(b, a, sizeof(float) * (size_t)(n + 2 * G));
}
static void gfree(float *x) { free(x - G); }

static const int64_t sizes[] = {1, 3, 4, 5, 17, 1023, 4095, 4096, 4097, 16383, 16385, 70001,
                                300007};
enum { NSIZES = sizeof sizes / sizeof sizes[0] };

/* set by run_case when the case runs GELU: issue 20 replaced its libm erff/expf by the vectorized
 * erf/exp, so the pre-split loops are no reference for it (gelu_accuracy() checks it instead) */
static int case_changed;

/* Case c of op `op` run through table k: fills blob b with the outputs. Inputs depend only on
 * (op, c), not on k. Returns 0 when (op, c) does not exist. */
static int run_case(const pt_cpu_ew_kernels *k, int op, int c, blob *b, char *what, size_t wn)
{
    rng_state = 0x9e3779b97f4a7c15ull * (uint64_t)(op * 1000 + c + 1);
    case_changed = 0;
    switch (op) {
    case 0: { /* bias_act_forward: shapes x 4 activations x pre or not */
        static const int shapes[][2] = {{1, 1}, {3, 5}, {7, 33}, {37, 1023}, {129, 131}, {64, 1024}};
        const int ns = sizeof shapes / sizeof shapes[0];
        if (c >= ns * 8) return 0;
        const int rows = shapes[c / 8][0], cols = shapes[c / 8][1], act = (c % 8) / 2,
                  with_pre = c % 2;
        const int64_t n = (int64_t)rows * cols;
        float *y = garr(n, -3.0f, 3.0f), *bias = garr(cols, -1.0f, 1.0f);
        float *pre = with_pre ? garr(n, -1.0f, 1.0f) : NULL;
        snprintf(what, wn, "bias_act_forward %dx%d act=%d pre=%d", rows, cols, act, with_pre);
        case_changed = act == PT_ACT_GELU;
        k->bias_act_forward(y, pre, bias, rows, cols, (pt_act)act);
        gput(b, y, n, what), gput(b, bias, cols, what);
        if (pre) gput(b, pre, n, what), gfree(pre);
        gfree(y), gfree(bias);
        return 1;
    }
    case 1: { /* act_backward: sizes x 4 activations x in place or not */
        if (c >= NSIZES * 8) return 0;
        const int64_t n = sizes[c / 8];
        const int act = (c % 8) / 2, in_place = c % 2;
        float *dy = garr(n, -2.0f, 2.0f), *pre = garr(n, -4.0f, 4.0f);
        float *dx = in_place ? dy : garr(n, -1.0f, 1.0f);
        snprintf(what, wn, "act_backward n=%lld act=%d in_place=%d", (long long)n, act, in_place);
        case_changed = act == PT_ACT_GELU;
        k->act_backward(dx, dy, pre, n, (pt_act)act);
        gput(b, dx, n, what), gput(b, pre, n, what);
        if (!in_place) gput(b, dy, n, what), gfree(dx);
        gfree(dy), gfree(pre);
        return 1;
    }
    case 2: { /* bias_backward */
        static const int shapes[][2] = {{1, 1}, {5, 3}, {2, 65}, {130, 203}, {128, 1024}, {3, 6001}};
        if (c >= (int)(sizeof shapes / sizeof shapes[0])) return 0;
        const int rows = shapes[c][0], cols = shapes[c][1];
        float *dy = garr((int64_t)rows * cols, -1.0f, 1.0f), *db = garr(cols, -9.0f, 9.0f);
        snprintf(what, wn, "bias_backward %dx%d", rows, cols);
        k->bias_backward(db, dy, rows, cols);
        gput(b, db, cols, what), gput(b, dy, (int64_t)rows * cols, what);
        gfree(dy), gfree(db);
        return 1;
    }
    case 3: { /* sum_squares, also n = 0; 8 inputs of each size (a change of the order of the
                * additions shows in some of them only) */
        if (c / 8 > NSIZES) return 0;
        const int64_t n = c / 8 == NSIZES ? 0 : sizes[c / 8];
        float *x = garr(n, -1.0f, 1.0f);
        for (int64_t i = 0; i < n; i++) /* magnitudes 2^-20 .. 2^20: every addition rounds */
            x[i] = ldexpf(x[i], (int)(next_u32() % 41) - 20);
        snprintf(what, wn, "sum_squares n=%lld", (long long)n);
        const double s = k->sum_squares(x, n);
        put(b, &s, sizeof s), gput(b, x, n, what);
        gfree(x);
        return 1;
    }
    case 4: { /* scale */
        if (c >= NSIZES) return 0;
        const int64_t n = sizes[c];
        float *x = garr(n, -5.0f, 5.0f);
        snprintf(what, wn, "scale n=%lld", (long long)n);
        k->scale(x, n, 0.37f);
        gput(b, x, n, what);
        gfree(x);
        return 1;
    }
    case 5: { /* all_finite: finite, or one NaN / +Inf / -Inf first, in the middle or last */
        if (c >= NSIZES * 10) return 0;
        const int64_t n = sizes[c / 10];
        const int v = c % 10;
        float *x = garr(n, -5.0f, 5.0f);
        if (v > 0) {
            const float bad[] = {NAN, INFINITY, -INFINITY};
            const int64_t at[] = {0, n / 2, n - 1};
            x[at[(v - 1) / 3]] = bad[(v - 1) % 3];
        }
        snprintf(what, wn, "all_finite n=%lld variant=%d", (long long)n, v);
        const unsigned char r = k->all_finite(x, n);
        CHECK(r == (v == 0), "%s: %s returned %d", what, k->isa, r);
        put(b, &r, 1), gput(b, x, n, what);
        gfree(x);
        return 1;
    }
    case 6: { /* sgd_update: plain, momentum, nesterov; with and without weight decay */
        if (c >= NSIZES * 6) return 0;
        const int64_t n = sizes[c / 6];
        const int v = c % 6;
        pt_update_params p = {.lr = 0.05f, .momentum = v % 3 ? 0.9f : 0.0f,
                              .weight_decay = v >= 3 ? 1e-4f : 0.0f, .nesterov = v % 3 == 2};
        float *w = garr(n, -1.0f, 1.0f), *g = garr(n, -0.1f, 0.1f);
        float *buf = v % 3 ? garr(n, -0.1f, 0.1f) : NULL;
        snprintf(what, wn, "sgd_update n=%lld variant=%d", (long long)n, v);
        k->sgd_update(w, g, buf, n, &p);
        gput(b, w, n, what), gput(b, g, n, what);
        if (buf) gput(b, buf, n, what), gfree(buf);
        gfree(w), gfree(g);
        return 1;
    }
    case 7: { /* adagrad_update */
        if (c >= NSIZES * 2) return 0;
        const int64_t n = sizes[c / 2];
        pt_update_params p = {.lr = 0.01f, .weight_decay = c % 2 ? 0.01f : 0.0f, .eps = 1e-10f};
        float *w = garr(n, -1.0f, 1.0f), *g = garr(n, -0.1f, 0.1f), *ss = garr(n, 0.0f, 0.5f);
        snprintf(what, wn, "adagrad_update n=%lld wd=%g", (long long)n, p.weight_decay);
        k->adagrad_update(w, g, ss, n, &p);
        gput(b, w, n, what), gput(b, g, n, what), gput(b, ss, n, what);
        gfree(w), gfree(g), gfree(ss);
        return 1;
    }
    case 8: { /* adam_update: Adam and AdamW, t = 1 and 7, weight decay or not */
        if (c >= NSIZES * 8) return 0;
        const int64_t n = sizes[c / 8];
        const int v = c % 8;
        pt_update_params p = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                              .weight_decay = v & 2 ? 0.01f : 0.0f, .decoupled_wd = v & 1,
                              .t = v & 4 ? 7 : 1};
        float *w = garr(n, -1.0f, 1.0f), *g = garr(n, -0.1f, 0.1f), *m = garr(n, -0.01f, 0.01f),
              *vv = garr(n, 0.0f, 1e-4f);
        snprintf(what, wn, "adam_update n=%lld variant=%d", (long long)n, v);
        k->adam_update(w, g, m, vv, n, &p);
        gput(b, w, n, what), gput(b, g, n, what), gput(b, m, n, what), gput(b, vv, n, what);
        gfree(w), gfree(g), gfree(m), gfree(vv);
        return 1;
    }
    case 9:    /* attention_forward and backward (issue 20's tiled kernels): T around the 32-row */
    case 10: { /* blocks, several heads, dh a multiple of 8 or not, 1 and 3 samples, beta 0/1 */
        static const int shapes[][4] = {{1, 16, 2, 1}, {31, 24, 3, 1}, {33, 64, 1, 3},
                                        {70, 20, 4, 1}, {129, 128, 2, 1}}; /* T, D, H, rows */
        const int ns = sizeof shapes / sizeof shapes[0];
        if (c >= ns * (op == 9 ? 1 : 2)) return 0;
        const int *sh = shapes[op == 9 ? c : c / 2], beta = op == 10 && c % 2;
        const pt_attention_desc d = {.T = sh[0], .D = sh[1], .H = sh[2]};
        const int rows = sh[3];
        const int64_t nq = (int64_t)rows * d.T * 3 * d.D, ny = (int64_t)rows * d.T * d.D,
                      nl = (int64_t)rows * d.H * d.T;
        float *qkv = garr(nq, -2.0f, 2.0f), *y = garr(ny, -1.0f, 1.0f), *l = garr(nl, 0.0f, 1.0f);
        case_changed = 1; /* no pre-split loop to compare with */
        if (op == 9) {
            snprintf(what, wn, "attention_forward T%d D%d H%d n%d", d.T, d.D, d.H, rows);
            k->attention_forward(&d, rows, qkv, y, l);
            gput(b, y, ny, what), gput(b, l, nl, what), gput(b, qkv, nq, what);
        } else {
            /* a consistent forward first (the baseline's, so every table sees the same y, lse) */
            pt_cpu_ew_kernels_for(PT_ISA_BASELINE)->attention_forward(&d, rows, qkv, y, l);
            float *dy = garr(ny, -1.0f, 1.0f), *dq = garr(nq, -1.0f, 1.0f);
            snprintf(what, wn, "attention_backward T%d D%d H%d n%d beta=%d", d.T, d.D, d.H, rows,
                     beta);
            k->attention_backward(&d, rows, qkv, y, dy, l, (float)beta, dq);
            gput(b, dq, nq, what), gput(b, dy, ny, what);
            gfree(dy), gfree(dq);
        }
        gfree(qkv), gfree(y), gfree(l);
        return 1;
    }
    default: return 0;
    }
}

/* GELU and its gradient against double precision (issue 20's vectorized erf and exp), over a
 * dense sweep of [-12, 12] (2^21 + 1 points) through bias_act_forward and act_backward, for every
 * table the CPU can run. Error in ulps of the double result rounded to float, for GELU split where
 * the result is small: x >= -1 (the max was 4.1 ulp when written; erff's float formula 2.5), and
 * -5.5 <= x < -1, where 1 + erf(x / sqrt 2) is small and the rounding of x / sqrt 2 alone costs
 * up to 2 (x^2 / 2) 2^-24 relative (max 45 ulp; the erff formula, which cancels there, reached
 * 8e6 ulp). Below -5.5 GELU is under 1.1e-7 in size and the kernel may return it or 0 (as erff's
 * formula does). The gradient's error is in ulps of |cdf| + |x pdf| (the sum of its two terms,
 * which cancel near x = -0.75), for x >= -5.5: max 10.5 when written; below, the same absolute
 * bound as GELU's. A bug in a coefficient, the ranges or the
 * exp shows as an error of thousands of ulp. */
static double ulp_of(double r)
{
    float f = fabsf((float)r);
    if (f < 1.17549435e-38f) f = 1.17549435e-38f;
    return (double)(nextafterf(f, INFINITY) - f);
}
static void gelu_accuracy(const pt_cpu_ew_kernels *k)
{
    const int64_t n = ((int64_t)1 << 21) + 1;
    float *x = malloc(4 * (size_t)n), *y = malloc(4 * (size_t)n), *z = calloc((size_t)n, 4),
          *one = malloc(4 * (size_t)n), *g = malloc(4 * (size_t)n);
    if (!x || !y || !z || !one || !g) abort();
    for (int64_t i = 0; i < n; i++)
        x[i] = y[i] = (float)(-12.0 + 24.0 * (double)i / (double)(n - 1)), one[i] = 1.0f;
    k->bias_act_forward(y, NULL, z, 1, (int)n, PT_ACT_GELU);
    k->act_backward(g, one, x, n, PT_ACT_GELU);
    double e_hi = 0, e_mid = 0, e_lo = 0, e_g = 0, at_hi = 0, at_mid = 0, at_g = 0;
    for (int64_t i = 0; i < n; i++) {
        const double v = x[i], cdf = 0.5 * (1.0 + erf(v / sqrt(2.0)));
        const double pdf = exp(-0.5 * v * v) / sqrt(2.0 * M_PI), ref = v * cdf;
        const double e = fabs(y[i] - ref) / ulp_of(ref);
        if (v >= -1.0 && e > e_hi) e_hi = e, at_hi = v;
        if (v < -1.0 && v >= -5.5 && e > e_mid) e_mid = e, at_mid = v;
        if (v < -5.5 && fabs(y[i] - ref) > e_lo) e_lo = fabs(y[i] - ref);
        const double eg = fabs(g[i] - (cdf + v * pdf)) / ulp_of(fabs(cdf) + fabs(v * pdf));
        if (v >= -5.5 && eg > e_g) e_g = eg, at_g = v;
        if (v < -5.5 && fabs(g[i] - (cdf + v * pdf)) > e_lo) e_lo = fabs(g[i] - (cdf + v * pdf));
    }
    printf("%s GELU vs double: %.2f ulp max for x >= -1 (at %g), %.2f for -5.5 <= x < -1 (at %g), "
           "abs %.2g below -5.5 (GELU or gradient); gradient %.2f ulp of its terms (at %g)\n",
           k->isa, e_hi, at_hi, e_mid, at_mid, e_lo, e_g, at_g);
    CHECK(e_hi <= 6.0, "%s: GELU error %.2f ulp at x = %g (x >= -1; limit 6)", k->isa, e_hi, at_hi);
    CHECK(e_mid <= 64.0, "%s: GELU error %.2f ulp at x = %g (-5.5 <= x < -1; limit 64)", k->isa,
          e_mid, at_mid);
    CHECK(e_lo <= 1.2e-7, "%s: GELU or gradient error %.2g below x = -5.5 (limit 1.2e-7)", k->isa, e_lo);
    CHECK(e_g <= 16.0, "%s: GELU gradient error %.2f ulp at x = %g (limit 16)", k->isa, e_g, at_g);
    free(x), free(y), free(z), free(one), free(g);
}

int main(void)
{
    static const char *const names[] = {"baseline", "avx2", "avx512"};
    const pt_cpu_isa_t det = pt_cpu_isa_detected();

    /* the dispatch: the backend's table is the level asked for (PT_CPU_ISA) or the detected one */
    const char *env = getenv("PT_CPU_ISA");
    int want = (int)det;
    if (env && *env && pt_cpu_isa_parse(env) >= 0 && pt_cpu_isa_parse(env) <= (int)det)
        want = pt_cpu_isa_parse(env);
    (void)pt_backend_cpu();
    const pt_cpu_ew_kernels *chosen = pt_cpu_ew_kernels_get();
    printf("elementwise kernels: %s (expected %s; PT_CPU_ISA=%s)\n", chosen->isa, names[want],
           env ? env : "");
    CHECK(strcmp(chosen->isa, names[want]) == 0, "dispatch picked the %s kernels, expected %s",
          chosen->isa, names[want]);

    /* the candidates: every level this CPU has, and the pre-split loops where comparable */
    const pt_cpu_ew_kernels *cand[4];
    int nc = 0;
    const pt_cpu_ew_kernels *base = pt_cpu_ew_kernels_for(PT_ISA_BASELINE);
    CHECK(base && strcmp(base->isa, "baseline") == 0, "no baseline table");
    if (!base) return test_exit_code("t_ew_isa");
    for (int l = 1; l <= 2; l++) {
        const pt_cpu_ew_kernels *k = pt_cpu_ew_kernels_for((pt_cpu_isa_t)l);
        if (!k) { printf("not run: %s (not built)\n", names[l]); continue; }
        CHECK(strcmp(k->isa, names[l]) == 0, "the %s table was compiled for %s", names[l], k->isa);
        if (l > (int)det) { printf("not run: %s (this CPU lacks it)\n", names[l]); continue; }
        cand[nc++] = k;
    }
#if HAVE_LEGACY
    cand[nc++] = &legacy;
#else
    printf("not compared with the pre-split loops (this test is not compiled for the x86-64 "
           "baseline, optimized, without sanitizers)\n");
#endif

    static const char *const ops[] = {"bias_act_forward", "act_backward", "bias_backward",
                                      "sum_squares", "scale", "all_finite", "sgd_update",
                                      "adagrad_update", "adam_update", "attention_forward",
                                      "attention_backward"};
    const int nops = sizeof ops / sizeof ops[0];
    long cases = 0;
    blob ref = {0}, got = {0};
    char what[160], what2[160];
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        for (int op = 0; op < nops; op++) {
            int differ[4] = {0};
            for (int c = 0;; c++) {
                ref.n = 0;
                if (!run_case(base, op, c, &ref, what, sizeof what)) break;
                cases++;
                const int changed = case_changed;
                for (int i = 0; i < nc; i++) {
                    if (changed && !strncmp(cand[i]->isa, "legacy", 6)) continue;
                    got.n = 0;
                    run_case(cand[i], op, c, &got, what2, sizeof what2);
                    const int same = got.n == ref.n && !memcmp(got.p, ref.p, ref.n);
                    if (!same && differ[i]++ < 3) /* the first few of each op and candidate */
                        CHECK(0, "%s, %d threads: %s differs from baseline", what, threads,
                              cand[i]->isa);
                    test_checks++;
                }
            }
            for (int i = 0; i < nc; i++)
                if (differ[i]) {
                    test_failures += differ[i] > 3 ? differ[i] - 3 : 0;
                    fprintf(stderr, "FAIL %s, %d threads: %s differs from baseline in %d cases\n",
                            ops[op], threads, cand[i]->isa, differ[i]);
                }
        }
    }
    omp_set_num_threads(2);
    gelu_accuracy(base);
    for (int i = 0; i < nc; i++)
        if (strncmp(cand[i]->isa, "legacy", 6)) gelu_accuracy(cand[i]);
    printf("compared with baseline, byte for byte:");
    for (int i = 0; i < nc; i++) printf(" %s;", cand[i]->isa);
    printf(" %ld cases x 2 thread counts, every entry\n", cases / 2);
    free(ref.p), free(got.p);
    return test_exit_code("t_ew_isa");
}
