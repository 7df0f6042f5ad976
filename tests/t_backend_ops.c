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
 *  (c) every buffer sits between two 256-byte guards of a fixed (finite) pattern in backend
 *      memory, which must be byte-identical after the call; const inputs must be unchanged too;
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
 * erf form; embedding with no_wpe skips a non-NULL wpe (ops_seq.c passes it); batch norm's
 * running variance with n = 1 takes the biased (zero) variance; dropout keeps element i when
 * word i % 4 of pt_rng_block(seed, stream, i / 4) is >= p * 2^32 (the reference calls
 * pt_rng_block, the RNG that t_rng checks against Philox's known answers: it is the definition of
 * the mask, not a kernel). */
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/backend.h"
#include "paratrain/error.h"
#include "paratrain/lowp.h"
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
    int fail, has_fd, ncmp;
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
/* The guards hold 1.50680 (finite: x86 keeps a NaN operand's payload, so a stray `+=` into a NaN
 * guard would leave its bits as they were); the regions start as a quiet NaN, so an output an
 * entry leaves unwritten, or a read of one, shows up as a NaN. */
static const uint32_t GUARD_WORD = 0x3FC0DEADu, FILL_WORD = 0x7FC0DEADu;

typedef struct {
    char *base; /* the allocation: guard, user region, guard */
    size_t bytes;
    const char *name;
    void *snap; /* host copy the region must still equal (const inputs), or NULL */
} gbuf;
static gbuf gbufs[128];
static int ngbufs;

static void pattern_of(uint32_t word, void *dst, size_t off, size_t bytes)
{
    unsigned char *d = dst;
    const unsigned char *w = (const unsigned char *)&word;
    for (size_t i = 0; i < bytes; i++) d[i] = w[(off + i) % 4];
}
static void pattern(void *dst, size_t off, size_t bytes)
{
    pattern_of(GUARD_WORD, dst, off, bytes);
}
static void nan_fill(void *dst, size_t bytes) { pattern_of(FILL_WORD, dst, 0, bytes); }

/* Backend memory of `bytes` between two guards; the region itself starts as NaN. */
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
    nan_fill(h + GUARD_BYTES, bytes);
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
            int first = -1, last = -1, nbad = 0;
            for (int b = 0; b < GUARD_BYTES; b++)
                if (h[b] != want[b]) {
                    if (first < 0) first = b;
                    last = b, nbad++;
                }
            if (nbad) { /* reported once: the guard is restored */
                failf("guard %s %s overwritten (%d bytes differ; nearest: byte %d %s)",
                      side ? "after" : "before", g->name, nbad,
                      side ? first : GUARD_BYTES - 1 - last,
                      side ? "past the end" : "before the start");
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
    const size_t len = strlen(cs.entry) + strlen(cs.shape) + strlen(what) + 16;
    char *k = malloc(len);
    /* the shape without the kernel a backend picked ("(direct ...)"): backends may differ; the
     * comparison's number in the line tells repeated names (one per slice) apart */
    const char *cut = strstr(cs.shape, "(direct");
    snprintf(k, len, "%s|%.*s|%s|%d", cs.entry,
             cut ? (int)(cut - cs.shape) : (int)strlen(cs.shape), cs.shape, what, cs.ncmp++);
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
static void cmp_scalar(const char *what, double got, double ref)
{
    cmp_dd(what, &got, &ref, 1, NMSE_TOL);
}

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
    int64_t done[FD_SAMPLES];
    for (int s = 0; s < FD_SAMPLES && s < n; s++) {
        int64_t i = imax;
        for (int again = 1; again && s;) { /* distinct samples */
            i = (int64_t)(next_u64() % (uint64_t)n), again = 0;
            for (int t = 0; t < s; t++) again |= done[t] == i;
        }
        done[s] = i;
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

/* C of a gemm (fp32 or 16-bit inputs, a and b holding the values the kernel saw) against the
 * double reference, and its padding beyond n (ldc > n) untouched */
static void check_gemm_c(const float *c, const float *c0, bool ta, bool tb, int m, int n, int k,
                         float alpha, const float *a, int lda, const float *b, int ldb, float beta,
                         int ldc, int pad)
{
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
                    for (int i = 0; i < m; i++) nan_fill(c0 + (int64_t)i * ldc, 4 * (size_t)n);
                float *dc = io_f(c0, nc, "C");
                ok(be->gemm(ta, tb, m, n, k, alpha, in_f(a, na, "A"), lda, in_f(b, nb, "B"), ldb,
                            beta, dc, ldc),
                   "gemm");
                check_gemm_c(down_f(dc, nc), c0, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, ldc, pad);
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
    case PT_ACT_GELU:
        return 0.5 * (1.0 + erf(v / sqrt(2.0))) + v * exp(-0.5 * v * v) / sqrt(2 * M_PI);
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
    if (c->col_offset < 0)
        return be->dropout(x, c->rows, c->cols, c->row_offset, c->p, c->sd, c->stream);
    return be->dropout_cols(x, c->rows, c->cols, c->row_offset, c->col_offset, c->row_width, c->p,
                            c->sd, c->stream);
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
 * maximum: right), where there are rows and columns enough; from 4 rows the last is 30 times
 * larger (up to 90: exp overflows a float unless the max is subtracted first) */
static float *logits_with_ties(int rows, int cols, int32_t *labels)
{
    float *z = rand_f((int64_t)rows * cols, -3, 3);
    for (int r = 0; r < rows; r++) labels[r] = irand(cols);
    if (rows >= 4)
        for (int c = 0; c < cols; c++) z[(int64_t)(rows - 1) * cols + c] *= 30.0f;
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

/* ================================================================== convolution */

static void ref_conv_fwd(const pt_conv2d_desc *d, int rows, const real *x, const real *w,
                         const float *bias, pt_act act, real *y)
{
    const int H = d->H, Ci = d->Cin, Co = d->Cout, k = d->k, s = d->stride, pad = d->pad,
              Ho = d->Ho;
    for (int b = 0; b < rows; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Ho; ox++)
                for (int co = 0; co < Co; co++) {
                    double sum = bias ? bias[co] : 0.0;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            const int iy = oy * s - pad + ky, ix = ox * s - pad + kx;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= H) continue;
                            for (int ci = 0; ci < Ci; ci++)
                                sum += x[(((int64_t)b * H + iy) * H + ix) * Ci + ci] *
                                       w[(((int64_t)co * k + ky) * k + kx) * Ci + ci];
                        }
                    y[(((int64_t)b * Ho + oy) * Ho + ox) * Co + co] = act_d(sum, act);
                }
}

/* dx += d(sum dy * y)/dx, dw += d/dw (either may be NULL) */
static void ref_conv_bwd(const pt_conv2d_desc *d, int rows, const real *x, const real *w,
                         const float *dy, real *dx, real *dw)
{
    const int H = d->H, Ci = d->Cin, Co = d->Cout, k = d->k, s = d->stride, pad = d->pad,
              Ho = d->Ho;
    for (int b = 0; b < rows; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Ho; ox++)
                for (int co = 0; co < Co; co++) {
                    const double g = dy[(((int64_t)b * Ho + oy) * Ho + ox) * Co + co];
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            const int iy = oy * s - pad + ky, ix = ox * s - pad + kx;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= H) continue;
                            for (int ci = 0; ci < Ci; ci++) {
                                const int64_t xi = (((int64_t)b * H + iy) * H + ix) * Ci + ci,
                                              wi = (((int64_t)co * k + ky) * k + kx) * Ci + ci;
                                if (dx) dx[xi] += g * w[wi];
                                if (dw) dw[wi] += g * x[xi];
                            }
                        }
                }
}

typedef struct {
    pt_conv2d_desc d;
    int rows;
    int64_t nx, nw, ny;
    float *x, *w, *wt; /* host inputs; loss weights */
    real *xd, *wd;
    float *x_dev, *w_dev, *y_dev, *scratch;
} conv_ctx;
static double conv_be_loss(void *p)
{
    conv_ctx *c = p;
    up_f(c->x_dev, c->x, c->nx), up_f(c->w_dev, c->w, c->nw);
    be->conv2d_forward(&c->d, c->rows, c->x_dev, c->w_dev, NULL, PT_ACT_NONE, c->y_dev, c->scratch);
    return dot_w(down_f(c->y_dev, c->ny), c->wt, c->ny);
}
static double conv_ref_loss(void *p)
{
    conv_ctx *c = p;
    real *y = HD(c->ny);
    ref_conv_fwd(&c->d, c->rows, c->xd, c->wd, NULL, PT_ACT_NONE, y);
    return dot_wr(y, c->wt, c->ny);
}

