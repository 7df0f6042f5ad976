/* Cross-backend op test, as ggml's test-backend-ops: every entry of include/paratrain/backend.h on
 * every backend present (the CPU backend always; CUDA when pt_backend_cuda() gives one, then also
 * against the CPU backend's results), over small shapes chosen for tails and edge cases.
 *
 * For each (backend, entry, shape), inputs from a fixed seed, then:
 *  (a) any NaN or Inf in an output fails (outputs start as a NaN bit pattern, so an element an
 *      entry should write but does not is caught here too);
 *  (b) NMSE = sum (ref - got)^2 / sum ref^2 <= 1e-7 against a double-precision reference written
 *      here from the contract's definitions (plain loops; no library kernel is called), exact
 *      equality for integers (argmax, targets, counts) and dropout masks;
 *  (c) every buffer sits between two 256-byte guards of a fixed pattern in backend memory, which
 *      must be byte-identical after the call; const inputs must be unchanged too;
 *  (d) every backward entry against central differences: the backend's backward against its own
 *      forward in float (step FD_H_F, tolerance FD_TOL_F * max |grad| + FD_ATOL_F), and the double
 *      reference's backward against its own forward (step 1e-6, tolerance 1e-6 * max |grad|), on
 *      a few sampled elements (the largest gradient among them) of a loss L = sum w * y.
 * One line per (backend, entry, shape); exit 1 on any failure. A NULL entry fails as "not
 * implemented" unless backend.h marks it OPTIONAL.
 *
 * Semantics the contract leaves open follow the existing code (src/nn/ops_*.c before issue 14):
 * maxpool's argmax is the flat index inside the sample's H x H x C input; layer norm's stat is
 * (mean, rstd) interleaved per row; attention's lse is indexed ((sample * H + head) * T + query);
 * ties (max pooling, max over time, argmax of the losses) go to the first maximum; GELU is the
 * erf form; dropout keeps element i when word i % 4 of pt_rng_block(seed, stream, i / 4) is
 * >= p * 2^32 (the reference calls pt_rng_block, the RNG that t_rng checks against Philox's known
 * answers: it is the definition of the mask, not a kernel). */
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/backend.h"
#include "paratrain/error.h"
#include "paratrain/rng.h"

#define NMSE_TOL 1e-7
/* Float central differences: inputs are O(1), so a step of 1e-2 keeps the rounding of the
 * forward (about 1e-7 relative per output, summed over at most a few hundred outputs, divided by
 * 2h) near 1e-4 of the gradient's scale, and the truncation error (h^2 f''') below that. Inputs
 * of the piecewise ops (ReLU, max) are kept at least 0.05 away from kinks and ties, so a step
 * never crosses one. */
#define FD_H_F 1e-2
#define FD_TOL_F 1e-2
#define FD_ATOL_F 1e-4
#define FD_H_D 1e-6
#define FD_TOL_D 1e-6
#define FD_SAMPLES 6

typedef double real;

static const pt_backend *be;     /* the backend under test */
static const pt_backend *cpu_be; /* a second backend is compared against this one as well */
static int n_fail, n_pass;

/* ------------------------------------------------------------------ host memory per case */

static void **harena;
static int nharena, capharena;
static void *hmem(size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) abort();
    if (nharena == capharena) {
        capharena = capharena ? 2 * capharena : 256;
        harena = realloc(harena, sizeof(void *) * (size_t)capharena);
        if (!harena) abort();
    }
    harena[nharena++] = p;
    return p;
}
#define HF(n) ((float *)hmem(sizeof(float) * (size_t)(n)))
#define HD(n) ((double *)hmem(sizeof(double) * (size_t)(n)))
#define HI(n) ((int32_t *)hmem(sizeof(int32_t) * (size_t)(n)))

/* ------------------------------------------------------------------ the fixed-seed inputs */

static uint64_t rng_state;
static void seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ull + 1; }
static uint64_t next_u64(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float urand(float lo, float hi)
{
    return lo + (hi - lo) * (float)((next_u64() >> 40) * (1.0 / 16777216.0));
}
static int irand(int n) { return (int)(next_u64() % (uint64_t)n); }
static float *rand_f(int64_t n, float lo, float hi)
{
    float *x = HF(n);
    for (int64_t i = 0; i < n; i++) x[i] = urand(lo, hi);
    return x;
}
/* Distinct values at least 0.05 apart, shuffled: max ops have no ties and a step of FD_H_F
 * never changes a winner. */
static float *distinct_f(int64_t n, float offset)
{
    float *x = HF(n);
    for (int64_t i = 0; i < n; i++) x[i] = offset + 0.05f * (float)(i - n / 2);
    for (int64_t i = n - 1; i > 0; i--) {
        const int64_t j = (int64_t)(next_u64() % (uint64_t)(i + 1));
        const float t = x[i];
        x[i] = x[j], x[j] = t;
    }
    return x;
}
/* Moves x away from the kink at 0 by at least 0.05. */
static void off_kink(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (fabsf(x[i]) < 0.05f) x[i] = x[i] < 0.0f ? x[i] - 0.05f : x[i] + 0.05f;
}
static real *to_real(const float *x, int64_t n)
{
    real *d = HD(n);
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

/* ------------------------------------------------------------------ one result line */

static struct {
    const char *entry;
    char shape[160];
    double nmse, maxabs, fd_f, fd_d;
    int fail, has_fd;
    char why[2048];
} cs;

static void failf(const char *fmt, ...)
{
    cs.fail = 1;
    size_t len = strlen(cs.why);
    if (len + 8 >= sizeof cs.why) return;
    if (len) strcpy(cs.why + len, "; "), len += 2;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cs.why + len, sizeof cs.why - len, fmt, ap);
    va_end(ap);
}

static void begin(const char *entry, const char *fmt, ...)
{
    memset(&cs, 0, sizeof cs);
    cs.entry = entry;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cs.shape, sizeof cs.shape, fmt, ap);
    va_end(ap);
}

static void check_guards(void);
static void finish(void)
{
    if (be->synchronize) {
        const pt_status s = be->synchronize();
        if (s != PT_OK) failf("synchronize: %s", pt_error_message());
    }
    check_guards();
    char fd[64] = "";
    if (cs.has_fd) snprintf(fd, sizeof fd, " fd %.1e/%.1e", cs.fd_f, cs.fd_d);
    printf("%-5s %-32s %-44s nmse %.2e maxabs %.2e%s %s%s%s\n", be->name, cs.entry, cs.shape,
           cs.nmse, cs.maxabs, fd, cs.fail ? "FAIL" : "PASS", cs.fail ? ": " : "", cs.why);
    fflush(stdout);
    if (cs.fail) n_fail++;
    else n_pass++;
}

/* An entry pointer that is NULL: the one line says so (and fails unless OPTIONAL). */
static int missing(const void *fn, const char *entry, int optional)
{
    if (fn) return 0;
    begin(entry, "-");
    if (!optional) failf("not implemented");
    else snprintf(cs.why, sizeof cs.why, "OPTIONAL, NULL");
    printf("%-5s %-32s %-44s %s: %s\n", be->name, entry, "(all shapes)",
           optional ? "PASS" : "FAIL", optional ? "OPTIONAL entry is NULL" : "not implemented");
    if (optional) n_pass++;
    else n_fail++;
    return 1;
}
#define MISSING(e) missing((const void *)be->e, #e, 0)

static void ok(pt_status s, const char *call)
{
    if (s != PT_OK) failf("%s returned %d: %s", call, (int)s, pt_error_message());
}

/* ------------------------------------------------------------------ guarded backend buffers */

#define GUARD_BYTES 256 /* 64 floats */
static const uint32_t GUARD_WORD = 0x7FC0DEADu; /* a quiet NaN: reading it poisons a result */

typedef struct {
    char *base; /* the allocation: guard, user region, guard */
    size_t bytes;
    const char *name;
    void *snap; /* host copy the region must still equal (const inputs), or NULL */
} gbuf;
static gbuf gbufs[128];
static int ngbufs;

static void pattern(void *dst, size_t off, size_t bytes)
{
    unsigned char *d = dst;
    const unsigned char *w = (const unsigned char *)&GUARD_WORD;
    for (size_t i = 0; i < bytes; i++) d[i] = w[(off + i) % 4];
}

/* Backend memory of `bytes` between two guards; the region itself starts as the NaN pattern. */
static void *galloc(size_t bytes, const char *name)
{
    if (ngbufs == (int)(sizeof gbufs / sizeof *gbufs)) abort();
    const size_t tot = bytes + 2 * GUARD_BYTES;
    char *base = be->alloc(tot);
    if (!base) {
        fprintf(stderr, "%s: alloc(%zu) failed\n", be->name, tot);
        exit(1);
    }
    unsigned char *h = malloc(tot);
    pattern(h, 0, tot);
    be->to_device(base, h, tot);
    free(h);
    gbufs[ngbufs++] = (gbuf){base, bytes, name, NULL};
    return base + GUARD_BYTES;
}

static gbuf *find_gbuf(const void *user)
{
    for (int i = 0; i < ngbufs; i++)
        if (gbufs[i].base + GUARD_BYTES == (const char *)user) return &gbufs[i];
    abort();
}

/* From now on the buffer must keep its current contents (an input of the following entries). */
static void snap(const void *user)
{
    gbuf *g = find_gbuf(user);
    free(g->snap);
    g->snap = malloc(g->bytes ? g->bytes : 1);
    be->to_host(g->snap, user, g->bytes);
}
static void unsnap(const void *user)
{
    gbuf *g = find_gbuf(user);
    free(g->snap);
    g->snap = NULL;
}

static void check_guards(void)
{
    unsigned char *h = malloc(GUARD_BYTES), *want = malloc(GUARD_BYTES);
    for (int i = 0; i < ngbufs; i++) {
        const gbuf *g = &gbufs[i];
        for (int side = 0; side < 2; side++) {
            const size_t off = side ? GUARD_BYTES + g->bytes : 0;
            be->to_host(h, g->base + off, GUARD_BYTES);
            pattern(want, off, GUARD_BYTES);
            int first = -1, nbad = 0;
            for (int b = 0; b < GUARD_BYTES; b++)
                if (h[b] != want[b]) {
                    if (first < 0) first = b;
                    nbad++;
                }
            if (nbad) { /* reported once: the guard is restored */
                failf("guard %s %s overwritten (%d bytes, first at byte %d of the guard)",
                      side ? "after" : "before", g->name, nbad, first);
                be->to_device(g->base + off, want, GUARD_BYTES);
            }
        }
        if (g->snap) {
            unsigned char *now = malloc(g->bytes ? g->bytes : 1);
            be->to_host(now, g->base + GUARD_BYTES, g->bytes);
            if (memcmp(now, g->snap, g->bytes)) { /* reported once */
                failf("input %s modified", g->name);
                memcpy(g->snap, now, g->bytes);
            }
            free(now);
        }
    }
    free(h), free(want);
}

/* Frees the backend buffers and host memory of a case. */
static void release(void)
{
    for (int i = 0; i < ngbufs; i++) {
        be->free(gbufs[i].base);
        free(gbufs[i].snap);
    }
    ngbufs = 0;
    for (int i = 0; i < nharena; i++) free(harena[i]);
    nharena = 0;
}

static float *in_f(const float *h, int64_t n, const char *name) /* const input */
{
    float *d = galloc(sizeof(float) * (size_t)n, name);
    be->to_device(d, h, sizeof(float) * (size_t)n);
    snap(d);
    return d;
}
static float *io_f(const float *h, int64_t n, const char *name) /* written, starts as h */
{
    float *d = galloc(sizeof(float) * (size_t)n, name);
    be->to_device(d, h, sizeof(float) * (size_t)n);
    return d;
}
static float *out_f(int64_t n, const char *name) /* written, starts as NaN */
{
    return galloc(sizeof(float) * (size_t)n, name);
}
static int32_t *in_i(const int32_t *h, int64_t n, const char *name)
{
    int32_t *d = galloc(sizeof(int32_t) * (size_t)n, name);
    be->to_device(d, h, sizeof(int32_t) * (size_t)n);
    snap(d);
    return d;
}
static float *down_f(const float *d, int64_t n)
{
    float *h = HF(n);
    be->to_host(h, d, sizeof(float) * (size_t)n);
    return h;
}
static double *down_d(const double *d, int64_t n)
{
    double *h = HD(n);
    be->to_host(h, d, sizeof(double) * (size_t)n);
    return h;
}
static int32_t *down_i(const int32_t *d, int64_t n)
{
    int32_t *h = HI(n);
    be->to_host(h, d, sizeof(int32_t) * (size_t)n);
    return h;
}
static void up_f(float *d, const float *h, int64_t n)
{
    be->to_device(d, h, sizeof(float) * (size_t)n);
}

/* ------------------------------------------------------------------ comparisons */

/* The CPU backend's outputs, by (entry, shape, output), for the second backend's comparison. */
typedef struct saved {
    struct saved *next;
    char *key;
    double *v;
    int64_t n;
} saved;
static saved *saved_list;

static char *make_key(const char *what)
{
    const size_t len = strlen(cs.entry) + strlen(cs.shape) + strlen(what) + 3;
    char *k = malloc(len);
    snprintf(k, len, "%s|%s|%s", cs.entry, cs.shape, what);
    return k;
}

static void nmse_of(const double *got, const double *ref, int64_t n, double *nmse, double *maxabs,
                    int64_t *at)
{
    double se = 0.0, sr = 0.0, mx = 0.0;
    *at = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = got[i] - ref[i];
        se += d * d, sr += ref[i] * ref[i];
        if (fabs(d) > mx) mx = fabs(d), *at = i;
    }
    *nmse = sr > 0.0 ? se / sr : se; /* an all-zero reference: the plain squared error */
    *maxabs = mx;
}