static void test_conv(void)
{
    const int have_f = !MISSING(conv2d_forward), have_w = !MISSING(conv2d_backward_weight),
              have_x = !MISSING(conv2d_backward_input), have_s = !MISSING(conv2d_scratch);
    missing((const void *)be->conv2d_uses_direct, "conv2d_uses_direct", 1);
    if (!have_s || !(have_f || have_w || have_x)) return;
    static const int shapes[][7] = {/* H, Cin, Cout, k, stride, pad, rows */
                                    {5, 3, 5, 3, 1, 1, 2},  {7, 2, 8, 3, 2, 1, 2},
                                    {6, 16, 8, 1, 1, 0, 2}, {8, 8, 16, 3, 1, 1, 2},
                                    {8, 1, 3, 5, 2, 0, 2},  {4, 3, 4, 3, 1, 0, 1}};
    for (int s = 0; s < 6; s++)
        for (int algo = 0; algo < 2; algo++) {
            pt_conv2d_desc d = {.H = shapes[s][0], .Cin = shapes[s][1], .Cout = shapes[s][2],
                                .k = shapes[s][3], .stride = shapes[s][4], .pad = shapes[s][5],
                                .algo = algo ? PT_CONV_ALGO_IM2COL : PT_CONV_ALGO_AUTO};
            d.Ho = (d.H + 2 * d.pad - d.k) / d.stride + 1;
            const int rows = shapes[s][6];
            const int64_t nx = (int64_t)rows * d.H * d.H * d.Cin,
                          nw = (int64_t)d.Cout * d.k * d.k * d.Cin,
                          ny = (int64_t)rows * d.Ho * d.Ho * d.Cout;
            char sh[120];
            int n0 = snprintf(sh, sizeof sh, "H%d Cin%d Cout%d k%d s%d p%d Ho%d n%d %s", d.H,
                              d.Cin, d.Cout, d.k, d.stride, d.pad, d.Ho, rows,
                              algo ? "im2col" : "auto");
            if (be->conv2d_uses_direct && !algo)
                snprintf(sh + n0, sizeof sh - (size_t)n0, "(direct %d%d%d)",
                         be->conv2d_uses_direct(&d, 0), be->conv2d_uses_direct(&d, 1),
                         be->conv2d_uses_direct(&d, 2));
            seed(1000 + s);
            float *x = rand_f(nx, -1, 1), *w = rand_f(nw, -0.5f, 0.5f),
                  *bias = rand_f(d.Cout, -0.3f, 0.3f), *dy = rand_f(ny, -1, 1);
            real *xd = to_real(x, nx), *wd = to_real(w, nw);
            const int64_t nscr = be->conv2d_scratch(&d, rows);
            if (nscr < 0) {
                begin("conv2d_scratch", "%s", sh);
                failf("negative scratch %lld", (long long)nscr);
                finish();
                continue;
            }
            float *scratch = out_f(nscr, "scratch");
            const float *dx_dev = in_f(x, nx, "x"), *dw_dev = in_f(w, nw, "w"),
                        *ddy = in_f(dy, ny, "dy");
            conv_ctx c = {d, rows, nx, nw, ny, x, w, dy, xd, wd, out_f(nx, "fd x"),
                          out_f(nw, "fd w"), out_f(ny, "fd y"), scratch};
            if (have_f)
                for (int v = 0; v < (s == 0 ? 2 : 1); v++) {
                    /* bias + ReLU on even shapes, neither on odd ones; shape 0 both */
                    const int with = s == 0 ? v : s % 2 == 0;
                    const pt_act act = with ? PT_ACT_RELU : PT_ACT_NONE;
                    begin("conv2d_forward", "%s %s", sh, with ? "bias relu" : "nobias none");
                    float *y = out_f(ny, "y");
                    ok(be->conv2d_forward(&d, rows, dx_dev, dw_dev,
                                          with ? in_f(bias, d.Cout, "bias") : NULL, act, y,
                                          scratch),
                       "conv2d_forward");
                    real *ref = HD(ny);
                    ref_conv_fwd(&d, rows, xd, wd, with ? bias : NULL, act, ref);
                    cmp("y", down_f(y, ny), ref, ny, NMSE_TOL);
                    finish();
                }
            for (int beta = 0; beta < 2; beta++) {
                float *g0 = rand_f(nx > nw ? nx : nw, -1, 1);
                if (have_w) {
                    begin("conv2d_backward_weight", "%s beta=%d", sh, beta);
                    float *dw = beta ? io_f(g0, nw, "dw") : out_f(nw, "dw");
                    ok(be->conv2d_backward_weight(&d, rows, dx_dev, ddy, (float)beta, dw, scratch),
                       "conv2d_backward_weight");
                    real *ref = HD(nw);
                    for (int64_t i = 0; i < nw; i++) ref[i] = beta ? g0[i] : 0.0;
                    ref_conv_bwd(&d, rows, xd, wd, dy, NULL, ref);
                    const float *got = down_f(dw, nw);
                    cmp("dw", got, ref, nw, NMSE_TOL);
                    if (!beta)
                        fd_check("w", &c, w, wd, nw, got, ref, have_f ? conv_be_loss : NULL,
                                 conv_ref_loss);
                    finish();
                }
                if (have_x) {
                    begin("conv2d_backward_input", "%s beta=%d", sh, beta);
                    float *dx = beta ? io_f(g0, nx, "dx") : out_f(nx, "dx");
                    ok(be->conv2d_backward_input(&d, rows, ddy, dw_dev, (float)beta, dx, scratch),
                       "conv2d_backward_input");
                    real *ref = HD(nx);
                    for (int64_t i = 0; i < nx; i++) ref[i] = beta ? g0[i] : 0.0;
                    ref_conv_bwd(&d, rows, xd, wd, dy, ref, NULL);
                    const float *got = down_f(dx, nx);
                    cmp("dx", got, ref, nx, NMSE_TOL);
                    if (!beta)
                        fd_check("x", &c, x, xd, nx, got, ref, have_f ? conv_be_loss : NULL,
                                 conv_ref_loss);
                    finish();
                }
            }
            release();
        }
}

/* ================================================================== pooling */

/* winner = flat index inside the sample (existing encoding), the first maximum */
static void ref_pool_fwd(const pt_pool2d_desc *d, int rows, const real *x, int is_max, real *y,
                         int32_t *arg)
{
    const int H = d->H, C = d->C, k = d->k, s = d->stride, Ho = d->Ho;
    for (int b = 0; b < rows; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Ho; ox++)
                for (int c = 0; c < C; c++) {
                    double best = -INFINITY, sum = 0.0;
                    int32_t at = -1;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            const int32_t i = ((oy * s + ky) * H + ox * s + kx) * C + c;
                            const double v = x[(int64_t)b * H * H * C + i];
                            sum += v;
                            if (v > best) best = v, at = i;
                        }
                    const int64_t o = (((int64_t)b * Ho + oy) * Ho + ox) * C + c;
                    y[o] = is_max ? best : sum / (k * k);
                    if (arg) arg[o] = at;
                }
}

/* dx += the gradient of sum dy * y; max pooling routes through `arg` (per-sample indices) */
static void ref_pool_bwd(const pt_pool2d_desc *d, int rows, const float *dy, const int32_t *arg,
                         real *dx)
{
    const int H = d->H, C = d->C, k = d->k, s = d->stride, Ho = d->Ho;
    for (int b = 0; b < rows; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Ho; ox++)
                for (int c = 0; c < C; c++) {
                    const int64_t o = (((int64_t)b * Ho + oy) * Ho + ox) * C + c;
                    if (arg) {
                        dx[(int64_t)b * H * H * C + arg[o]] += dy[o];
                        continue;
                    }
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++)
                            dx[(((int64_t)b * H + oy * s + ky) * H + ox * s + kx) * C + c] +=
                                dy[o] / (double)(k * k);
                }
}

typedef struct {
    pt_pool2d_desc d;
    int rows, is_max;
    int64_t nx, ny;
    float *x, *wt;
    real *xd;
    float *x_dev, *y_dev;
    int32_t *arg_dev;
} pool_ctx;
static double pool_be_loss(void *p)
{
    pool_ctx *c = p;
    up_f(c->x_dev, c->x, c->nx);
    if (c->is_max) be->maxpool2d_forward(&c->d, c->rows, c->x_dev, c->y_dev, c->arg_dev);
    else be->avgpool2d_forward(&c->d, c->rows, c->x_dev, c->y_dev);
    return dot_w(down_f(c->y_dev, c->ny), c->wt, c->ny);
}
static double pool_ref_loss(void *p)
{
    pool_ctx *c = p;
    real *y = HD(c->ny);
    ref_pool_fwd(&c->d, c->rows, c->xd, c->is_max, y, NULL);
    return dot_wr(y, c->wt, c->ny);
}

static void test_pool(void)
{
    static const int shapes[][6] = {/* H, C, k, stride, rows, ties */
                                    {5, 3, 2, 2, 2, 0}, {7, 1, 3, 2, 2, 0}, {4, 5, 1, 1, 2, 0},
                                    {6, 17, 3, 3, 1, 0}, {4, 2, 2, 2, 2, 1}, {5, 3, 3, 1, 2, 1}};
    for (int is_max = 1; is_max >= 0; is_max--) {
        const int have_f = is_max ? !MISSING(maxpool2d_forward) : !MISSING(avgpool2d_forward);
        const int have_b = is_max ? !MISSING(maxpool2d_backward) : !MISSING(avgpool2d_backward);
        if (!have_f) continue; /* the backward needs the forward's argmax (and FD its values) */
        for (int s = 0; s < 6; s++) {
            pt_pool2d_desc d = {.H = shapes[s][0], .C = shapes[s][1], .k = shapes[s][2],
                                .stride = shapes[s][3]};
            d.Ho = (d.H - d.k) / d.stride + 1;
            const int rows = shapes[s][4], ties = shapes[s][5];
            const int64_t nx = (int64_t)rows * d.H * d.H * d.C,
                          ny = (int64_t)rows * d.Ho * d.Ho * d.C;
            char sh[100];
            snprintf(sh, sizeof sh, "H%d C%d k%d s%d Ho%d n%d%s", d.H, d.C, d.k, d.stride, d.Ho,
                     rows, ties ? " ties" : "");
            seed(1100 + s);
            float *x = ties ? rand_f(nx, 0, 1) : distinct_f(nx, -0.3f);
            if (ties) /* three levels: many windows with a tied maximum */
                for (int64_t i = 0; i < nx; i++) x[i] = floorf(x[i] * 3.0f) - 1.0f;
            float *dy = rand_f(ny, -1, 1);
            real *xd = to_real(x, nx);
            begin(is_max ? "maxpool2d_forward" : "avgpool2d_forward", "%s", sh);
            const float *dxin = in_f(x, nx, "x");
            float *y = out_f(ny, "y");
            int32_t *arg = is_max ? galloc(sizeof(int32_t) * (size_t)ny, "argmax") : NULL;
            ok(is_max ? be->maxpool2d_forward(&d, rows, dxin, y, arg)
                      : be->avgpool2d_forward(&d, rows, dxin, y),
               "pool forward");
            real *yref = HD(ny);
            int32_t *aref = HI(ny);
            ref_pool_fwd(&d, rows, xd, is_max, yref, aref);
            cmp("y", down_f(y, ny), yref, ny, NMSE_TOL);
            const int32_t *arg_be = NULL;
            if (is_max) {
                arg_be = down_i(arg, ny);
                cmp_exact_i("argmax (first maximum, index in the sample)", arg_be, aref, ny);
                snap(arg);
            }
            finish();
            if (!have_b) {
                release();
                continue;
            }
            pool_ctx c = {d, rows, is_max, nx, ny, x, dy, xd, out_f(nx, "fd x"), out_f(ny, "fd y"),
                          is_max ? galloc(sizeof(int32_t) * (size_t)ny, "fd argmax") : NULL};
            const float *ddy = in_f(dy, ny, "dy");
            for (int beta = 0; beta < 2; beta++) {
                begin(is_max ? "maxpool2d_backward" : "avgpool2d_backward", "%s beta=%d", sh, beta);
                float *g0 = rand_f(nx, -1, 1);
                float *dx = beta ? io_f(g0, nx, "dx") : out_f(nx, "dx");
                ok(is_max ? be->maxpool2d_backward(&d, rows, ddy, arg, (float)beta, dx)
                          : be->avgpool2d_backward(&d, rows, ddy, (float)beta, dx),
                   "pool backward");
                real *ref = HD(nx);
                for (int64_t i = 0; i < nx; i++) ref[i] = beta ? g0[i] : 0.0;
                ref_pool_bwd(&d, rows, dy, is_max ? aref : NULL, ref);
                const float *got = down_f(dx, nx);
                cmp("dx", got, ref, nx, NMSE_TOL);
                if (!beta && !ties) /* differences need a unique winner per window */
                    fd_check("x", &c, x, xd, nx, got, ref, pool_be_loss, pool_ref_loss);
                finish();
            }
            release();
        }
    }
}

/* ------------------------------------------------------------------ TextCNN max over time */

static void ref_maxtime_fwd(const pt_maxtime_desc *d, int rows, const real *conv, const real *bias,
                            real *y, int32_t *arg, real *pre)
{
    for (int b = 0; b < rows; b++)
        for (int f = 0; f < d->F; f++) {
            double best = -INFINITY;
            int at = -1;
            for (int t = 0; t + d->k <= d->L; t++) {
                const double v = conv[((int64_t)b * d->L + t) * d->F + f];
                if (v > best) best = v, at = t;
            }
            const double v = best + bias[f];
            if (y) y[(int64_t)b * d->y_width + d->y_col + f] = v > 0 ? v : 0;
            if (arg) arg[(int64_t)b * d->F + f] = at;
            if (pre) pre[(int64_t)b * d->F + f] = v;
        }
}

typedef struct {
    pt_maxtime_desc d;
    int rows;
    int64_t nc, ny;
    float *conv, *bias, *wt;
    real *cd, *bd;
    float *c_dev, *b_dev, *y_dev;
    int32_t *arg_dev;
} maxtime_ctx;
static double maxtime_be_loss(void *p)
{
    maxtime_ctx *c = p;
    up_f(c->c_dev, c->conv, c->nc), up_f(c->b_dev, c->bias, c->d.F);
    be->zero(c->y_dev, sizeof(float) * (size_t)c->ny); /* the columns outside the slice: 0 */
    be->maxtime_forward(&c->d, c->rows, c->c_dev, c->b_dev, c->y_dev, c->arg_dev);
    return dot_w(down_f(c->y_dev, c->ny), c->wt, c->ny);
}
static double maxtime_ref_loss(void *p)
{
    maxtime_ctx *c = p;
    real *y = HD(c->ny);
    for (int64_t i = 0; i < c->ny; i++) y[i] = 0.0;
    ref_maxtime_fwd(&c->d, c->rows, c->cd, c->bd, y, NULL, NULL);
    return dot_wr(y, c->wt, c->ny);
}

static void test_maxtime(void)
{
    const int have_f = !MISSING(maxtime_forward), have_b = !MISSING(maxtime_backward);
    if (!have_f) return;
    static const int shapes[][6] = {/* L, F, k, y_col, y_width, rows */
                                    {7, 3, 3, 2, 9, 2}, {5, 1, 5, 0, 1, 2}, {6, 5, 1, 5, 10, 3},
                                    {4, 2, 2, 0, 2, 1}};
    for (int s = 0; s < 4; s++) {
        const pt_maxtime_desc d = {.L = shapes[s][0], .F = shapes[s][1], .k = shapes[s][2],
                                   .y_col = shapes[s][3], .y_width = shapes[s][4]};
        const int rows = shapes[s][5];
        const int64_t nc = (int64_t)rows * d.L * d.F, ny = (int64_t)rows * d.y_width,
                      na = (int64_t)rows * d.F;
        char sh[100];
        snprintf(sh, sizeof sh, "L%d F%d k%d y_col%d y_width%d n%d", d.L, d.F, d.k, d.y_col,
                 d.y_width, rows);
        seed(1200 + s);
        float *conv = distinct_f(nc, 0.0f), *bias = rand_f(d.F, -0.5f, 0.5f);
        real *cd = to_real(conv, nc);
        /* bias away from the ReLU's kink at every (sample, filter) */
        for (int f = 0; f < d.F; f++)
            for (int tries = 0; tries < 100; tries++) {
                int near = 0;
                for (int b = 0; b < rows; b++) {
                    double best = -INFINITY;
                    for (int t = 0; t + d.k <= d.L; t++)
                        best = fmax(best, conv[((int64_t)b * d.L + t) * d.F + f]);
                    near |= fabs(best + bias[f]) < 0.05;
                }
                if (!near) break;
                bias[f] += 0.031f;
            }
        real *bd = to_real(bias, d.F);
        float *y0 = rand_f(ny, -1, 1); /* columns outside the slice must keep these */
        real *yref = to_real(y0, ny), *pre = HD(na);
        int32_t *aref = HI(na);
        ref_maxtime_fwd(&d, rows, cd, bd, yref, aref, pre);
        begin("maxtime_forward", "%s", sh);
        float *y = io_f(y0, ny, "y");
        int32_t *arg = galloc(sizeof(int32_t) * (size_t)na, "argmax");
        const float *dconv_in = in_f(conv, nc, "conv"), *dbias = in_f(bias, d.F, "bias");
        ok(be->maxtime_forward(&d, rows, dconv_in, dbias, y, arg), "maxtime_forward");
        const float *yb = down_f(y, ny);
        cmp("y", yb, yref, ny, NMSE_TOL);
        int64_t outside = 0;
        for (int b = 0; b < rows; b++)
            for (int j = 0; j < d.y_width; j++)
                if ((j < d.y_col || j >= d.y_col + d.F) &&
                    memcmp(&yb[(int64_t)b * d.y_width + j], &y0[(int64_t)b * d.y_width + j], 4))
                    outside++;
        if (outside) failf("%lld elements of y outside columns [y_col, y_col + F) written",
                           (long long)outside);
        cmp_exact_i("argmax (start position, first maximum)", down_i(arg, na), aref, na);
        snap(arg);
        finish();
        if (!have_b) {
            release();
            continue;
        }
        begin("maxtime_backward", "%s", sh);
        /* dy carries the ReLU's derivative already: the loss weights masked where pre <= 0 */
        float *wt = rand_f(ny, -1, 1), *dy = HF(ny);
        for (int64_t i = 0; i < ny; i++) dy[i] = wt[i];
        for (int b = 0; b < rows; b++)
            for (int f = 0; f < d.F; f++)
                if (pre[(int64_t)b * d.F + f] <= 0) dy[(int64_t)b * d.y_width + d.y_col + f] = 0;
        float *dc = out_f(nc, "dconv"), *db = out_f(d.F, "db");
        ok(be->maxtime_backward(&d, rows, in_f(dy, ny, "dy"), arg, dc, db), "maxtime_backward");
        real *dcref = HD(nc), *dbref = HD(d.F);
        for (int b = 0; b < rows; b++)
            for (int f = 0; f < d.F; f++) {
                const double g = dy[(int64_t)b * d.y_width + d.y_col + f];
                dcref[((int64_t)b * d.L + aref[(int64_t)b * d.F + f]) * d.F + f] = g;
                dbref[f] += g;
            }
        const float *dcb = down_f(dc, nc), *dbb = down_f(db, d.F);
        cmp("dconv", dcb, dcref, nc, NMSE_TOL);
        cmp("db", dbb, dbref, d.F, NMSE_TOL);
        maxtime_ctx c = {d, rows, nc, ny, conv, bias, wt, cd, bd, out_f(nc, "fd conv"),
                         out_f(d.F, "fd bias"), out_f(ny, "fd y"),
                         galloc(sizeof(int32_t) * (size_t)na, "fd argmax")};
        fd_check("conv", &c, conv, cd, nc, dcb, dcref, maxtime_be_loss, maxtime_ref_loss);
        fd_check("bias", &c, bias, bd, d.F, dbb, dbref, maxtime_be_loss, maxtime_ref_loss);
        finish();
        release();
    }
}

/* ================================================================== normalization */

/* batch norm in training (sums NULL: eval with running statistics), in double */
static void ref_bn_fwd(const pt_batchnorm_desc *d, int64_t n, const real *x, const real *gamma,
                       const real *beta, const float *rm0, const float *rv0, int train, real *sums,
                       real *rm, real *rv, real *mean, real *rstd, real *y)
{
    const int C = d->C;
    for (int c = 0; c < C; c++) {
        double s0 = 0, s1 = 0, sq = 0, mu, var;
        for (int64_t r = 0; r < n; r++) s0 += x[r * C + c], s1 += x[r * C + c] * x[r * C + c];
        if (train) {
            mu = s0 / n;
            for (int64_t r = 0; r < n; r++) sq += (x[r * C + c] - mu) * (x[r * C + c] - mu);
            var = sq / n; /* biased, for normalizing */
            /* running: unbiased variance; n = 1 keeps the biased one (existing behaviour) */
            if (rm) rm[c] = (1 - d->momentum) * rm0[c] + d->momentum * mu;
            if (rv) rv[c] = (1 - d->momentum) * rv0[c] + d->momentum * (n > 1 ? sq / (n - 1) : var);
        } else {
            mu = rm0[c], var = rv0[c];
        }
        if (sums) sums[c] = s0, sums[C + c] = s1;
        const double rs = 1.0 / sqrt(var + d->eps);
        if (mean) mean[c] = mu, rstd[c] = rs;
        for (int64_t r = 0; r < n; r++) {
            const double v = gamma[c] * (x[r * C + c] - mu) * rs + beta[c];
            y[r * C + c] = d->act == PT_ACT_RELU && v < 0 ? 0 : v;
        }
    }
    if (sums) sums[2 * C] = (double)n;
}

typedef struct {
    pt_batchnorm_desc d;
    int64_t n;
    float *x, *gamma, *beta, *wt;
    real *xd, *gd, *bd;
    float *x_dev, *g_dev, *b_dev, *y_dev, *rm_dev, *rv_dev, *mean_dev, *rstd_dev, *scratch;
    double *sums_dev;
} bn_ctx;
static double bn_be_loss(void *p)
{
    bn_ctx *c = p;
    const int64_t N = c->n * c->d.C;
    up_f(c->x_dev, c->x, N), up_f(c->g_dev, c->gamma, c->d.C), up_f(c->b_dev, c->beta, c->d.C);
    be->batchnorm_stats(&c->d, c->n, c->x_dev, c->sums_dev, c->scratch);
    be->batchnorm_forward_apply(&c->d, c->n, c->x_dev, c->sums_dev, c->g_dev, c->b_dev, c->rm_dev,
                                c->rv_dev, c->mean_dev, c->rstd_dev, c->y_dev);
    return dot_w(down_f(c->y_dev, N), c->wt, N);
}
static double bn_ref_loss(void *p)
{
    bn_ctx *c = p;
    const int64_t N = c->n * c->d.C;
    real *y = HD(N);
    float *zeros = HF(c->d.C);
    ref_bn_fwd(&c->d, c->n, c->xd, c->gd, c->bd, zeros, zeros, 1, NULL, NULL, NULL, NULL, NULL, y);
    return dot_wr(y, c->wt, N);
}