static void cmp_dd(const char *what, const double *got, const double *ref, int64_t n, double tol)
{
    int64_t nonfinite = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(got[i])) {
            if (first < 0) first = i;
            nonfinite++;
        }
    if (nonfinite) { /* (a) */
        failf("%s: %lld non-finite (first at %lld: %g)", what, (long long)nonfinite,
              (long long)first, got[first]);
        cs.nmse = INFINITY;
        return;
    }
    double nmse, maxabs;
    int64_t at;
    nmse_of(got, ref, n, &nmse, &maxabs, &at);
    if (nmse > cs.nmse) cs.nmse = nmse;
    if (maxabs > cs.maxabs) cs.maxabs = maxabs;
    if (!(nmse <= tol)) /* (b) */
        failf("%s: NMSE %.2e > %.0e (max abs %.2e at %lld: %.7g, reference %.7g)", what, nmse, tol,
              maxabs, (long long)at, got[at], ref[at]);
    /* the second backend against the CPU backend's result */
    char *key = make_key(what);
    if (be == cpu_be) {
        saved *s = malloc(sizeof *s);
        s->key = key, s->n = n, s->v = malloc(sizeof(double) * (size_t)(n ? n : 1));
        memcpy(s->v, got, sizeof(double) * (size_t)n);
        s->next = saved_list, saved_list = s;
        return;
    }
    for (saved *s = saved_list; s; s = s->next)
        if (!strcmp(s->key, key) && s->n == n) {
            nmse_of(got, s->v, n, &nmse, &maxabs, &at);
            if (!(nmse <= tol))
                failf("%s vs cpu: NMSE %.2e (max abs %.2e at %lld)", what, nmse, maxabs,
                      (long long)at);
            break;
        }
    free(key);
}

static void cmp(const char *what, const float *got, const real *ref, int64_t n, double tol)
{
    double *g = HD(n);
    for (int64_t i = 0; i < n; i++) g[i] = got[i];
    cmp_dd(what, g, ref, n, tol);
}
static void cmp_scalar(const char *what, double got, double ref) { cmp_dd(what, &got, &ref, 1, NMSE_TOL); }

static void cmp_exact_i(const char *what, const int32_t *got, const int32_t *ref, int64_t n)
{
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (got[i] != ref[i]) {
            if (first < 0) first = i;
            bad++;
        }
    if (bad)
        failf("%s: %lld of %lld differ (first at %lld: %d, reference %d)", what, (long long)bad,
              (long long)n, (long long)first, got[first], ref[first]);
}

/* ------------------------------------------------------------------ finite differences (d) */

typedef double (*loss_fn)(void *ctx);

/* L = sum w * y, in double */
static double dot_w(const float *y, const float *w, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)w[i] * y[i];
    return s;
}
static double dot_wr(const real *y, const float *w, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)w[i] * y[i];
    return s;
}

/* Central differences of the backend's forward (float input xf) against its backward g_be, and of
 * the reference's forward (double input xd) against its backward g_ref, on FD_SAMPLES elements. */
static void fd_check(const char *what, void *ctx, float *xf, real *xd, int64_t n, const float *g_be,
                     const real *g_ref, loss_fn be_loss, loss_fn ref_loss)
{
    if (n <= 0) return;
    cs.has_fd = 1;
    double gmax_be = 0.0, gmax_ref = 0.0;
    int64_t imax = 0;
    for (int64_t i = 0; i < n; i++) {
        if (fabs(g_be[i]) > gmax_be) gmax_be = fabs(g_be[i]);
        if (fabs(g_ref[i]) > gmax_ref) gmax_ref = fabs(g_ref[i]), imax = i;
    }
    for (int s = 0; s < FD_SAMPLES && s < n; s++) {
        const int64_t i = s == 0 ? imax : (int64_t)(next_u64() % (uint64_t)n);
        if (be_loss) {
            const float x0 = xf[i], xp = x0 + (float)FD_H_F, xm = x0 - (float)FD_H_F;
            xf[i] = xp;
            const double lp = be_loss(ctx);
            xf[i] = xm;
            const double lm = be_loss(ctx);
            xf[i] = x0;
            const double fd = (lp - lm) / ((double)xp - (double)xm);
            const double err = fabs(fd - g_be[i]) / (gmax_be + FD_ATOL_F / FD_TOL_F);
            if (err > cs.fd_f) cs.fd_f = err;
            if (!(fabs(fd - g_be[i]) <= FD_TOL_F * gmax_be + FD_ATOL_F))
                failf("fd %s[%lld]: backward %.6g, central difference of the forward %.6g", what,
                      (long long)i, g_be[i], fd);
        }
        if (ref_loss) {
            const real x0 = xd[i];
            xd[i] = x0 + FD_H_D;
            const double lp = ref_loss(ctx);
            xd[i] = x0 - FD_H_D;
            const double lm = ref_loss(ctx);
            xd[i] = x0;
            const double fd = (lp - lm) / (2 * FD_H_D);
            const double err = fabs(fd - g_ref[i]) / (gmax_ref + 1e-9 / FD_TOL_D);
            if (err > cs.fd_d) cs.fd_d = err;
            if (!(fabs(fd - g_ref[i]) <= FD_TOL_D * gmax_ref + 1e-9))
                failf("fd %s[%lld] of the reference: backward %.9g, difference %.9g (a test bug)",
                      what, (long long)i, g_ref[i], fd);
        }
    }
}

/* ================================================================== memory */

static void test_memory(void)
{
    if (MISSING(alloc) || MISSING(free) || MISSING(to_device) || MISSING(to_host)) {
        fprintf(stderr, "%s: without alloc/free/to_device/to_host nothing else can run\n",
                be->name);
        exit(1);
    }
    const int64_t sizes[] = {1, 37, 1000};
    for (int s = 0; s < 3; s++) {
        const int64_t n = sizes[s];
        seed(100 + s);
        const float *x = rand_f(n, -1, 1);
        /* to_device / to_host: a round trip, bit-identical; odd byte counts too */
        begin("to_device+to_host", "bytes=%lld", (long long)(4 * n - (s == 1 ? 3 : 0)));
        const size_t bytes = sizeof(float) * (size_t)n - (s == 1 ? 3 : 0);
        void *d = galloc(bytes, "buf");
        be->to_device(d, x, bytes);
        unsigned char *back = hmem(bytes);
        be->to_host(back, d, bytes);
        if (memcmp(back, x, bytes)) failf("round trip differs");
        finish();
        if (!MISSING(zero)) {
            begin("zero", "n=%lld", (long long)n);
            float *z = io_f(x, n, "x");
            be->zero(z, sizeof(float) * (size_t)n);
            const float *h = down_f(z, n);
            int64_t bad = 0;
            for (int64_t i = 0; i < n; i++) bad += h[i] != 0.0f || signbit(h[i]);
            if (bad) failf("%lld elements not +0", (long long)bad);
            finish();
        }
        if (!MISSING(copy)) {
            begin("copy", "n=%lld", (long long)n);
            const float *src = in_f(x, n, "src");
            float *dst = out_f(n, "dst");
            be->copy(dst, src, sizeof(float) * (size_t)n);
            if (memcmp(down_f(dst, n), x, sizeof(float) * (size_t)n)) failf("copy differs");
            finish();
        }
        release();
    }
    if (!MISSING(synchronize)) {
        begin("synchronize", "-");
        ok(be->synchronize(), "synchronize");
        finish();
    }
    if (!missing((const void *)be->host_alloc, "host_alloc", 1) &&
        !missing((const void *)be->host_free, "host_free", 1)) {
        begin("host_alloc+host_free", "bytes=4096");
        float *h = be->host_alloc(4096);
        if (!h) failf("host_alloc returned NULL");
        else {
            for (int i = 0; i < 1024; i++) h[i] = (float)i;
            float *d = galloc(4096, "buf");
            be->to_device(d, h, 4096);
            const float *b = down_f(d, 1024);
            if (memcmp(b, h, 4096)) failf("staging round trip differs");
            be->host_free(h);
        }
        finish();
        release();
    }
}