static void test_batchnorm(void)
{
    const int h_sc = !MISSING(batchnorm_scratch), h_st = !MISSING(batchnorm_stats),
              h_fa = !MISSING(batchnorm_forward_apply), h_bs = !MISSING(batchnorm_backward_stats),
              h_ba = !MISSING(batchnorm_backward_apply);
    if (!h_sc || !h_st || !h_fa) return; /* every later step needs these */
    static const int shapes[][3] = {{18, 5, 1}, {1, 3, 0}, {40, 16, 1}, {7, 1, 0}}; /* n, C, relu */
    for (int s = 0; s < 4; s++)
        for (int relu = 0; relu <= shapes[s][2]; relu++) {
            const int64_t n = shapes[s][0];
            const int C = shapes[s][1];
            const int64_t N = n * C;
            const pt_batchnorm_desc d = {.C = C, .momentum = 0.1f, .eps = 1e-5f,
                                         .act = relu ? PT_ACT_RELU : PT_ACT_NONE};
            char sh[80];
            snprintf(sh, sizeof sh, "n%lld C%d act=%s", (long long)n, C, relu ? "relu" : "none");
            seed(1300 + s);
            float *x = rand_f(N, -1, 2), *gamma = rand_f(C, 0.5f, 1.5f),
                  *beta = rand_f(C, -0.5f, 0.5f), *rm0 = rand_f(C, -0.2f, 0.2f),
                  *rv0 = rand_f(C, 0.5f, 1.5f), *wt = rand_f(N, -1, 1);
            real *xd = to_real(x, N), *gd = to_real(gamma, C), *bd = to_real(beta, C);
            real *sums = HD(2 * C + 1), *rm = HD(C), *rv = HD(C), *mean = HD(C), *rstd = HD(C),
                 *y = HD(N);
            ref_bn_fwd(&d, n, xd, gd, bd, rm0, rv0, 1, sums, rm, rv, mean, rstd, y);
            const int64_t nscr = be->batchnorm_scratch(&d);
            float *scratch = out_f(nscr > 0 ? nscr : 0, "scratch");
            const float *dx_in = in_f(x, N, "x"), *dg = in_f(gamma, C, "gamma"),
                        *db = in_f(beta, C, "beta");
            double *dsums = galloc(sizeof(double) * (size_t)(2 * C + 1), "sums");
            begin("batchnorm_stats", "%s", sh);
            ok(be->batchnorm_stats(&d, n, dx_in, dsums, scratch), "batchnorm_stats");
            const double *sb = down_d(dsums, 2 * C + 1);
            cmp_dd("sum x", sb, sums, C, NMSE_TOL);
            cmp_dd("sum x^2", sb + C, sums + C, C, NMSE_TOL);
            if (sb[2 * C] != (double)n) failf("count %g, not %lld", sb[2 * C], (long long)n);
            snap(dsums);
            finish();
            begin("batchnorm_forward_apply", "%s train", sh);
            float *drm = io_f(rm0, C, "running_mean"), *drv = io_f(rv0, C, "running_var");
            float *dmean = out_f(C, "mean"), *drstd = out_f(C, "rstd"), *dy_out = out_f(N, "y");
            ok(be->batchnorm_forward_apply(&d, n, dx_in, dsums, dg, db, drm, drv, dmean, drstd,
                                           dy_out),
               "batchnorm_forward_apply");
            cmp("y", down_f(dy_out, N), y, N, NMSE_TOL);
            cmp("mean", down_f(dmean, C), mean, C, NMSE_TOL);
            cmp("rstd", down_f(drstd, C), rstd, C, NMSE_TOL);
            cmp("running_mean", down_f(drm, C), rm, C, NMSE_TOL);
            cmp("running_var", down_f(drv, C), rv, C, NMSE_TOL);
            snap(dmean), snap(drstd);
            finish();
            begin("batchnorm_forward_apply", "%s eval", sh);
            {
                float *erm = in_f(rm0, C, "running_mean"), *erv = in_f(rv0, C, "running_var");
                float *em = out_f(C, "mean"), *er = out_f(C, "rstd"), *ey = out_f(N, "y");
                ok(be->batchnorm_forward_apply(&d, n, dx_in, NULL, dg, db, erm, erv, em, er, ey),
                   "batchnorm_forward_apply (eval)");
                real *y2 = HD(N), *m2 = HD(C), *r2 = HD(C);
                ref_bn_fwd(&d, n, xd, gd, bd, rm0, rv0, 0, NULL, NULL, NULL, m2, r2, y2);
                cmp("y", down_f(ey, N), y2, N, NMSE_TOL);
                cmp("mean", down_f(em, C), m2, C, NMSE_TOL);
                cmp("rstd", down_f(er, C), r2, C, NMSE_TOL);
            }
            finish();
            if (!h_bs || !h_ba) {
                release();
                continue;
            }
            /* backward: dy (with the ReLU's derivative already in it: here, just weights) */
            real *bsums = HD(2 * C + 1), *dgref = HD(C), *dbref = HD(C), *dxref = HD(N);
            for (int c = 0; c < C; c++) {
                double s0 = 0, s1 = 0;
                for (int64_t r = 0; r < n; r++) {
                    const double xh = (xd[r * C + c] - mean[c]) * rstd[c];
                    s0 += wt[r * C + c], s1 += wt[r * C + c] * xh;
                }
                bsums[c] = dbref[c] = s0, bsums[C + c] = dgref[c] = s1;
                for (int64_t r = 0; r < n; r++) {
                    const double xh = (xd[r * C + c] - mean[c]) * rstd[c];
                    dxref[r * C + c] = gd[c] * rstd[c] * (wt[r * C + c] - s0 / n - xh * s1 / n);
                }
            }
            bsums[2 * C] = (double)n;
            begin("batchnorm_backward_stats", "%s", sh);
            const float *ddy = in_f(wt, N, "dy");
            double *dbs = galloc(sizeof(double) * (size_t)(2 * C + 1), "sums");
            float *ddg = out_f(C, "dgamma"), *ddb = out_f(C, "dbeta");
            ok(be->batchnorm_backward_stats(&d, n, ddy, dx_in, dmean, drstd, dbs, ddg, ddb,
                                            scratch),
               "batchnorm_backward_stats");
            const double *bsb = down_d(dbs, 2 * C + 1);
            cmp_dd("sum dy", bsb, bsums, C, NMSE_TOL);
            cmp_dd("sum dy xhat", bsb + C, bsums + C, C, NMSE_TOL);
            if (bsb[2 * C] != (double)n) failf("count %g, not %lld", bsb[2 * C], (long long)n);
            const float *dgb = down_f(ddg, C), *dbb = down_f(ddb, C);
            cmp("dgamma", dgb, dgref, C, NMSE_TOL);
            cmp("dbeta", dbb, dbref, C, NMSE_TOL);
            bn_ctx c = {d, n, x, gamma, beta, wt, xd, gd, bd, out_f(N, "fd x"), out_f(C, "fd g"),
                        out_f(C, "fd b"), out_f(N, "fd y"), out_f(C, "fd rm"), out_f(C, "fd rv"),
                        out_f(C, "fd mean"), out_f(C, "fd rstd"), scratch,
                        galloc(sizeof(double) * (size_t)(2 * C + 1), "fd sums")};
            c.d.act = PT_ACT_NONE; /* the differences go through the normalization only */
            if (!relu) {
                fd_check("gamma", &c, gamma, gd, C, dgb, dgref, bn_be_loss, bn_ref_loss);
                fd_check("beta", &c, beta, bd, C, dbb, dbref, bn_be_loss, bn_ref_loss);
            }
            snap(dbs);
            finish();
            for (int bx = 0; bx < 2; bx++) {
                begin("batchnorm_backward_apply", "%s beta_x=%d", sh, bx);
                float *g0 = rand_f(N, -1, 1);
                float *ddx = bx ? io_f(g0, N, "dx") : out_f(N, "dx");
                ok(be->batchnorm_backward_apply(&d, n, ddy, dx_in, dg, dmean, drstd, dbs, (float)bx,
                                                ddx),
                   "batchnorm_backward_apply");
                real *ref = HD(N);
                for (int64_t i = 0; i < N; i++) ref[i] = dxref[i] + (bx ? g0[i] : 0.0);
                const float *got = down_f(ddx, N);
                cmp("dx", got, ref, N, NMSE_TOL);
                if (!bx && !relu)
                    fd_check("x", &c, x, xd, N, got, dxref, bn_be_loss, bn_ref_loss);
                finish();
            }
            release();
        }
}

static void ref_ln_fwd(const pt_layernorm_desc *d, int64_t n, const real *x, const real *g,
                       const real *b, real *y, real *stat)
{
    const int D = d->D;
    for (int64_t r = 0; r < n; r++) {
        double mu = 0, var = 0;
        for (int i = 0; i < D; i++) mu += x[r * D + i];
        mu /= D;
        for (int i = 0; i < D; i++) var += (x[r * D + i] - mu) * (x[r * D + i] - mu);
        const double rs = 1.0 / sqrt(var / D + d->eps);
        for (int i = 0; i < D; i++) y[r * D + i] = (x[r * D + i] - mu) * rs * g[i] + b[i];
        if (stat) stat[2 * r] = mu, stat[2 * r + 1] = rs;
    }
}

typedef struct {
    pt_layernorm_desc d;
    int64_t n;
    float *x, *g, *b, *wt;
    real *xd, *gd, *bd;
    float *x_dev, *g_dev, *b_dev, *y_dev, *stat_dev;
} ln_ctx;
static double ln_be_loss(void *p)
{
    ln_ctx *c = p;
    const int64_t N = c->n * c->d.D;
    up_f(c->x_dev, c->x, N), up_f(c->g_dev, c->g, c->d.D), up_f(c->b_dev, c->b, c->d.D);
    be->layernorm_forward(&c->d, c->n, c->x_dev, c->g_dev, c->b_dev, c->y_dev, c->stat_dev);
    return dot_w(down_f(c->y_dev, N), c->wt, N);
}
static double ln_ref_loss(void *p)
{
    ln_ctx *c = p;
    const int64_t N = c->n * c->d.D;
    real *y = HD(N);
    ref_ln_fwd(&c->d, c->n, c->xd, c->gd, c->bd, y, NULL);
    return dot_wr(y, c->wt, N);
}

static void test_layernorm(void)
{
    const int have_f = !MISSING(layernorm_forward), have_b = !MISSING(layernorm_backward);
    if (!have_f) return;
    static const int shapes[][2] = {{3, 7}, {1, 33}, {5, 16}, {2, 1}, {64, 48}}; /* n, D */
    for (int s = 0; s < 5; s++) {
        const int64_t n = shapes[s][0];
        const int D = shapes[s][1];
        const int64_t N = n * D;
        const pt_layernorm_desc d = {.D = D, .eps = 1e-5f};
        seed(1400 + s);
        float *x = rand_f(N, -1, 2), *g = rand_f(D, 0.5f, 1.5f), *b = rand_f(D, -0.5f, 0.5f),
              *wt = rand_f(N, -1, 1);
        real *xd = to_real(x, N), *gd = to_real(g, D), *bd = to_real(b, D), *y = HD(N),
             *stat = HD(2 * n);
        ref_ln_fwd(&d, n, xd, gd, bd, y, stat);
        begin("layernorm_forward", "n%lld D%d", (long long)n, D);
        const float *dx_in = in_f(x, N, "x"), *dg = in_f(g, D, "gamma"), *db = in_f(b, D, "beta");
        float *dy_out = out_f(N, "y"), *dstat = out_f(2 * n, "stat");
        ok(be->layernorm_forward(&d, n, dx_in, dg, db, dy_out, dstat), "layernorm_forward");
        cmp("y", down_f(dy_out, N), y, N, NMSE_TOL);
        cmp("stat (mean, rstd per row)", down_f(dstat, 2 * n), stat, 2 * n, NMSE_TOL);
        snap(dstat);
        finish();
        if (!have_b) {
            release();
            continue;
        }
        real *dxref = HD(N), *dgref = HD(D), *dbref = HD(D);
        for (int64_t r = 0; r < n; r++) {
            const double mu = stat[2 * r], rs = stat[2 * r + 1];
            double mg = 0, mgx = 0;
            for (int i = 0; i < D; i++) {
                const double xh = (xd[r * D + i] - mu) * rs, gi = wt[r * D + i] * gd[i];
                mg += gi, mgx += gi * xh;
                dgref[i] += wt[r * D + i] * xh, dbref[i] += wt[r * D + i];
            }
            mg /= D, mgx /= D;
            for (int i = 0; i < D; i++) {
                const double xh = (xd[r * D + i] - mu) * rs;
                dxref[r * D + i] = rs * (wt[r * D + i] * gd[i] - mg - xh * mgx);
            }
        }
        const float *ddy = in_f(wt, N, "dy");
        ln_ctx c = {d, n, x, g, b, wt, xd, gd, bd, out_f(N, "fd x"), out_f(D, "fd g"),
                    out_f(D, "fd b"), out_f(N, "fd y"), out_f(2 * n, "fd stat")};
        for (int v = 0; v < 3; v++) { /* beta_x 0, beta_x 1, dx NULL */
            begin("layernorm_backward", "n%lld D%d %s", (long long)n, D,
                  v == 0 ? "beta_x=0" : v == 1 ? "beta_x=1" : "dx=NULL");
            float *g0 = rand_f(N, -1, 1);
            float *ddx = v == 0 ? out_f(N, "dx") : v == 1 ? io_f(g0, N, "dx") : NULL;
            float *ddg = out_f(D, "dgamma"), *ddb = out_f(D, "dbeta");
            ok(be->layernorm_backward(&d, n, dx_in, ddy, dg, dstat, ddg, ddb, (float)(v == 1), ddx),
               "layernorm_backward");
            const float *dgb = down_f(ddg, D), *dbb = down_f(ddb, D);
            cmp("dgamma", dgb, dgref, D, NMSE_TOL);
            cmp("dbeta", dbb, dbref, D, NMSE_TOL);
            if (ddx) {
                real *ref = HD(N);
                for (int64_t i = 0; i < N; i++) ref[i] = dxref[i] + (v == 1 ? g0[i] : 0.0);
                const float *got = down_f(ddx, N);
                cmp("dx", got, ref, N, NMSE_TOL);
                if (v == 0) fd_check("x", &c, x, xd, N, got, dxref, ln_be_loss, ln_ref_loss);
            }
            if (v == 0) {
                fd_check("gamma", &c, g, gd, D, dgb, dgref, ln_be_loss, ln_ref_loss);
                fd_check("beta", &c, b, bd, D, dbb, dbref, ln_be_loss, ln_ref_loss);
            }
            finish();
        }
        release();
    }
}