/* ================================================================== dense */

static void ref_gemm(bool ta, bool tb, int m, int n, int k, double alpha, const float *a, int lda,
                     const float *b, int ldb, double beta, const float *c0, int ldc, real *c)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0.0;
            for (int p = 0; p < k; p++)
                s += (double)(ta ? a[(int64_t)p * lda + i] : a[(int64_t)i * lda + p]) *
                     (tb ? b[(int64_t)j * ldb + p] : b[(int64_t)p * ldb + j]);
            c[(int64_t)i * n + j] = alpha * s + (beta != 0.0 ? beta * c0[(int64_t)i * ldc + j] : 0);
        }
}

static void test_gemm(void)
{
    if (MISSING(gemm)) return;
    static const int shapes[][4] = {/* m, n, k, padding of the leading dimensions */
                                    {1, 1, 1, 0}, {3, 5, 7, 0}, {17, 9, 33, 3}, {16, 16, 16, 0},
                                    {1, 65, 2, 1}, {33, 1, 17, 2}};
    for (int s = 0; s < 6; s++)
        for (int t = 0; t < 4; t++)
            for (int ab = 0; ab < 2; ab++) {
                const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2], pad = shapes[s][3];
                const bool ta = t & 1, tb = t & 2;
                const float alpha = ab ? 0.5f : 1.0f, beta = ab ? 1.0f : 0.0f;
                const int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
                const int64_t na = (int64_t)(ta ? k : m) * lda, nb = (int64_t)(tb ? n : k) * ldb,
                              nc = (int64_t)m * ldc;
                begin("gemm", "%dx%dx%d ta=%d tb=%d alpha=%g beta=%g ld+%d", m, n, k, ta, tb,
                      alpha, beta, pad);
                seed(200 + s * 8 + t * 2 + ab);
                const float *a = rand_f(na, -1, 1), *b = rand_f(nb, -1, 1);
                float *c0 = rand_f(nc, -1, 1);
                if (!beta) /* beta 0: C is not read, even a NaN (BLAS semantics) */
                    for (int i = 0; i < m; i++) pattern(c0 + (int64_t)i * ldc, 0, 4 * (size_t)n);
                float *dc = io_f(c0, nc, "C");
                ok(be->gemm(ta, tb, m, n, k, alpha, in_f(a, na, "A"), lda, in_f(b, nb, "B"), ldb,
                            beta, dc, ldc),
                   "gemm");
                const float *c = down_f(dc, nc);
                real *ref = HD((int64_t)m * n);
                ref_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc, ref);
                float *cc = HF((int64_t)m * n);
                int64_t gap = 0;
                for (int i = 0; i < m; i++) {
                    memcpy(cc + (int64_t)i * n, c + (int64_t)i * ldc, sizeof(float) * (size_t)n);
                    gap += memcmp(c + (int64_t)i * ldc + n, c0 + (int64_t)i * ldc + n,
                                  sizeof(float) * (size_t)pad) != 0;
                }
                cmp("C", cc, ref, (int64_t)m * n, NMSE_TOL);
                if (gap) failf("C's padding beyond n written in %lld rows", (long long)gap);
                finish();
                release();
            }
    /* deterministic mode: the same bits for 1 and 2 threads (several tiles: m > 128, n > 256) */
    if (missing((const void *)be->set_deterministic, "set_deterministic", 1)) return;
    static const int det[][5] = {{8, 64, 200, 0, 1}, {300, 257, 33, 0, 0}, {130, 300, 20, 1, 0}};
    const int threads0 = omp_get_max_threads();
    for (int s = 0; s < 3; s++) {
        const int m = det[s][0], n = det[s][1], k = det[s][2];
        const bool ta = det[s][3], tb = det[s][4];
        const int lda = ta ? m : k, ldb = tb ? k : n;
        begin("gemm+set_deterministic", "%dx%dx%d ta=%d tb=%d threads 1 vs 2", m, n, k, ta, tb);
        seed(300 + s);
        const float *a = rand_f((int64_t)m * k, -1, 1), *b = rand_f((int64_t)k * n, -1, 1);
        const float *da = in_f(a, (int64_t)m * k, "A"), *db = in_f(b, (int64_t)k * n, "B");
        float *c1 = out_f((int64_t)m * n, "C1"), *c2 = out_f((int64_t)m * n, "C2");
        be->set_deterministic(true);
        omp_set_num_threads(1);
        ok(be->gemm(ta, tb, m, n, k, 1.0f, da, lda, db, ldb, 0.0f, c1, n), "gemm");
        omp_set_num_threads(2);
        ok(be->gemm(ta, tb, m, n, k, 1.0f, da, lda, db, ldb, 0.0f, c2, n), "gemm");
        omp_set_num_threads(threads0);
        be->set_deterministic(false);
        const float *h1 = down_f(c1, (int64_t)m * n), *h2 = down_f(c2, (int64_t)m * n);
        int64_t diff = 0;
        for (int64_t i = 0; i < (int64_t)m * n; i++) diff += memcmp(&h1[i], &h2[i], 4) != 0;
        if (diff) failf("%lld of %lld elements differ between 1 and 2 threads", (long long)diff,
                        (long long)m * n);
        real *ref = HD((int64_t)m * n);
        ref_gemm(ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, NULL, n, ref);
        cmp("C", h1, ref, (int64_t)m * n, NMSE_TOL);
        finish();
        release();
    }
}

/* ================================================================== elementwise */

static double act_d(double v, pt_act act)
{
    switch (act) {
    case PT_ACT_RELU: return v > 0 ? v : 0;
    case PT_ACT_GELU: return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    case PT_ACT_TANH: return tanh(v);
    default: return v;
    }
}
static double act_grad_d(double v, pt_act act)
{
    switch (act) {
    case PT_ACT_RELU: return v > 0 ? 1 : 0;
    case PT_ACT_GELU: return 0.5 * (1.0 + erf(v / sqrt(2.0))) + v * exp(-0.5 * v * v) / sqrt(2 * M_PI);
    case PT_ACT_TANH: return 1.0 - tanh(v) * tanh(v);
    default: return 1;
    }
}
static const char *act_name[] = {"none", "relu", "gelu", "tanh"};