/* ================================================================== embedding and attention */

static int emb_row(const pt_embedding_desc *d, const float *tokens, int b, int t)
{
    const int v = (int)tokens[(int64_t)b * d->stride + t];
    if (!d->Vl) return v;
    return v >= d->v0 && v < d->v0 + d->Vl ? v - d->v0 : -1;
}

static void ref_emb_fwd(const pt_embedding_desc *d, int rows, const float *tokens, const real *wte,
                        const real *wpe, real *y)
{
    for (int b = 0; b < rows; b++)
        for (int t = 0; t < d->T; t++) {
            const int v = emb_row(d, tokens, b, t);
            for (int i = 0; i < d->D; i++)
                y[((int64_t)b * d->T + t) * d->D + i] =
                    (v >= 0 ? wte[(int64_t)v * d->D + i] : 0.0) +
                    (wpe ? wpe[(int64_t)t * d->D + i] : 0.0);
        }
}

typedef struct {
    pt_embedding_desc d;
    int rows, with_wpe, table;
    int64_t ne, np, ny;
    const float *tok_dev;
    const float *tokens;
    float *wte, *wpe, *wt;
    real *ed, *pd;
    float *e_dev, *p_dev, *y_dev;
} emb_ctx;
static double emb_be_loss(void *p)
{
    emb_ctx *c = p;
    up_f(c->e_dev, c->wte, c->ne), up_f(c->p_dev, c->wpe, c->np);
    be->embedding_forward(&c->d, c->rows, c->tok_dev, c->e_dev, c->table ? c->p_dev : NULL,
                          c->y_dev);
    return dot_w(down_f(c->y_dev, c->ny), c->wt, c->ny);
}
static double emb_ref_loss(void *p)
{
    emb_ctx *c = p;
    real *y = HD(c->ny);
    ref_emb_fwd(&c->d, c->rows, c->tokens, c->ed, c->with_wpe ? c->pd : NULL, y);
    return dot_wr(y, c->wt, c->ny);
}

static void test_embedding(void)
{
    const int have_f = !MISSING(embedding_forward), have_b = !MISSING(embedding_backward);
    if (!have_f) return;
    static const int shapes[][9] = {/* T, D, V, stride, v0, Vl, no_wpe, rows, wpe table */
                                    {5, 7, 11, 6, 0, 0, 0, 3, 1},  {1, 16, 4, 1, 0, 0, 0, 2, 0},
                                    {6, 5, 13, 7, 4, 5, 0, 3, 1},  {6, 5, 13, 7, 9, 4, 1, 3, 1},
                                    {3, 33, 2, 4, 0, 0, 0, 4, 1}};
    for (int s = 0; s < 5; s++) {
        const pt_embedding_desc d = {.T = shapes[s][0], .D = shapes[s][1], .V = shapes[s][2],
                                     .stride = shapes[s][3], .v0 = shapes[s][4],
                                     .Vl = shapes[s][5], .no_wpe = shapes[s][6]};
        const int rows = shapes[s][7], table = shapes[s][8];
        /* no_wpe with a table: the caller (ops_seq.c) passes wpe and the entry skips it */
        const int with_wpe = table && !d.no_wpe;
        const int64_t ne = (int64_t)(d.Vl ? d.Vl : d.V) * d.D, np = (int64_t)d.T * d.D,
                      ny = (int64_t)rows * d.T * d.D, nt = (int64_t)rows * d.stride;
        char sh[120];
        snprintf(sh, sizeof sh, "T%d D%d V%d stride%d v0=%d Vl=%d no_wpe=%d n%d%s", d.T, d.D, d.V,
                 d.stride, d.v0, d.Vl, d.no_wpe, rows, table ? "" : " wpe=NULL");
        seed(1500 + s);
        float *tokens = HF(nt);
        for (int64_t i = 0; i < nt; i++) tokens[i] = (float)irand(d.V); /* repeats: collisions */
        float *wte = rand_f(ne, -1, 1), *wpe = rand_f(np, -1, 1), *wt = rand_f(ny, -1, 1);
        real *ed = to_real(wte, ne), *pd = to_real(wpe, np), *y = HD(ny);
        ref_emb_fwd(&d, rows, tokens, ed, with_wpe ? pd : NULL, y);
        begin("embedding_forward", "%s", sh);
        const float *dtok = in_f(tokens, nt, "tokens"), *dwte_in = in_f(wte, ne, "wte"),
                    *dwpe_in = in_f(wpe, np, "wpe");
        float *dy_out = out_f(ny, "y");
        ok(be->embedding_forward(&d, rows, dtok, dwte_in, table ? dwpe_in : NULL, dy_out),
           "embedding_forward");
        cmp("y", down_f(dy_out, ny), y, ny, NMSE_TOL);
        finish();
        if (!have_b) {
            release();
            continue;
        }
        real *deref = HD(ne), *dpref = HD(np);
        for (int b = 0; b < rows; b++)
            for (int t = 0; t < d.T; t++) {
                const int v = emb_row(&d, tokens, b, t);
                for (int i = 0; i < d.D; i++) {
                    const double g = wt[((int64_t)b * d.T + t) * d.D + i];
                    if (v >= 0) deref[(int64_t)v * d.D + i] += g;
                    dpref[(int64_t)t * d.D + i] += g;
                }
            }
        const float *ddy = in_f(wt, ny, "dy");
        emb_ctx c = {d, rows, with_wpe, table, ne, np, ny, dtok, tokens, wte, wpe, wt, ed, pd,
                     out_f(ne, "fd wte"), out_f(np, "fd wpe"), out_f(ny, "fd y")};
        for (int beta = 0; beta < 2; beta++) {
            begin("embedding_backward", "%s beta=%d", sh, beta);
            float *g0 = rand_f(ne, -1, 1);
            float *dwte = beta ? io_f(g0, ne, "dwte") : out_f(ne, "dwte");
            float *dwpe = table ? out_f(np, "dwpe") : NULL; /* overwritten, with no_wpe too */
            ok(be->embedding_backward(&d, rows, dtok, ddy, (float)beta, dwte, dwpe),
               "embedding_backward");
            real *ref = HD(ne);
            for (int64_t i = 0; i < ne; i++) ref[i] = deref[i] + (beta ? g0[i] : 0.0);
            const float *got = down_f(dwte, ne);
            cmp("dwte", got, ref, ne, NMSE_TOL);
            const float *gp = dwpe ? down_f(dwpe, np) : NULL;
            if (gp) cmp("dwpe", gp, dpref, np, NMSE_TOL);
            if (!beta) {
                fd_check("wte", &c, wte, ed, ne, got, deref, emb_be_loss, emb_ref_loss);
                if (with_wpe)
                    fd_check("wpe", &c, wpe, pd, np, gp, dpref, emb_be_loss, emb_ref_loss);
            }
            finish();
        }
        release();
    }
}

/* causal attention in double: y, lse; and with dy the gradient into dqkv (added) */
static void ref_attn(const pt_attention_desc *d, int rows, const real *qkv, real *y, real *lse,
                     const float *dy, real *dqkv)
{
    const int T = d->T, D = d->D, H = d->H, dh = D / H;
    const double sc = 1.0 / sqrt((double)dh);
    double *p = malloc(sizeof(double) * (size_t)T), *dp = malloc(sizeof(double) * (size_t)T);
    for (int b = 0; b < rows; b++)
        for (int h = 0; h < H; h++) {
            const real *base = qkv + (int64_t)b * T * 3 * D + h * dh;
            for (int i = 0; i < T; i++) {
                const real *q = base + (int64_t)i * 3 * D;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    double s = 0;
                    for (int c = 0; c < dh; c++) s += q[c] * base[(int64_t)j * 3 * D + D + c];
                    p[j] = s * sc;
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (int j = 0; j <= i; j++) sum += exp(p[j] - mx);
                for (int j = 0; j <= i; j++) p[j] = exp(p[j] - mx) / sum;
                if (lse) lse[((int64_t)b * H + h) * T + i] = mx + log(sum);
                if (y)
                    for (int c = 0; c < dh; c++) {
                        double o = 0;
                        for (int j = 0; j <= i; j++)
                            o += p[j] * base[(int64_t)j * 3 * D + 2 * D + c];
                        y[((int64_t)b * T + i) * D + h * dh + c] = o;
                    }
                if (!dy) continue;
                const float *g = dy + ((int64_t)b * T + i) * D + h * dh;
                real *dbase = dqkv + (int64_t)b * T * 3 * D + h * dh;
                double pdp = 0;
                for (int j = 0; j <= i; j++) {
                    double s = 0;
                    for (int c = 0; c < dh; c++) s += g[c] * base[(int64_t)j * 3 * D + 2 * D + c];
                    dp[j] = s, pdp += p[j] * s;
                }
                for (int j = 0; j <= i; j++) {
                    const double ds = p[j] * (dp[j] - pdp) * sc;
                    for (int c = 0; c < dh; c++) {
                        dbase[(int64_t)i * 3 * D + c] += ds * base[(int64_t)j * 3 * D + D + c];
                        dbase[(int64_t)j * 3 * D + D + c] += ds * q[c];
                        dbase[(int64_t)j * 3 * D + 2 * D + c] += p[j] * g[c];
                    }
                }
            }
        }
    free(p), free(dp);
}

typedef struct {
    pt_attention_desc d;
    int rows;
    int64_t nq, ny, nl;
    float *qkv, *wt;
    real *qd;
    float *q_dev, *y_dev, *l_dev;
} attn_ctx;
static double attn_be_loss(void *p)
{
    attn_ctx *c = p;
    up_f(c->q_dev, c->qkv, c->nq);
    be->attention_forward(&c->d, c->rows, c->q_dev, c->y_dev, c->l_dev);
    return dot_w(down_f(c->y_dev, c->ny), c->wt, c->ny);
}
static double attn_ref_loss(void *p)
{
    attn_ctx *c = p;
    real *y = HD(c->ny);
    ref_attn(&c->d, c->rows, c->qd, y, NULL, NULL, NULL);
    return dot_wr(y, c->wt, c->ny);
}