/* bias_act_forward as a function of (x, bias), for the differences */
typedef struct {
    int rows, cols;
    pt_act act;
    float *x, *bias, *w;
    real *xd, *bd;
    float *dy, *db; /* backend scratch for the loss */
} biasact_ctx;
static double biasact_be_loss(void *p)
{
    biasact_ctx *c = p;
    const int64_t n = (int64_t)c->rows * c->cols;
    up_f(c->dy, c->x, n), up_f(c->db, c->bias, c->cols);
    be->bias_act_forward(c->dy, NULL, c->db, c->rows, c->cols, c->act);
    return dot_w(down_f(c->dy, n), c->w, n);
}
static double biasact_ref_loss(void *p)
{
    biasact_ctx *c = p;
    double s = 0.0;
    for (int r = 0; r < c->rows; r++)
        for (int j = 0; j < c->cols; j++) {
            const int64_t i = (int64_t)r * c->cols + j;
            s += c->w[i] * act_d(c->xd[i] + c->bd[j], c->act);
        }
    return s;
}

static void test_elementwise_bias_act(void)
{
    static const int shapes[][2] = {{1, 1}, {3, 17}, {4, 33}, {130, 127}};
    const int have_f = !MISSING(bias_act_forward), have_a = !MISSING(act_backward),
              have_b = !MISSING(bias_backward);
    for (int s = 0; s < 4; s++) {
        const int rows = shapes[s][0], cols = shapes[s][1];
        const int64_t n = (int64_t)rows * cols;
        for (int a = 0; a < 4; a++) {
            const pt_act act = (pt_act)a;
            seed(400 + s * 4 + a);
            float *bias = rand_f(cols, -0.5f, 0.5f), *x = rand_f(n, -2, 2);
            for (int r = 0; r < rows; r++) /* x + bias away from ReLU's kink */
                for (int j = 0; j < cols; j++) {
                    float v = x[(int64_t)r * cols + j] + bias[j];
                    off_kink(&v, 1);
                    x[(int64_t)r * cols + j] = v - bias[j];
                }
            float *w = rand_f(n, -1, 1);
            real *pre_ref = HD(n), *y_ref = HD(n), *dx_ref = HD(n), *db_ref = HD(cols);
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < cols; j++) {
                    const int64_t i = (int64_t)r * cols + j;
                    pre_ref[i] = (double)x[i] + bias[j];
                    y_ref[i] = act_d(pre_ref[i], act);
                    dx_ref[i] = w[i] * act_grad_d(pre_ref[i], act);
                }
            for (int j = 0; j < cols; j++) db_ref[j] = 0;
            for (int64_t i = 0; i < n; i++) db_ref[i % cols] += dx_ref[i];
            biasact_ctx c = {rows, cols, act, x, bias, w, to_real(x, n), to_real(bias, cols),
                             NULL, NULL};
            float *pre_be = NULL, *y_be = NULL, *dx_be = NULL;
            if (have_f)
                for (int with_pre = 0; with_pre < 2; with_pre++) {
                    if (!with_pre && s != 1 && s != 3) continue;
                    begin("bias_act_forward", "%dx%d act=%s pre_act=%s", rows, cols, act_name[a],
                          with_pre ? "yes" : "NULL");
                    float *y = io_f(x, n, "y");
                    float *pre = with_pre ? out_f(n, "pre_act") : NULL;
                    ok(be->bias_act_forward(y, pre, in_f(bias, cols, "bias"), rows, cols, act),
                       "bias_act_forward");
                    y_be = down_f(y, n);
                    cmp("y", y_be, y_ref, n, NMSE_TOL);
                    if (pre) cmp("pre_act", pre_be = down_f(pre, n), pre_ref, n, NMSE_TOL);
                    finish();
                }
            (void)y_be;
            if (have_a)
                for (int variant = 0; variant < 3; variant++) {
                    /* 0: dx separate; 1: dx aliases dy; 2 (ReLU): pre_act is the output */
                    if (variant == 2 && act != PT_ACT_RELU) continue;
                    begin("act_backward", "%dx%d act=%s%s", rows, cols, act_name[a],
                          variant == 1 ? " dx=dy" : variant == 2 ? " pre=output" : "");
                    float *pre_h = HF(n);
                    for (int64_t i = 0; i < n; i++)
                        pre_h[i] = (float)(variant == 2 ? y_ref[i] : pre_ref[i]);
                    const float *pre = in_f(pre_h, n, "pre_act");
                    float *dy = variant == 1 ? io_f(w, n, "dy") : in_f(w, n, "dy");
                    float *dx = variant == 1 ? dy : out_f(n, "dx");
                    if (variant == 1) unsnap(dy);
                    ok(be->act_backward(dx, dy, pre, n, act), "act_backward");
                    dx_be = down_f(dx, n);
                    cmp("dx", dx_be, dx_ref, n, NMSE_TOL);
                    if (variant == 0 && have_f) {
                        c.dy = out_f(n, "fd y"), c.db = out_f(cols, "fd bias");
                        fd_check("x", &c, x, c.xd, n, dx_be, dx_ref, biasact_be_loss,
                                 biasact_ref_loss);
                    }
                    finish();
                }
            if (have_b && a == 0) {
                begin("bias_backward", "%dx%d", rows, cols);
                float *db = out_f(cols, "db");
                ok(be->bias_backward(db, in_f(w, n, "dy"), rows, cols), "bias_backward");
                const float *db_be = down_f(db, cols);
                cmp("db", db_be, db_ref, cols, NMSE_TOL);
                if (have_f) {
                    c.dy = out_f(n, "fd y"), c.db = out_f(cols, "fd bias");
                    fd_check("bias", &c, bias, c.bd, cols, db_be, db_ref, biasact_be_loss,
                             biasact_ref_loss);
                }
                finish();
            }
            release();
        }
    }
}

static void test_elementwise_simple(void)
{
    static const int64_t sizes[] = {0, 1, 17, 16390}; /* 16390: above the threading threshold */
    for (int s = 0; s < 4; s++) {
        const int64_t n = sizes[s];
        seed(500 + s);
        const float *x = rand_f(n, -1, 1), *b = rand_f(n, -1, 1);
        real *ref = HD(n);
        if (n && !MISSING(relu))
            for (int alias = 0; alias < 2; alias++) {
                begin("relu", "n=%lld%s", (long long)n, alias ? " y=x" : "");
                float *dx = alias ? io_f(x, n, "x") : in_f(x, n, "x");
                float *y = alias ? dx : out_f(n, "y");
                ok(be->relu(y, dx, n), "relu");
                for (int64_t i = 0; i < n; i++) ref[i] = x[i] > 0 ? x[i] : 0;
                cmp("y", down_f(y, n), ref, n, NMSE_TOL);
                finish();
            }
        if (n && !MISSING(add))
            for (int relu = 0; relu < 2; relu++)
                for (int alias = 0; alias < 3; alias++) { /* y separate, y = a, y = b */
                    begin("add", "n=%lld relu=%d%s", (long long)n, relu,
                          alias == 1 ? " y=a" : alias == 2 ? " y=b" : "");
                    float *da = alias == 1 ? io_f(x, n, "a") : in_f(x, n, "a");
                    float *db = alias == 2 ? io_f(b, n, "b") : in_f(b, n, "b");
                    float *y = alias == 1 ? da : alias == 2 ? db : out_f(n, "y");
                    ok(be->add(y, da, db, n, relu), "add");
                    for (int64_t i = 0; i < n; i++) {
                        const double v = (double)x[i] + b[i];
                        ref[i] = relu && v < 0 ? 0 : v;
                    }
                    cmp("y", down_f(y, n), ref, n, NMSE_TOL);
                    finish();
                }
        if (!MISSING(accumulate))
            for (int beta = 0; beta < 2; beta++) {
                begin("accumulate", "n=%lld beta=%d", (long long)n, beta);
                float *dst = beta ? io_f(b, n, "dst") : out_f(n, "dst");
                ok(be->accumulate(dst, in_f(x, n, "src"), n, (float)beta), "accumulate");
                for (int64_t i = 0; i < n; i++) ref[i] = (double)x[i] + (beta ? b[i] : 0.0);
                cmp("dst", down_f(dst, n), ref, n, NMSE_TOL);
                finish();
            }
        release();
    }
}