static void attention_cases(const int (*shapes)[4], int nshapes, int seed0)
{
    const int have_f = !MISSING(attention_forward), have_b = !MISSING(attention_backward);
    if (!have_f) return;
    for (int s = 0; s < nshapes; s++) {
        const pt_attention_desc d = {.T = shapes[s][0], .D = shapes[s][1], .H = shapes[s][2]};
        const int rows = shapes[s][3];
        const int64_t nq = (int64_t)rows * d.T * 3 * d.D, ny = (int64_t)rows * d.T * d.D,
                      nl = (int64_t)rows * d.H * d.T;
        char sh[80];
        snprintf(sh, sizeof sh, "T%d D%d H%d n%d", d.T, d.D, d.H, rows);
        seed(seed0 + s);
        float *qkv = rand_f(nq, -1.5f, 1.5f), *wt = rand_f(ny, -1, 1);
        real *qd = to_real(qkv, nq), *y = HD(ny), *lse = HD(nl);
        ref_attn(&d, rows, qd, y, lse, NULL, NULL);
        begin("attention_forward", "%s", sh);
        const float *dq_in = in_f(qkv, nq, "qkv");
        float *dy_out = out_f(ny, "y"), *dl = out_f(nl, "lse");
        ok(be->attention_forward(&d, rows, dq_in, dy_out, dl), "attention_forward");
        cmp("y", down_f(dy_out, ny), y, ny, NMSE_TOL);
        cmp("lse", down_f(dl, nl), lse, nl, NMSE_TOL);
        snap(dy_out), snap(dl);
        finish();
        if (!have_b) {
            release();
            continue;
        }
        real *dref = HD(nq);
        ref_attn(&d, rows, qd, NULL, NULL, wt, dref);
        const float *ddy = in_f(wt, ny, "dy");
        attn_ctx c = {d, rows, nq, ny, nl, qkv, wt, qd, out_f(nq, "fd qkv"), out_f(ny, "fd y"),
                      out_f(nl, "fd lse")};
        for (int beta = 0; beta < 2; beta++) {
            begin("attention_backward", "%s beta=%d", sh, beta);
            float *g0 = rand_f(nq, -1, 1);
            float *dq = beta ? io_f(g0, nq, "dqkv") : out_f(nq, "dqkv");
            ok(be->attention_backward(&d, rows, dq_in, dy_out, ddy, dl, (float)beta, dq),
               "attention_backward");
            real *ref = HD(nq);
            for (int64_t i = 0; i < nq; i++) ref[i] = dref[i] + (beta ? g0[i] : 0.0);
            const float *got = down_f(dq, nq);
            cmp("dqkv", got, ref, nq, NMSE_TOL);
            if (!beta) fd_check("qkv", &c, qkv, qd, nq, got, dref, attn_be_loss, attn_ref_loss);
            finish();
        }
        release();
    }
}

static void test_attention(void)
{
    static const int shapes[][4] = {{1, 4, 2, 2}, {5, 6, 2, 2}, {7, 8, 1, 2}, {3, 12, 3, 1},
                                    {17, 16, 2, 1}}; /* T, D, H, rows */
    attention_cases(shapes, 5, 1600);
}

/* ---- issue 20: the tiled attention's paths (blocks of 32 queries and 32 keys on the CPU):
 * T = 1, T one short of / one past a block and past several, a block wholly below the diagonal
 * and one cut by it, several heads, dh a multiple of the vector width (64, 8) and not (5, 12),
 * and rows whose running max a later key block raises (most rows of the longer T). */
static void test_attention_tiled(void)
{
    static const int shapes[][4] = {{1, 128, 2, 3}, {31, 16, 2, 1}, {33, 128, 2, 1},
                                    {65, 20, 4, 2},  {100, 36, 3, 1}, {129, 64, 1, 1},
                                    {70, 64, 8, 1}}; /* T, D, H, rows */
    attention_cases(shapes, 7, 2600);
}

/* ================================================================== language-model loss */

static void test_lm_targets(void)
{
    if (MISSING(lm_targets)) return;
    /* rows, T, stride */
    static const int shapes[][3] = {{3, 5, 6}, {1, 1, 2}, {2, 4, 8}, {17, 9, 10}};
    for (int s = 0; s < 4; s++) {
        const int rows = shapes[s][0], T = shapes[s][1], stride = shapes[s][2];
        begin("lm_targets", "n%d T%d stride%d", rows, T, stride);
        seed(1700 + s);
        float *tok = HF((int64_t)rows * stride);
        for (int64_t i = 0; i < (int64_t)rows * stride; i++) tok[i] = (float)irand(50257);
        int32_t *ref = HI((int64_t)rows * T), *tgt = galloc(4 * (size_t)rows * T, "tgt");
        for (int r = 0; r < rows; r++)
            for (int t = 0; t < T; t++) ref[r * T + t] = (int32_t)tok[(int64_t)r * stride + t + 1];
        ok(be->lm_targets(in_f(tok, (int64_t)rows * stride, "tokens"), rows, T, stride, tgt),
           "lm_targets");
        cmp_exact_i("tgt", down_i(tgt, (int64_t)rows * T), ref, (int64_t)rows * T);
        finish();
        release();
    }
}

/* The vocabulary-parallel cross-entropy over `ns` slices of a V-wide row, the allreduces between
 * the three steps done here on the host (MAX, then SUM and MIN). */
typedef struct {
    int rows, V, ns;
    const int *width;
    float scale;
    float *z; /* rows x V, host */
    real *zd;
    const int32_t *y, *y_dev;
    float *z_dev[4], *g_dev[4];
    double *stat_dev[4];
} vp_ctx;

static void vp_slice_up(vp_ctx *c, int s, int64_t v0)
{
    float *h = HF((int64_t)c->rows * c->width[s]);
    for (int r = 0; r < c->rows; r++)
        memcpy(h + (int64_t)r * c->width[s], c->z + (int64_t)r * c->V + v0,
               4 * (size_t)c->width[s]);
    up_f(c->z_dev[s], h, (int64_t)c->rows * c->width[s]);
}

/* Runs the three steps; returns the loss of slice 0 and each slice's in loss_s/correct_s. */
static double vp_run(vp_ctx *c, int with_grad, double *loss_s, int64_t *correct_s,
                     double **stat_after_max, double **stat_after_sums)
{
    const int rows = c->rows;
    double *gstat = HD(4 * (int64_t)rows);
    for (int r = 0; r < rows; r++) gstat[r] = -INFINITY, gstat[3 * rows + r] = INFINITY;
    for (int r = rows; r < 3 * rows; r++) gstat[r] = 0.0;
    int64_t v0 = 0;
    for (int s = 0; s < c->ns; v0 += c->width[s], s++) {
        vp_slice_up(c, s, v0);
        be->vp_xent_max(c->z_dev[s], rows, c->width[s], c->stat_dev[s]);
        double *st = down_d(c->stat_dev[s], rows);
        if (stat_after_max) stat_after_max[s] = st;
        for (int r = 0; r < rows; r++) gstat[r] = fmax(gstat[r], st[r]);
    }
    v0 = 0;
    for (int s = 0; s < c->ns; v0 += c->width[s], s++) {
        be->to_device(c->stat_dev[s], gstat, sizeof(double) * (size_t)rows);
        be->vp_xent_sums(c->z_dev[s], c->y_dev, rows, c->width[s], v0, c->stat_dev[s]);
        double *st = down_d(c->stat_dev[s], 4 * (int64_t)rows);
        if (stat_after_sums) stat_after_sums[s] = st;
        for (int r = rows; r < 3 * rows; r++) gstat[r] += st[r];
        for (int r = 3 * rows; r < 4 * rows; r++) gstat[r] = fmin(gstat[r], st[r]);
    }
    v0 = 0;
    double loss0 = 0.0;
    for (int s = 0; s < c->ns; v0 += c->width[s], s++) {
        be->to_device(c->stat_dev[s], gstat, sizeof(double) * 4 * (size_t)rows);
        int64_t correct = -1;
        const double l = be->vp_xent_finish(c->z_dev[s], c->y_dev, rows, c->width[s], v0,
                                            c->stat_dev[s], c->scale,
                                            with_grad ? c->g_dev[s] : NULL, &correct);
        if (!s) loss0 = l;
        if (loss_s) loss_s[s] = l, correct_s[s] = correct;
    }
    return loss0;
}
static double vp_be_loss(void *p)
{
    return vp_run(p, 0, NULL, NULL, NULL, NULL) * ((vp_ctx *)p)->scale;
}
static double vp_ref_loss(void *p)
{
    vp_ctx *c = p;
    return ref_xent_d(c->zd, c->y, c->rows, c->V) * c->scale;
}