/* ------------------------------------------------------------------ dropout */

static int keep_ref(uint64_t sd, uint64_t stream, int64_t i, float p)
{
    if (p <= 0.0f) return 1;
    uint32_t w[4];
    pt_rng_block(sd, stream, (uint64_t)i / 4, w);
    return w[i % 4] >= (uint32_t)((double)p * 4294967296.0);
}

typedef struct {
    int rows, cols;
    int64_t row_offset, col_offset, row_width;
    float p;
    uint64_t sd, stream;
    float *x, *w, *dx; /* host input, loss weights; backend scratch */
    real *xd;
    const int *keep;
} drop_ctx;
static pt_status drop_call(const drop_ctx *c, float *x)
{
    return c->col_offset < 0 ? be->dropout(x, c->rows, c->cols, c->row_offset, c->p, c->sd, c->stream)
                             : be->dropout_cols(x, c->rows, c->cols, c->row_offset, c->col_offset,
                                                c->row_width, c->p, c->sd, c->stream);
}
static double drop_be_loss(void *p)
{
    drop_ctx *c = p;
    const int64_t n = (int64_t)c->rows * c->cols;
    up_f(c->dx, c->x, n);
    drop_call(c, c->dx);
    return dot_w(down_f(c->dx, n), c->w, n);
}
static double drop_ref_loss(void *p)
{
    drop_ctx *c = p;
    double s = 0.0;
    for (int64_t i = 0; i < (int64_t)c->rows * c->cols; i++)
        s += c->keep[i] ? c->w[i] * c->xd[i] / (1.0 - c->p) : 0.0;
    return s;
}

/* One dropout or dropout_cols case (col_offset < 0: dropout): the result against the mask's
 * definition, the backward (the same call on a gradient) against differences, and for
 * dropout_cols the same bits as dropout on the whole rows. */
static void dropout_case(int rows, int cols, int64_t row_offset, int64_t col_offset,
                         int64_t row_width, float p)
{
    const int cols_mode = col_offset >= 0;
    const int64_t n = (int64_t)rows * cols;
    const uint64_t sd = 1234567, stream = 77;
    if (cols_mode)
        begin("dropout_cols", "%dx%d row_off=%lld col_off=%lld width=%lld p=%g", rows, cols,
              (long long)row_offset, (long long)col_offset, (long long)row_width, p);
    else
        begin("dropout", "%dx%d row_off=%lld p=%g", rows, cols, (long long)row_offset, p);
    seed(600 + (uint64_t)n + (uint64_t)col_offset);
    float *x = rand_f(n, 0.1f, 1), *w = rand_f(n, -1, 1);
    for (int64_t i = 0; i < n; i++) x[i] = i % 2 ? -x[i] : x[i]; /* never 0: a 0 is a drop */
    int *keep = hmem(sizeof(int) * (size_t)n);
    real *ref = HD(n), *gref = HD(n);
    int64_t kept = 0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            const int64_t i = (int64_t)r * cols + c;
            const int64_t g = cols_mode ? (row_offset + r) * row_width + col_offset + c
                                        : (row_offset + r) * cols + c;
            keep[i] = keep_ref(sd, stream, g, p);
            kept += keep[i];
            ref[i] = keep[i] ? x[i] / (1.0 - p) : 0.0;
            gref[i] = keep[i] ? w[i] / (1.0 - p) : 0.0;
        }
    drop_ctx ctx = {rows, cols, row_offset, cols_mode ? col_offset : -1, row_width, p, sd, stream,
                    x, w, NULL, to_real(x, n), keep};
    float *dx = io_f(x, n, "x");
    ok(drop_call(&ctx, dx), cols_mode ? "dropout_cols" : "dropout");
    const float *got = down_f(dx, n);
    cmp("x", got, ref, n, NMSE_TOL);
    int64_t mask_diff = 0;
    for (int64_t i = 0; i < n; i++) mask_diff += (got[i] == 0.0f) != !keep[i];
    if (mask_diff) failf("mask differs from Philox's at %lld elements", (long long)mask_diff);
    if (n >= 4096) { /* the reference's own sanity: p is the drop probability (4 sigma) */
        const double q = 1.0 - p, sigma = sqrt(p * q / (double)n);
        if (fabs((double)kept / (double)n - q) > 4 * sigma + 1e-12)
            failf("kept %lld of %lld, expected %.3f (test's mask reading is wrong)",
                  (long long)kept, (long long)n, q);
    }
    /* backward: the same call on the gradient, against the forward's differences */
    float *dw = io_f(w, n, "dy");
    ok(drop_call(&ctx, dw), "dropout (backward)");
    const float *g_be = down_f(dw, n);
    cmp("dy", g_be, gref, n, NMSE_TOL);
    ctx.dx = out_f(n, "fd x");
    fd_check("x", &ctx, x, ctx.xd, n, g_be, gref, drop_be_loss, drop_ref_loss);
    if (cols_mode && be->dropout) { /* the slice of whole-row dropout, bit for bit */
        const int64_t nf = (int64_t)rows * row_width;
        float *full = rand_f(nf, 0.1f, 1);
        for (int r = 0; r < rows; r++)
            memcpy(full + r * row_width + col_offset, x + (int64_t)r * cols, 4 * (size_t)cols);
        float *df = io_f(full, nf, "full rows");
        ok(be->dropout(df, rows, (int)row_width, row_offset, p, sd, stream), "dropout");
        const float *hf = down_f(df, nf);
        int64_t diff = 0;
        for (int r = 0; r < rows; r++)
            diff += memcmp(hf + r * row_width + col_offset, got + (int64_t)r * cols,
                           4 * (size_t)cols) != 0;
        if (diff) failf("differs from dropout on the whole rows in %lld rows", (long long)diff);
    }
    finish();
    release();
}

static void test_dropout(void)
{
    if (!MISSING(dropout)) {
        dropout_case(1, 1, 0, -1, 0, 0.5f);
        dropout_case(3, 17, 0, -1, 0, 0.0f);
        dropout_case(3, 17, 5, -1, 0, 0.3f);
        dropout_case(7, 33, 2, -1, 0, 0.5f);
        dropout_case(64, 300, 11, -1, 0, 0.1f); /* threaded */
    }
    if (!MISSING(dropout_cols)) {
        dropout_case(3, 5, 0, 3, 17, 0.5f);
        dropout_case(4, 7, 2, 10, 17, 0.3f);
        dropout_case(2, 1, 1, 16, 17, 0.5f);
        dropout_case(5, 17, 3, 0, 17, 0.5f); /* whole rows */
        dropout_case(2, 9, 3, 4, 13, 0.0f);
        dropout_case(40, 150, 7, 61, 301, 0.25f); /* threaded, odd offsets */
    }
}

/* ------------------------------------------------------------------ reductions */

static void test_reductions(void)
{
    static const int64_t sizes[] = {0, 1, 3, 17, 4097, 16390};
    for (int s = 0; s < 6; s++) {
        const int64_t n = sizes[s];
        seed(700 + s);
        const float *x = rand_f(n, -2, 2);
        if (!MISSING(sum_squares)) {
            begin("sum_squares", "n=%lld", (long long)n);
            double ref = 0.0;
            for (int64_t i = 0; i < n; i++) ref += (double)x[i] * x[i];
            cmp_scalar("sum", be->sum_squares(in_f(x, n, "x"), n), ref);
            finish();
        }
        if (!MISSING(scale))
            for (int a = 0; a < 2; a++) {
                const float alpha = a ? -3.0f : 0.5f;
                begin("scale", "n=%lld alpha=%g", (long long)n, alpha);
                float *d = io_f(x, n, "x");
                ok(be->scale(d, n, alpha), "scale");
                real *ref = HD(n);
                for (int64_t i = 0; i < n; i++) ref[i] = (double)alpha * x[i];
                cmp("x", down_f(d, n), ref, n, NMSE_TOL);
                finish();
            }
        if (!MISSING(all_finite))
            for (int k = 0; k < 4; k++) { /* all finite; NaN last; +Inf first; -Inf middle */
                if (n == 0 && k) continue;
                float *h = HF(n);
                memcpy(h, x, sizeof(float) * (size_t)n);
                if (k == 1) h[n - 1] = NAN;
                if (k == 2) h[0] = INFINITY;
                if (k == 3) h[n / 2] = -INFINITY;
                static const char *what[] = {"finite", "NaN last", "+Inf first", "-Inf middle"};
                begin("all_finite", "n=%lld %s", (long long)n, what[k]);
                const bool got = be->all_finite(in_f(h, n, "x"), n);
                if (got != (k == 0)) failf("returned %d", (int)got);
                finish();
            }
        release();
    }
}

/* ================================================================== loss */

static double ref_xent(const float *z, const int32_t *y, int rows, int cols, double scale,
                       real *dz, int64_t *correct)
{
    double loss = 0.0;
    *correct = 0;
    for (int r = 0; r < rows; r++) {
        const float *zr = z + (int64_t)r * cols;
        int am = 0;
        for (int c = 1; c < cols; c++)
            if (zr[c] > zr[am]) am = c; /* first maximum */
        double s = 0.0;
        for (int c = 0; c < cols; c++) s += exp((double)zr[c] - zr[am]);
        loss += log(s) - ((double)zr[y[r]] - zr[am]);
        *correct += am == y[r];
        if (dz)
            for (int c = 0; c < cols; c++)
                dz[(int64_t)r * cols + c] =
                    (exp((double)zr[c] - zr[am]) / s - (c == y[r])) * scale;
    }
    return loss;
}
/* the same in double inputs, for the reference's differences */
static double ref_xent_d(const real *z, const int32_t *y, int rows, int cols)
{
    double loss = 0.0;
    for (int r = 0; r < rows; r++) {
        const real *zr = z + (int64_t)r * cols;
        double mx = zr[0], s = 0.0;
        for (int c = 1; c < cols; c++) mx = zr[c] > mx ? zr[c] : mx;
        for (int c = 0; c < cols; c++) s += exp(zr[c] - mx);
        loss += log(s) - (zr[y[r]] - mx);
    }
    return loss;
}

typedef struct {
    int rows, cols;
    float scale;
    float *z, *dz_dev;
    real *zd;
    const int32_t *y, *y_dev;
} xent_ctx;
static double xent_be_loss(void *p)
{
    xent_ctx *c = p;
    up_f(c->dz_dev, c->z, (int64_t)c->rows * c->cols);
    return be->softmax_xent(c->dz_dev, c->y_dev, c->rows, c->cols, 1.0f, NULL, NULL) * c->scale;
}
static double xent_ref_loss(void *p)
{
    xent_ctx *c = p;
    return ref_xent_d(c->zd, c->y, c->rows, c->cols) * c->scale;
}

/* logits with ties in row 0 (label on the second maximum: wrong) and row 1 (label on the first
 * maximum: right), where there are rows and columns enough */
static float *logits_with_ties(int rows, int cols, int32_t *labels)
{
    float *z = rand_f((int64_t)rows * cols, -3, 3);
    for (int r = 0; r < rows; r++) labels[r] = irand(cols);
    if (cols >= 6 && rows >= 2) {
        z[2] = z[5] = 3.5f, labels[0] = 5;
        z[cols + 1] = z[cols + 4] = 3.5f, labels[1] = 1;
    }
    return z;
}

static void test_softmax_xent(void)
{
    if (MISSING(softmax_xent)) return;
    static const int shapes[][2] = {{1, 1}, {1, 3}, {5, 10}, {3, 37}, {7, 129}};
    for (int s = 0; s < 5; s++)
        for (int v = 0; v < 2; v++) { /* 0: dlogits and correct; 1: loss only, grad_scale 1 */
            const int rows = shapes[s][0], cols = shapes[s][1];
            const int64_t n = (int64_t)rows * cols;
            const float scale = v ? 1.0f : 1.0f / (float)rows;
            begin("softmax_xent", "%dx%d grad_scale=%g%s", rows, cols, scale,
                  v ? " dlogits=NULL correct=NULL" : "");
            seed(800 + s);
            int32_t *y = HI(rows);
            float *z = logits_with_ties(rows, cols, y);
            real *dref = HD(n);
            int64_t cref;
            const double lref = ref_xent(z, y, rows, cols, scale, dref, &cref);
            const float *dz = in_f(z, n, "logits");
            const int32_t *dy = in_i(y, rows, "labels");
            float *dd = v ? NULL : out_f(n, "dlogits");
            int64_t correct = -1;
            const double loss =
                be->softmax_xent(dz, dy, rows, cols, scale, dd, v ? NULL : &correct);
            cmp_scalar("loss", loss, lref);
            if (!v) {
                if (correct != cref)
                    failf("correct %lld, reference %lld", (long long)correct, (long long)cref);
                const float *g = down_f(dd, n);
                cmp("dlogits", g, dref, n, NMSE_TOL);
                xent_ctx c = {rows, cols, scale, z, out_f(n, "fd logits"), to_real(z, n), y, dy};
                fd_check("logits", &c, z, c.zd, n, g, dref, xent_be_loss, xent_ref_loss);
            }
            finish();
            release();
        }
}