static void test_vp_xent(void)
{
    const int h1 = !MISSING(vp_xent_max), h2 = !MISSING(vp_xent_sums),
              h3 = !MISSING(vp_xent_finish);
    if (!h1 || !h2 || !h3) return; /* the steps only make sense together */
    static const int splits[][5] = {/* rows, slice widths (0 ends) */
                                    {5, 4, 3, 3, 0}, {1, 7, 0, 0, 0}, {4, 1, 6, 6, 0},
                                    {6, 16, 11, 13, 0}};
    for (int s = 0; s < 4; s++) {
        const int rows = splits[s][0];
        int ns = 0, V = 0;
        while (ns < 4 && splits[s][1 + ns]) V += splits[s][1 + ns], ns++;
        const int *width = &splits[s][1];
        char sh[80];
        int n0 = snprintf(sh, sizeof sh, "n%d V%d slices", rows, V);
        for (int k = 0; k < ns; k++)
            n0 += snprintf(sh + n0, sizeof sh - (size_t)n0, " %d", width[k]);
        seed(1800 + s);
        int32_t *y = HI(rows);
        float *z = logits_with_ties(rows, V, y);
        if (V >= 30 && rows >= 3) { /* a tie across slices: global 17 (slice 1) and 30 (slice 2) */
            z[2 * V + 17] = z[2 * V + 30] = 3.7f, y[2] = 30;
        }
        const float scale = 1.0f / (float)rows;
        real *dref = HD((int64_t)rows * V);
        int64_t cref;
        const double lref = ref_xent(z, y, rows, V, scale, dref, &cref);
        vp_ctx c = {rows, V, ns, width, scale, z, to_real(z, (int64_t)rows * V), y,
                    in_i(y, rows, "labels"), {0}, {0}, {0}};
        for (int k = 0; k < ns; k++) {
            c.z_dev[k] = out_f((int64_t)rows * width[k], "logits slice");
            c.g_dev[k] = out_f((int64_t)rows * width[k], "dlogits slice");
            c.stat_dev[k] = galloc(sizeof(double) * 4 * (size_t)rows, "stat");
        }
        double *after_max[4], *after_sums[4], loss_s[4];
        int64_t correct_s[4];
        vp_run(&c, 1, loss_s, correct_s, after_max, after_sums);
        /* the global statistics, from the full rows */
        double *gmax = HD(rows);
        for (int r = 0; r < rows; r++) {
            gmax[r] = -INFINITY;
            for (int v = 0; v < V; v++) gmax[r] = fmax(gmax[r], z[(int64_t)r * V + v]);
        }
        begin("vp_xent_max", "%s", sh);
        int64_t v0 = 0;
        for (int k = 0; k < ns; v0 += width[k], k++) {
            real *ref = HD(rows);
            for (int r = 0; r < rows; r++) {
                ref[r] = -INFINITY;
                for (int v = 0; v < width[k]; v++)
                    ref[r] = fmax(ref[r], z[(int64_t)r * V + v0 + v]);
            }
            cmp_dd("local max", after_max[k], ref, rows, NMSE_TOL);
        }
        finish();
        begin("vp_xent_sums", "%s", sh);
        v0 = 0;
        for (int k = 0; k < ns; v0 += width[k], k++) {
            real *pairs = HD(2 * rows);
            double *am = HD(rows);
            for (int r = 0; r < rows; r++) {
                double sum = 0;
                am[r] = INFINITY;
                for (int v = 0; v < width[k]; v++) {
                    const double zz = z[(int64_t)r * V + v0 + v];
                    sum += exp(zz - gmax[r]);
                    if (zz == gmax[r] && am[r] == INFINITY) am[r] = (double)(v0 + v);
                }
                const int64_t yl = y[r] - v0;
                pairs[2 * r] = sum;
                pairs[2 * r + 1] =
                    yl >= 0 && yl < width[k] ? z[(int64_t)r * V + y[r]] - gmax[r] : 0;
            }
            cmp_dd("(sum exp, target) pairs", after_sums[k] + rows, pairs, 2 * rows, NMSE_TOL);
            int64_t bad = 0;
            for (int r = 0; r < rows; r++) bad += after_sums[k][3 * rows + r] != am[r];
            if (bad)
                failf("slice %d: lowest index of the max differs in %lld rows", k, (long long)bad);
        }
        finish();
        begin("vp_xent_finish", "%s", sh);
        v0 = 0;
        for (int k = 0; k < ns; v0 += width[k], k++) {
            cmp_scalar("loss", loss_s[k], lref);
            if (correct_s[k] != cref)
                failf("slice %d: correct %lld, reference %lld", k, (long long)correct_s[k],
                      (long long)cref);
            const float *g = down_f(c.g_dev[k], (int64_t)rows * width[k]);
            real *ref = HD((int64_t)rows * width[k]);
            for (int r = 0; r < rows; r++)
                for (int v = 0; v < width[k]; v++)
                    ref[(int64_t)r * width[k] + v] = dref[(int64_t)r * V + v0 + v];
            cmp("dlogits", g, ref, (int64_t)rows * width[k], NMSE_TOL);
        }
        /* differences of the whole three-step loss against the gathered gradient */
        float *gfull = HF((int64_t)rows * V);
        v0 = 0;
        for (int k = 0; k < ns; v0 += width[k], k++) {
            const float *g = down_f(c.g_dev[k], (int64_t)rows * width[k]);
            for (int r = 0; r < rows; r++)
                memcpy(gfull + (int64_t)r * V + v0, g + (int64_t)r * width[k],
                       4 * (size_t)width[k]);
        }
        fd_check("logits", &c, z, c.zd, (int64_t)rows * V, gfull, dref, vp_be_loss, vp_ref_loss);
        finish();
        release();
    }
}

/* ================================================================== low precision (issue 17) */

/* The 16-bit formats from their definitions, independent of the kernels under test: bf16 is the
 * top half of an fp32 (rounded to nearest even); fp16 is 1-5-10 with bias 15 and subnormals,
 * rounded by the compiler's _Float16 conversion (IEEE round to nearest even). */
static float ref_bf16_to_f32(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint16_t ref_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float ref_f16_to_f32(uint16_t h)
{
    const int sgn = h >> 15, e = (h >> 10) & 31, mant = h & 1023;
    double v;
    if (e == 31) v = mant ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)mant, -24);
    else v = ldexp(1024.0 + mant, e - 25);
    return (float)(sgn ? -v : v);
}
#ifdef __FLT16_MAX__
static uint16_t ref_f32_to_f16(float f)
{
    const _Float16 h = (_Float16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}
#endif
static float ref_to_f32(pt_dtype t, uint16_t h) { return t == PT_BF16 ? ref_bf16_to_f32(h) : ref_f16_to_f32(h); }
static uint16_t ref_from_f32(pt_dtype t, float f)
{
#ifdef __FLT16_MAX__
    if (t == PT_F16) return ref_f32_to_f16(f);
#endif
    return ref_f32_to_bf16(f);
}

static uint16_t *in_u16(const uint16_t *h, int64_t n, const char *name)
{
    uint16_t *d = galloc(sizeof(uint16_t) * (size_t)n, name);
    be->to_device(d, h, sizeof(uint16_t) * (size_t)n);
    snap(d);
    return d;
}

/* lowp_from_f32 and lowp_round: bit for bit against the reference rounding (any NaN for a NaN),
 * on random values and the edges: signed zeros, subnormals, fp16's largest finite value and the
 * first that rounds to Inf, fp32's largest (bf16: Inf), Inf and NaN. */
static void test_lowp_convert(pt_dtype t)
{
    const char *tn = t == PT_BF16 ? "bf16" : "fp16";
    static const float edge[] = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 65519.0f, 65520.0f, 1e5f,
                                 5.96e-8f, 3e-8f, 1e-40f, 3.4028235e38f, INFINITY, -INFINITY, NAN,
                                 1.00390625f, 1.01171875f, 0.33333334f};
    const int64_t ne = (int64_t)(sizeof edge / sizeof *edge);
    static const int64_t sizes[] = {1, 17, 1000, 70001};
    for (int si = 0; si < 8; si++) { /* each size twice: lowp_from_f32, then lowp_round */
        const int64_t n = sizes[si / 2];
        seed(900 + si / 2); /* the same inputs for both (release() frees the host arena) */
        float *x = rand_f(n, -4, 4);
        for (int64_t i = 0; i < n && i < ne; i++) x[i] = edge[i];
        if (n > 500) for (int64_t i = ne; i < n; i += 7) x[i] *= 30000.0f; /* fp16 overflows */
        int64_t bad = 0, first = -1;
        if (si % 2) goto round;
        begin("lowp_from_f32", "%s n=%lld", tn, (long long)n);
        uint16_t *d16 = galloc(sizeof(uint16_t) * (size_t)n, "dst16");
        ok(be->lowp_from_f32(t, d16, in_f(x, n, "src"), n), "lowp_from_f32");
        uint16_t *h16 = hmem(sizeof(uint16_t) * (size_t)n);
        be->to_host(h16, d16, sizeof(uint16_t) * (size_t)n);
        for (int64_t i = 0; i < n; i++) {
            const uint16_t want = ref_from_f32(t, x[i]);
            const bool same = isnan(x[i]) ? isnan(ref_to_f32(t, h16[i])) : h16[i] == want;
            if (!same && !bad++) first = i;
        }
        if (bad)
            failf("%lld of %lld differ from round-to-nearest-even (first at %lld: %.9g -> 0x%04x, "
                  "reference 0x%04x)", (long long)bad, (long long)n, (long long)first, x[first],
                  h16[first], ref_from_f32(t, x[first]));
        finish();
        release();
        continue;
    round:
        begin("lowp_round", "%s n=%lld (out of place, then in place)", tn, (long long)n);
        float *got = out_f(n, "dst");
        ok(be->lowp_round(t, got, in_f(x, n, "src"), n), "lowp_round");
        float *inplace = io_f(x, n, "x");
        ok(be->lowp_round(t, inplace, inplace, n), "lowp_round in place");
        const float *g1 = down_f(got, n), *g2 = down_f(inplace, n);
        bad = 0;
        for (int64_t i = 0; i < n; i++) {
            const float want = ref_to_f32(t, ref_from_f32(t, x[i]));
            const bool same = isnan(want) ? isnan(g1[i]) && isnan(g2[i])
                                          : !memcmp(&g1[i], &want, 4) && !memcmp(&g2[i], &want, 4);
            if (!same && !bad++) first = i;
        }
        if (bad)
            failf("%lld of %lld differ from the rounded value (first at %lld: %.9g -> %.9g / %.9g)",
                  (long long)bad, (long long)n, (long long)first, x[first], g1[first], g2[first]);
        finish();
        release();
    }
}

/* lowp_flush_count (PT_LOWP_STATS): exact counts on values above, at and below each dtype's
 * smallest normal (fp16 2^-14, bf16 2^-126) and smallest subnormal (fp16 2^-24, bf16 2^-133),
 * the ties that round to 0 (2^-25, 2^-134), zeros (not counted), Inf and fp16's overflow; once
 * as 17 elements, once tiled 4000 times (the OpenMP reduction over threads). dst16 is the
 * reference rounding of src. */
static void test_lowp_flush_count(pt_dtype t)
{
    const char *tn = t == PT_BF16 ? "bf16" : "fp16";
    static const float pat[] = {0.0f, -0.0f, 1.0f, -0x1p-14f, 0x1p-15f, 0x1p-24f, 0x1p-25f,
                                -0x1p-26f, 0x1.8p-25f, 1e-10f, 0x1p-126f, -0x1p-127f, 0x1p-133f,
                                0x1p-134f, 0x1p-149f, INFINITY, 65520.0f};
    const int64_t np = (int64_t)(sizeof pat / sizeof *pat);
    /* nonzero, flushed to zero, subnormal in one pattern */
    const int64_t want1[3] = {15, t == PT_F16 ? 8 : 2, t == PT_F16 ? 3 : 2};
    static const int64_t reps[] = {1, 4000};
    for (int r = 0; r < 2; r++) {
        const int64_t n = np * reps[r];
        begin("lowp_flush_count", "%s n=%lld", tn, (long long)n);
        float *x = hmem(sizeof(float) * (size_t)n);
        uint16_t *h16 = hmem(sizeof(uint16_t) * (size_t)n);
        for (int64_t i = 0; i < n; i++) x[i] = pat[i % np], h16[i] = ref_from_f32(t, x[i]);
        int64_t c[3] = {-1, -1, -1};
        ok(be->lowp_flush_count(t, in_f(x, n, "src"), in_u16(h16, n, "dst16"), n, c),
           "lowp_flush_count");
        static const char *what[3] = {"nonzero", "flushed", "subnormal"};
        for (int k = 0; k < 3; k++)
            if (c[k] != want1[k] * reps[r])
                failf("%s %lld, want %lld", what[k], (long long)c[k],
                      (long long)(want1[k] * reps[r]));
        finish();
        release();
    }
}

/* lowp_gemm against the double reference on the 16-bit inputs' exact values (their products
 * are exact in fp32 and the sums accumulate in fp32, so NMSE_TOL holds as for gemm), every
 * transpose, alpha and beta, padded leading dimensions; on the CPU, on every kernel variant
 * lowp.h can run here (the others SKIP with its reason; fallback always runs). */