/* ================================================================== optimizer updates */

typedef struct {
    float lr, mom, wd;
    bool nesterov, decoupled;
} optcase;

static void test_optim(void)
{
    static const int64_t sizes[] = {1, 17, 16390};
    static const optcase sgd[] = {{0.1f, 0, 0, 0, 0}, {0.1f, 0, 0.01f, 0, 0},
                                  {0.1f, 0.9f, 0, 0, 0}, {0.05f, 0.9f, 0.1f, 1, 0}};
    static const optcase ada[] = {{0.1f, 0, 0, 0, 0}, {0.1f, 0, 0.01f, 0, 0}};
    static const optcase adam[] = {{1e-2f, 0, 0, 0, 0}, {1e-2f, 0, 0.01f, 0, 0},
                                   {1e-2f, 0, 0.01f, 0, 1}};
    const int steps = 3;
    for (int kind = 0; kind < 3; kind++) {
        if (kind == 0 && MISSING(sgd_update)) continue;
        if (kind == 1 && MISSING(adagrad_update)) continue;
        if (kind == 2 && MISSING(adam_update)) continue;
        const optcase *cases = kind == 0 ? sgd : kind == 1 ? ada : adam;
        const int ncases = kind == 0 ? 4 : kind == 1 ? 2 : 3;
        for (int s = 0; s < 3; s++)
            for (int k = 0; k < ncases; k++) {
                const optcase oc = cases[k];
                const int64_t n = sizes[s];
                const bool buf = kind != 0 || oc.mom != 0.0f;
                static const char *names[] = {"sgd_update", "adagrad_update", "adam_update"};
                begin(names[kind], "n=%lld lr=%g mom=%g wd=%g%s%s%s %d steps", (long long)n,
                      oc.lr, oc.mom, oc.wd, oc.nesterov ? " nesterov" : "",
                      oc.decoupled ? " adamw" : "", kind == 0 && !buf ? " buf=NULL" : "", steps);
                seed(900 + kind * 100 + s * 10 + k);
                float *w0 = rand_f(n, -1, 1), *zeros = HF(n);
                float *dw = io_f(w0, n, "w"), *dg = io_f(zeros, n, "g");
                float *s1 = buf ? io_f(zeros, n, "state1") : NULL;
                float *s2 = kind == 2 ? io_f(zeros, n, "state2") : NULL;
                real *w = to_real(w0, n), *m = HD(n), *v = HD(n);
                pt_update_params p = {.lr = oc.lr, .momentum = oc.mom, .weight_decay = oc.wd,
                                      .beta1 = 0.9f, .beta2 = 0.999f,
                                      .eps = kind == 1 ? 1e-10f : 1e-8f,
                                      .nesterov = oc.nesterov, .decoupled_wd = oc.decoupled};
                for (int t = 1; t <= steps; t++) {
                    float *g = rand_f(n, -1, 1);
                    for (int64_t i = 0; i < n; i += 7) g[i] = 0.0f; /* some zero gradients */
                    up_f(dg, g, n);
                    snap(dg);
                    p.t = t;
                    if (kind == 0) ok(be->sgd_update(dw, dg, s1, n, &p), "sgd_update");
                    if (kind == 1) ok(be->adagrad_update(dw, dg, s1, n, &p), "adagrad_update");
                    if (kind == 2) ok(be->adam_update(dw, dg, s1, s2, n, &p), "adam_update");
                    /* torch.optim's documented rules, in double */
                    const double lr = oc.lr, wd = oc.wd, mu = oc.mom, b1 = p.beta1,
                                 b2 = p.beta2, eps = p.eps;
                    for (int64_t i = 0; i < n; i++) {
                        double gi = g[i];
                        if (kind == 0) {
                            gi += wd * w[i];
                            if (mu != 0.0) {
                                m[i] = t > 1 ? mu * m[i] + gi : gi; /* dampening 0 */
                                gi = oc.nesterov ? gi + mu * m[i] : m[i];
                            }
                            w[i] -= lr * gi;
                        } else if (kind == 1) {
                            gi += wd * w[i]; /* lr_decay 0, initial accumulator 0 */
                            m[i] += gi * gi;
                            w[i] -= lr * gi / (sqrt(m[i]) + eps);
                        } else {
                            if (oc.decoupled) w[i] *= 1.0 - lr * wd;
                            else gi += wd * w[i];
                            m[i] = b1 * m[i] + (1 - b1) * gi;
                            v[i] = b2 * v[i] + (1 - b2) * gi * gi;
                            const double mh = m[i] / (1 - pow(b1, t)), vh = v[i] / (1 - pow(b2, t));
                            w[i] -= lr * mh / (sqrt(vh) + eps);
                        }
                    }
                }
                /* the change of w (w itself would hide a wrong update under its own size) */
                const float *wb = down_f(dw, n);
                float *dwb = HF(n);
                real *dwr = HD(n);
                for (int64_t i = 0; i < n; i++) dwb[i] = wb[i] - w0[i], dwr[i] = w[i] - w0[i];
                cmp("w - w0", dwb, dwr, n, NMSE_TOL);
                if (s1) cmp(kind == 0 ? "momentum" : kind == 1 ? "sum_sq" : "m", down_f(s1, n), m,
                            n, NMSE_TOL);
                if (s2) cmp("v", down_f(s2, n), v, n, NMSE_TOL);
                finish();
                release();
            }
    }
}

/* ================================================================== main */

static const struct {
    const char *name;
    void (*fn)(void);
} families[] = {
    {"memory", test_memory},
    {"gemm", test_gemm},
    {"bias_act", test_elementwise_bias_act},
    {"elementwise", test_elementwise_simple},
    {"dropout", test_dropout},
    {"reductions", test_reductions},
    {"softmax_xent", test_softmax_xent},
    {"optim", test_optim},
};

/* t_backend_ops [FAMILY...]: only those families (names above) */
int main(int argc, char **argv)
{
    cpu_be = pt_backend_cpu();
    const pt_backend *cuda = pt_backend_cuda();
    if (cuda && pt_backend_cuda_select(0) != PT_OK) cuda = NULL;
    const pt_backend *list[2] = {cpu_be, cuda};
    for (int b = 0; b < 2; b++) {
        if (!list[b]) {
            printf("SKIP-part: no CUDA backend in this build/no device (%s)\n",
                   pt_backend_cuda_why());
            continue;
        }
        be = list[b];
        for (size_t f = 0; f < sizeof families / sizeof *families; f++) {
            int want = argc < 2;
            for (int a = 1; a < argc; a++) want |= !strcmp(argv[a], families[f].name);
            if (want) families[f].fn();
        }
    }
    for (saved *s = saved_list, *nx; s; s = nx) nx = s->next, free(s->key), free(s->v), free(s);
    free(harena);
    printf("t_backend_ops: %d lines passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