static void test_lowp_gemm_one(pt_dtype t, const char *variant)
{
    const char *tn = t == PT_BF16 ? "bf16" : "fp16";
    static const int shapes[][4] = {{1, 1, 1, 0}, {3, 5, 7, 0}, {17, 9, 33, 3}, {32, 48, 64, 0},
                                    {1, 65, 2, 1}, {33, 1, 17, 2}, {70, 130, 96, 5}};
    for (int s = 0; s < 7; s++)
        for (int tt = 0; tt < 4; tt++)
            for (int ab = 0; ab < 2; ab++) {
                const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2], pad = shapes[s][3];
                const bool ta = tt & 1, tb = tt & 2;
                const float alpha = ab ? 0.5f : 1.0f, beta = ab ? 1.0f : 0.0f;
                const int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
                const int64_t na = (int64_t)(ta ? k : m) * lda, nb = (int64_t)(tb ? n : k) * ldb,
                              nc = (int64_t)m * ldc;
                begin("lowp_gemm", "%s %s %dx%dx%d ta=%d tb=%d a=%g b=%g ld+%d", tn, variant, m,
                      n, k, ta, tb, alpha, beta, pad);
                seed(1200 + s * 8 + tt * 2 + ab);
                float *a = rand_f(na, -1, 1), *b = rand_f(nb, -1, 1);
                uint16_t *a16 = hmem(2 * (size_t)na), *b16 = hmem(2 * (size_t)nb);
                for (int64_t i = 0; i < na; i++) a16[i] = ref_from_f32(t, a[i]), a[i] = ref_to_f32(t, a16[i]);
                for (int64_t i = 0; i < nb; i++) b16[i] = ref_from_f32(t, b[i]), b[i] = ref_to_f32(t, b16[i]);
                float *c0 = rand_f(nc, -1, 1);
                if (!beta)
                    for (int i = 0; i < m; i++) nan_fill(c0 + (int64_t)i * ldc, 4 * (size_t)n);
                float *dc = io_f(c0, nc, "C");
                ok(be->lowp_gemm(t, ta, tb, m, n, k, alpha, in_u16(a16, na, "A"), lda,
                                 in_u16(b16, nb, "B"), ldb, beta, dc, ldc),
                   "lowp_gemm");
                check_gemm_c(down_f(dc, nc), c0, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, ldc, pad);
                finish();
                release();
            }
}

/* one(t, variant) on every lowp GEMM variant the CPU backend can run (the others print
 * SKIP-part with lowp.h's reason; the fallback always runs), then auto again; another backend
 * has its own kernels: one pass, variant "-". */
static void for_each_lowp_variant(pt_dtype t, const char *what, void (*one)(pt_dtype, const char *))
{
    static const char *variants[] = {"fallback", "sbgemm", "avx2", "avx512bf16", "amx", "avx512fp16"};
    if (be != cpu_be) {
        one(t, "-");
        return;
    }
    for (int v = 0; v < 6; v++) {
        if (pt_lowp_gemm_select(t, variants[v]) != PT_OK) {
            printf("SKIP-part: %s %s %s: %s\n", what, t == PT_BF16 ? "bf16" : "fp16", variants[v],
                   pt_error_message());
            continue;
        }
        one(t, variants[v]);
    }
    pt_lowp_gemm_select(t, NULL);
}

static void test_lowp(void)
{
    const int opt = 1; /* OPTIONAL: a backend without them runs fp32 only */
    if (missing((const void *)be->lowp_gemm, "lowp_gemm", opt) +
        missing((const void *)be->lowp_from_f32, "lowp_from_f32", opt) +
        missing((const void *)be->lowp_round, "lowp_round", opt))
        return;
#ifndef __FLT16_MAX__
    printf("SKIP-part: fp16 low precision: this compiler has no _Float16 for the reference\n");
#endif
    static const pt_dtype types[] = {PT_BF16, PT_F16};
    for (int ti = 0; ti < 2; ti++) {
        const pt_dtype t = types[ti];
#ifndef __FLT16_MAX__
        if (t == PT_F16) continue;
#endif
        test_lowp_convert(t);
        if (!missing((const void *)be->lowp_flush_count, "lowp_flush_count", opt))
            test_lowp_flush_count(t);
        for_each_lowp_variant(t, "lowp_gemm", test_lowp_gemm_one);
    }
}

/* conv2d_lowp_* (issue 17): the 16-bit convolution against the double convolution of the
 * 16-bit values (x and dy rounded by the reference rounding, W and dy handed over in 16 bits):
 * every product is exact in fp32 and the sums accumulate in fp32, so NMSE_TOL holds as for the
 * fp32 conv2d; a wrong rounding of x (truncation: NMSE ~1e-5), a wrong column index or a
 * dropped chunk fails it. Shapes: the cnn's 5x5 pad 2 layers (Cin 1, the first), the resnet's
 * 3x3 s1 p1, 3x3 s2 p1 and 1x1 s2 p0, tails of the 12 x 32 micro-kernel and odd k*k*Cin, and a
 * layer whose column matrix spans several chunks (kernels/cpu/conv_lowp.c LOWP_COL: 8M elements,
 * 2 samples of 48 x 48 x 64 at 5x5 per chunk, a last chunk of 1). On the CPU on every lowp variant this CPU can run, as
 * test_lowp's gemm (the others SKIP-part with lowp.h's reason; fallback always runs). */
static void test_conv_lowp_one(pt_dtype t, const char *variant)
{
    const char *tn = t == PT_BF16 ? "bf16" : "fp16";
    static const int shapes[][7] = {/* H, Cin, Cout, k, stride, pad, rows */
                                    {28, 1, 8, 5, 1, 2, 2},  {14, 8, 16, 5, 1, 2, 2},
                                    {7, 3, 5, 3, 1, 1, 3},   {9, 4, 6, 3, 2, 1, 2},
                                    {8, 5, 7, 1, 2, 0, 2},   {5, 17, 33, 3, 1, 0, 1},
                                    {48, 64, 3, 5, 1, 2, 3}};
    for (int s = 0; s < 7; s++) {
        pt_conv2d_desc d = {.H = shapes[s][0], .Cin = shapes[s][1], .Cout = shapes[s][2],
                            .k = shapes[s][3], .stride = shapes[s][4], .pad = shapes[s][5]};
        d.Ho = (d.H + 2 * d.pad - d.k) / d.stride + 1;
        const int rows = shapes[s][6];
        const int64_t nx = (int64_t)rows * d.H * d.H * d.Cin, nw = (int64_t)d.Cout * d.k * d.k * d.Cin,
                      ny = (int64_t)rows * d.Ho * d.Ho * d.Cout;
        char sh[120];
        snprintf(sh, sizeof sh, "%s %s H%d Cin%d Cout%d k%d s%d p%d n%d", tn, variant, d.H, d.Cin,
                 d.Cout, d.k, d.stride, d.pad, rows);
        seed(1400 + s);
        float *x = rand_f(nx, -1, 1), *w = rand_f(nw, -0.5f, 0.5f),
              *bias = rand_f(d.Cout, -0.3f, 0.3f), *dy = rand_f(ny, -1, 1);
        uint16_t *w16 = hmem(2 * (size_t)nw), *dy16 = hmem(2 * (size_t)ny);
        real *xd = HD(nx), *wd = HD(nw);
        float *dyr = HF(ny);
        for (int64_t i = 0; i < nx; i++) xd[i] = ref_to_f32(t, ref_from_f32(t, x[i]));
        for (int64_t i = 0; i < nw; i++) w16[i] = ref_from_f32(t, w[i]), wd[i] = ref_to_f32(t, w16[i]);
        for (int64_t i = 0; i < ny; i++) dy16[i] = ref_from_f32(t, dy[i]), dyr[i] = ref_to_f32(t, dy16[i]);
        const int64_t nscr = be->conv2d_lowp_scratch(t, &d, rows);
        if (nscr < 0) {
            begin("conv2d_lowp_scratch", "%s", sh);
            failf("negative scratch %lld", (long long)nscr);
            finish();
            release();
            continue;
        }
        float *scratch = out_f(nscr, "scratch");
        const float *x_dev = in_f(x, nx, "x");
        const uint16_t *w_dev = in_u16(w16, nw, "w16"), *dy_dev = in_u16(dy16, ny, "dy16");
        const int with = s % 2 == 0; /* bias + ReLU on even shapes */
        const pt_act act = with ? PT_ACT_RELU : PT_ACT_NONE;
        begin("conv2d_lowp_forward", "%s %s", sh, with ? "bias relu" : "nobias none");
        float *y = out_f(ny, "y");
        ok(be->conv2d_lowp_forward(t, &d, rows, x_dev, w_dev, with ? in_f(bias, d.Cout, "bias") : NULL,
                                   act, y, scratch),
           "conv2d_lowp_forward");
        real *ref = HD(ny);
        ref_conv_fwd(&d, rows, xd, wd, with ? bias : NULL, act, ref);
        cmp("y", down_f(y, ny), ref, ny, NMSE_TOL);
        finish();
        for (int beta = 0; beta < 2; beta++) {
            float *g0 = rand_f(nx > nw ? nx : nw, -1, 1);
            begin("conv2d_lowp_backward_weight", "%s beta=%d", sh, beta);
            float *dw = beta ? io_f(g0, nw, "dw") : out_f(nw, "dw");
            ok(be->conv2d_lowp_backward_weight(t, &d, rows, x_dev, dy_dev, (float)beta, dw, scratch),
               "conv2d_lowp_backward_weight");
            real *rw = HD(nw);
            for (int64_t i = 0; i < nw; i++) rw[i] = beta ? g0[i] : 0.0;
            ref_conv_bwd(&d, rows, xd, wd, dyr, NULL, rw);
            cmp("dw", down_f(dw, nw), rw, nw, NMSE_TOL);
            finish();
            begin("conv2d_lowp_backward_input", "%s beta=%d", sh, beta);
            float *dx = beta ? io_f(g0, nx, "dx") : out_f(nx, "dx");
            ok(be->conv2d_lowp_backward_input(t, &d, rows, dy_dev, w_dev, (float)beta, dx, scratch),
               "conv2d_lowp_backward_input");
            real *rx = HD(nx);
            for (int64_t i = 0; i < nx; i++) rx[i] = beta ? g0[i] : 0.0;
            ref_conv_bwd(&d, rows, xd, wd, dyr, rx, NULL);
            cmp("dx", down_f(dx, nx), rx, nx, NMSE_TOL);
            finish();
        }
        release();
    }
}

static void test_conv_lowp(void)
{
    const int opt = 1; /* OPTIONAL: a backend without them runs conv2d in fp32 only */
    if (missing((const void *)be->conv2d_lowp_scratch, "conv2d_lowp_scratch", opt) +
        missing((const void *)be->conv2d_lowp_forward, "conv2d_lowp_forward", opt) +
        missing((const void *)be->conv2d_lowp_backward_weight, "conv2d_lowp_backward_weight", opt) +
        missing((const void *)be->conv2d_lowp_backward_input, "conv2d_lowp_backward_input", opt))
        return;
#ifndef __FLT16_MAX__
    printf("SKIP-part: fp16 conv2d_lowp: this compiler has no _Float16 for the reference\n");
#endif
    static const pt_dtype types[] = {PT_BF16, PT_F16};
    for (int ti = 0; ti < 2; ti++) {
        const pt_dtype t = types[ti];
#ifndef __FLT16_MAX__
        if (t == PT_F16) continue;
#endif
        for_each_lowp_variant(t, "conv2d_lowp", test_conv_lowp_one);
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
    {"conv", test_conv},
    {"pool", test_pool},
    {"maxtime", test_maxtime},
    {"batchnorm", test_batchnorm},
    {"layernorm", test_layernorm},
    {"embedding", test_embedding},
    {"attention", test_attention},
    {"attention_tiled", test_attention_tiled}, /* issue 20 */
    {"lm_targets", test_lm_targets},
    {"vp_xent", test_vp_xent},
    {"lowp", test_lowp},
    {"conv_lowp", test_conv_lowp}, /* issue 17 */
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
