/* Low-precision conversions and GEMM (include/paratrain/lowp.h).
 *
 * Conversions: every bf16 and fp16 bit pattern to fp32 (against a value built from its fields in
 * double) and back; fp32 -> 16 bit round-to-nearest-even on ties, their neighbours, subnormals,
 * overflow, NaN and a million random patterns, against an independent reference: the compiler's
 * _Float16 cast for fp16 (libgcc's soft-fp here), and for bf16 a choice between the two
 * neighbouring bf16 values by their distances in double.
 *
 * GEMM: every variant this machine can run (the others print SKIP-part with the reason), bf16 and
 * fp16, every (trans_a, trans_b), odd sizes (K odd and not a multiple of 16 or 32, M and N past
 * the kernels' tiles, K past their slices), lda/ldb/ldc above the minimum, alpha/beta not 1/0 and
 * beta = 0 over a C full of NaN (which must not be read), a guard of 256 bytes before and after C
 * and the columns between n and ldc untouched. The reference is double precision on the same
 * rounded 16-bit inputs: products of 16-bit values are exact in fp32, so only fp32 accumulation
 * error remains, bounded by
 *     |c - ref| <= (k + 4) * 2^-24 * (|alpha| sum_p |a_ip b_pj| + |beta c0_ij|)
 * (recursive summation of k exact products, one rounding each, plus alpha, beta and the K-slice
 * updates). Separately, the difference to fp32 inputs before rounding is bounded by the rounding
 * of the two factors, (2u + u^2) sum |a||b| with u = 2^-8 (bf16) or 2^-11 (fp16), and reported.
 * The packed kernels must give the same bits with 1 and 2 threads.
 *
 * Built a second time as t_lowp_emu (-DLOWP_EMU): the GEMM checks on the AMX and AVX512-BF16
 * kernels (bf16) and on the avx512fp16 variant's 12 x 32 build of lowp_blocked.c (fp16), compiled
 * against scalar stand-ins of their intrinsics (tests/lowp_isa_emu.h), so that their packing,
 * tiling and edges are checked on CPUs without the instructions too. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/cpu/lowp_kernels.h"
#include "paratrain/lowp.h"
#include "testutil.h"

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* xorshift64*, fixed seed: the test is the same every run */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd32(void)
{
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}
static double rnd_unit(void) { return (rnd32() >> 8) * (1.0 / 16777216.0); } /* [0, 1) */

/* ------------------------------------------------------------------ conversion references */

/* the value of a 16-bit float with e_bits exponent and m_bits mantissa bits, from its fields */
static double field_value(uint16_t h, int e_bits, int m_bits)
{
    const int s = h >> 15, e = (h >> m_bits) & ((1 << e_bits) - 1), mt = h & ((1 << m_bits) - 1);
    const int bias = (1 << (e_bits - 1)) - 1;
    double v;
    if (e == (1 << e_bits) - 1) v = mt ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)mt, 1 - bias - m_bits);
    else v = ldexp(1.0 + ldexp((double)mt, -m_bits), e - bias);
    return s ? -v : v;
}

/* fp32 -> bf16 by distances: the bf16 values below and above |f| (truncation and the next one),
 * whichever is nearer in double, the even one on a tie; past the largest bf16 the upper neighbour
 * is 2^128 (Inf) */
static uint16_t ref_bf16(float f)
{
    if (isnan(f)) return 0x7fc0;
    const uint32_t sign = f2u(f) & 0x80000000u;
    const uint32_t lo = f2u(fabsf(f)) & 0xffff0000u;
    if (isinf(f)) return (uint16_t)((sign | 0x7f800000u) >> 16);
    const double x = fabs((double)f), vlo = (double)u2f(lo);
    const double vhi = lo == 0x7f7f0000u ? ldexp(1.0, 128) : (double)u2f(lo + 0x10000u);
    const double dlo = x - vlo, dhi = vhi - x;
    uint32_t r = lo;
    if (dhi < dlo || (dhi == dlo && (lo & 0x10000u))) r = lo + 0x10000u;
    return (uint16_t)((sign | r) >> 16);
}

static uint16_t ref_f16(float f)
{
    _Float16 h = (_Float16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

static bool is_nan16(pt_dtype t, uint16_t h)
{
    return t == PT_BF16 ? (h & 0x7f80) == 0x7f80 && (h & 0x7f) : (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
}

/* The bulk conversions under test: the public entries (which dispatch to the widest ISA object
 * the CPU runs), then each ISA object's own (main). Single values go through the public entries
 * (scalar: the vector objects finish their tails with half.h too). */
typedef void (*from_fn)(pt_dtype, uint16_t *, const float *, int64_t);
typedef void (*to_fn)(pt_dtype, float *, const uint16_t *, int64_t);
static from_fn cvt_from = pt_lowp_from_f32;
static to_fn cvt_to = pt_lowp_to_f32;
typedef void (*round_fn)(pt_dtype, float *, int64_t);
static round_fn cvt_round = pt_lowp_round_f32;
static const char *cvt_name = "dispatch";

__attribute__((unused)) static void test_to_f32(pt_dtype t)
{
    static uint16_t h[65536], back[65536];
    static float f[65536];
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    cvt_to(t, f, h, 65536);
    cvt_from(t, back, f, 65536);
    int bad_val = 0, bad_trip = 0;
    for (int i = 0; i < 65536; i++) {
        const double v = t == PT_BF16 ? field_value(h[i], 8, 7) : field_value(h[i], 5, 10);
        const bool ok_val = isnan(v) ? isnan(f[i]) : (double)f[i] == v && !signbit(f[i]) == !signbit(v);
        if (!ok_val && bad_val++ < 5)
            fprintf(stderr, "  %s 0x%04x -> %a, expected %a\n", pt_precision_name(t), i, f[i], v);
        /* round trip: exact for every non-NaN (signed zeros, subnormals, Inf); NaN stays NaN */
        const bool ok_trip = is_nan16(t, h[i]) ? is_nan16(t, back[i]) : back[i] == h[i];
        if (!ok_trip && bad_trip++ < 5)
            fprintf(stderr, "  %s 0x%04x -> %a -> 0x%04x\n", pt_precision_name(t), i, f[i], back[i]);
    }
    CHECK(bad_val == 0, "%s -> fp32 (%s): %d of 65536 patterns wrong", pt_precision_name(t), cvt_name, bad_val);
    CHECK(bad_trip == 0, "%s -> fp32 -> %s (%s): %d of 65536 patterns not kept", pt_precision_name(t),
          pt_precision_name(t), cvt_name, bad_trip);
}

/* fp32 inputs that exercise rounding: for every 16-bit value its tie with the next one and the
 * fp32 neighbours of that tie, the value itself; fp32 subnormals; random bit patterns */
static size_t rounding_cases(pt_dtype t, float *x)
{
    size_t n = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        const uint16_t h = (uint16_t)i, h1 = (uint16_t)(i + 1);
        if (is_nan16(t, h)) continue;
        float v, v1;
        pt_lowp_to_f32(t, &v, &h, 1);
        x[n++] = v;
        if (is_nan16(t, h1) || isinf(v) || (h & 0x7fff) == 0x7fff) continue;
        pt_lowp_to_f32(t, &v1, &h1, 1);
        if (isinf(v1)) { /* past the largest finite value: the tie where rounding to Inf begins */
            const double half_ulp = t == PT_BF16 ? ldexp(1.0, 119) : 16.0;
            x[n++] = (float)(signbit(v) ? (double)v - half_ulp : (double)v + half_ulp);
            x[n] = nextafterf(x[n - 1], 0.f), n++;
            continue;
        }
        const float mid = (float)(((double)v + (double)v1) / 2); /* exact: one more bit */
        x[n++] = mid;
        x[n++] = nextafterf(mid, INFINITY);
        x[n++] = nextafterf(mid, -INFINITY);
    }
    for (uint32_t i = 1; i < 4096; i += 7) x[n++] = u2f(i), x[n++] = u2f(0x80000000u | (i << 11));
    x[n++] = INFINITY, x[n++] = -INFINITY, x[n++] = NAN, x[n++] = -NAN, x[n++] = u2f(0x7f800001u);
    x[n++] = 65519.99f, x[n++] = 65520.f, x[n++] = -65520.f, x[n++] = 1e30f, x[n++] = 3.4e38f;
    for (int i = 0; i < 1000000; i++) x[n++] = u2f(rnd32());
    return n;
}

__attribute__((unused)) static void test_from_f32(pt_dtype t)
{
    const size_t cap = 65536 * 4 + 2 * 600 + 16 + 1000000;
    float *x = malloc(cap * sizeof *x), *r = malloc(cap * sizeof *r);
    uint16_t *h = malloc(cap * sizeof *h);
    const size_t n = rounding_cases(t, x);
    cvt_from(t, h, x, (int64_t)n);
    memcpy(r, x, n * sizeof *r);
    cvt_round(t, r, (int64_t)n);
    size_t bad = 0, bad_round = 0;
    for (size_t i = 0; i < n; i++) {
        const uint16_t want = t == PT_BF16 ? ref_bf16(x[i]) : ref_f16(x[i]);
        const bool ok = isnan(x[i]) ? is_nan16(t, h[i]) && (h[i] & (t == PT_BF16 ? 0x40 : 0x200))
                                    : h[i] == want;
        if (!ok && bad++ < 8)
            fprintf(stderr, "  fp32 %a (0x%08x) -> %s 0x%04x, expected 0x%04x\n", x[i], f2u(x[i]),
                    pt_precision_name(t), h[i], want);
        float back;
        pt_lowp_to_f32(t, &back, &h[i], 1);
        if (!(isnan(back) ? isnan(r[i]) : f2u(back) == f2u(r[i]))) bad_round++;
    }
    CHECK(bad == 0, "fp32 -> %s (%s): %zu of %zu inputs rounded wrong", pt_precision_name(t), cvt_name, bad, n);
    CHECK(bad_round == 0, "pt_lowp_round_f32(%s) (%s) differs from to_f32(from_f32) on %zu inputs",
          pt_precision_name(t), cvt_name, bad_round);
    printf("conversions %s (%s): 65536 patterns each way, %zu fp32 inputs rounded (ties, neighbours, "
           "subnormals, overflow, NaN, random)\n", pt_precision_name(t), cvt_name, n);
    free(x), free(r), free(h);
}

/* ------------------------------------------------------------------ GEMM */

#define GUARD 64 /* floats = 256 bytes before and after C */
static const uint32_t SENTINEL = 0x7fc0beefu;

typedef struct {
    int m, n, k;
} shape;

static const shape shapes[] = {
    {1, 1, 1},     {1, 3, 17},     {3, 1, 257},   {17, 17, 17},   {64, 64, 64},  {129, 257, 33},
    {257, 129, 3}, {75, 270, 515}, {100, 530, 299}, {7, 600, 31}, {130, 65, 1},
};

/* random 16-bit values, magnitudes 2^-5 .. 2^4: normal in both formats, products too */
static void fill16(pt_dtype t, uint16_t *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const float v = (float)((2 * rnd_unit() - 1) * ldexp(1.0, (int)(rnd32() % 5) - 1));
        pt_lowp_from_f32(t, &h[i], &v, 1);
    }
}

typedef struct {
    double worst_ratio; /* max |err| / bound over the variant's cases */
    long cases, bad;
} vstat;

/* Runs one variant on one case and checks it; c0: C before (GUARD floats each side). */
static pt_status gemm_v(int v, pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                        const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta, float *c,
                        int ldc);
static const char *runnable[8];

static void check_case(int vi, pt_dtype t, bool ta, bool tb, int m, int n, int k,
                       float alpha, float beta, const uint16_t *a, int lda, const uint16_t *b,
                       int ldb, const float *c0, int ldc, const double *ref, const double *bound,
                       float *c, vstat *st)
{
    const char *var = runnable[vi];
    const size_t csz = (size_t)(m - 1) * ldc + n + 2 * GUARD;
    memcpy(c, c0, csz * sizeof *c);
    pt_status s = gemm_v(vi, t, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c + GUARD, ldc);
    st->cases++;
    if (s != PT_OK) {
        st->bad++;
        CHECK(0, "%s %s: status %s: %s", var, pt_precision_name(t), pt_status_name(s), pt_error_message());
        return;
    }
    int guard_bad = 0, val_bad = 0;
    double worst = 0;
    for (size_t i = 0; i < csz; i++) {
        const long off = (long)i - GUARD;
        const bool inside = off >= 0 && off / ldc < m && off % ldc < n;
        if (!inside) {
            if (f2u(c[i]) != f2u(c0[i])) guard_bad++;
            continue;
        }
        const long r = off / ldc, q = off % ldc;
        const double e = fabs((double)c[i] - ref[r * n + q]);
        const double ratio = e / bound[r * n + q];
        if (!(ratio <= 1.0)) { /* NaN fails too */
            if (val_bad++ < 3)
                fprintf(stderr, "  %s %s ta=%d tb=%d %dx%dx%d C[%ld][%ld] = %.9g, ref %.9g, bound %.3g\n",
                        var, pt_precision_name(t), ta, tb, m, n, k, r, q, c[i], ref[r * n + q],
                        bound[r * n + q]);
        }
        if (ratio > worst || ratio != ratio) worst = ratio;
    }
    if (worst > st->worst_ratio || worst != worst) st->worst_ratio = worst;
    if (guard_bad || val_bad) st->bad++;
    CHECK(guard_bad == 0, "%s %s ta=%d tb=%d %dx%dx%d: %d floats outside C (guards, ldc padding) changed",
          var, pt_precision_name(t), ta, tb, m, n, k, guard_bad);
    CHECK(val_bad == 0, "%s %s ta=%d tb=%d %dx%dx%d alpha=%g beta=%g: %d elements beyond the fp32 "
          "accumulation bound (or NaN/Inf)", var, pt_precision_name(t), ta, tb, m, n, k, alpha, beta, val_bad);
}

static int n_runnable;

#ifdef LOWP_EMU
pt_status pt_lowp_amx_emu(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                          const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta,
                          float *c, int ldc);
pt_status pt_lowp_dpbf16_emu(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                             const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta,
                             float *c, int ldc);
pt_status pt_lowp_blocked_avx512_emu(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                                     const uint16_t *a, int lda, const uint16_t *b, int ldb,
                                     float beta, float *c, int ldc);
#endif

/* variant v of runnable[] */
static pt_status gemm_v(int v, pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                        const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta, float *c,
                        int ldc)
{
#ifdef LOWP_EMU
    if (t == PT_F16) /* the avx512fp16 variant's 12 x 32 geometry */
        return pt_lowp_blocked_avx512_emu(t, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return (v == 0 ? pt_lowp_amx_emu : pt_lowp_dpbf16_emu)(t, ta, tb, m, n, k, alpha, a, lda, b,
                                                            ldb, beta, c, ldc);
#else
    PT_TRY(pt_lowp_gemm_select(t, runnable[v]));
    return pt_lowp_gemm(t, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

static void test_gemm(pt_dtype t)
{
    vstat st[8];
    memset(st, 0, sizeof st);
    for (const shape *sh = shapes; sh < shapes + sizeof shapes / sizeof *shapes; sh++)
        for (int tr = 0; tr < 4; tr++)
            for (int ab = 0; ab < 2; ab++) {
                const bool ta = tr & 1, tb = tr & 2;
                const int m = sh->m, n = sh->n, k = sh->k;
                const float alpha = ab ? 1.0f : 0.75f, beta = ab ? 0.0f : -1.25f;
                /* stored shapes: A is m x k (k x m transposed), B k x n (n x k), padded rows */
                const int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
                const int lda = ac + 5, ldb = bc + 3, ldc = n + 7;
                uint16_t *a = malloc((size_t)ar * lda * 2), *b = malloc((size_t)br * ldb * 2);
                fill16(t, a, (size_t)ar * lda);
                fill16(t, b, (size_t)br * ldb);
                const size_t csz = (size_t)(m - 1) * ldc + n + 2 * GUARD;
                float *c0 = malloc(csz * 4), *c = malloc(csz * 4);
                for (size_t i = 0; i < csz; i++) c0[i] = u2f(SENTINEL);
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++)
                        c0[GUARD + (size_t)i * ldc + j] = beta == 0.f ? NAN : (float)(2 * rnd_unit() - 1);
                /* reference on the same 16-bit inputs, in double */
                double *ref = malloc((size_t)m * n * 8), *bound = malloc((size_t)m * n * 8);
                float *af = malloc((size_t)m * k * 4 + 4), *bf = malloc((size_t)k * n * 4 + 4);
                for (int i = 0; i < m; i++)
                    for (int p = 0; p < k; p++)
                        pt_lowp_to_f32(t, &af[(size_t)i * k + p], ta ? &a[(size_t)p * lda + i] : &a[(size_t)i * lda + p], 1);
                for (int p = 0; p < k; p++)
                    for (int j = 0; j < n; j++)
                        pt_lowp_to_f32(t, &bf[(size_t)p * n + j], tb ? &b[(size_t)j * ldb + p] : &b[(size_t)p * ldb + j], 1);
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) {
                        double s = 0, sa = 0;
                        for (int p = 0; p < k; p++) {
                            const double x = (double)af[(size_t)i * k + p] * bf[(size_t)p * n + j];
                            s += x, sa += fabs(x);
                        }
                        const double cb = beta == 0.f ? 0.0 : (double)beta * c0[GUARD + (size_t)i * ldc + j];
                        ref[(size_t)i * n + j] = alpha * s + cb;
                        bound[(size_t)i * n + j] = (k + 4) * ldexp(1.0, -24) * (fabs(alpha) * sa + fabs(cb)) + 1e-30;
                    }
                for (int v = 0; v < n_runnable; v++) {
                    check_case(v, t, ta, tb, m, n, k, alpha, beta, a, lda, b, ldb, c0, ldc,
                               ref, bound, c, &st[v]);
                }
                free(a), free(b), free(c0), free(c), free(ref), free(bound), free(af), free(bf);
            }
    for (int v = 0; v < n_runnable; v++)
        printf("gemm %-4s %-10s: %ld cases (11 shapes x 4 transposes x 2 alpha/beta), %ld bad, "
               "max |err| / bound %.3f (bound (k+4) 2^-24 sum|a||b|)\n",
               pt_precision_name(t), runnable[v], st[v].cases, st[v].bad, st[v].worst_ratio);
    REQUIRE_OK(pt_lowp_gemm_select(t, "auto"));
}

/* fp32 inputs, rounded to t, against the fp32 GEMM of the unrounded inputs (double reference):
 * the rounding of the factors, at most (2u + u^2) sum |a||b|; and the packed kernels' bits with
 * 1 and 2 threads */
static void test_vs_fp32(pt_dtype t)
{
    const int m = 96, n = 200, k = 784;
    float *a = malloc((size_t)m * k * 4), *b = malloc((size_t)k * n * 4);
    uint16_t *ah = malloc((size_t)m * k * 2), *bh = malloc((size_t)k * n * 2);
    for (int i = 0; i < m * k; i++) a[i] = (float)(2 * rnd_unit() - 1);
    for (int i = 0; i < k * n; i++) b[i] = (float)(2 * rnd_unit() - 1);
    pt_lowp_from_f32(t, ah, a, (int64_t)m * k);
    pt_lowp_from_f32(t, bh, b, (int64_t)k * n);
    float *c = malloc((size_t)m * n * 4), *c2 = malloc((size_t)m * n * 4);
    const double u = t == PT_BF16 ? ldexp(1.0, -8) : ldexp(1.0, -11);
    for (int v = 0; v < n_runnable; v++) {
        omp_set_num_threads(1);
        REQUIRE_OK(gemm_v(v, t, false, false, m, n, k, 1.f, ah, k, bh, n, 0.f, c, n));
        omp_set_num_threads(2);
        REQUIRE_OK(gemm_v(v, t, false, false, m, n, k, 1.f, ah, k, bh, n, 0.f, c2, n));
        double worst = 0, sum_rel = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double s = 0, sa = 0;
                for (int p = 0; p < k; p++) {
                    const double x = (double)a[(size_t)i * k + p] * b[(size_t)p * n + j];
                    s += x, sa += fabs(x);
                }
                const double r = fabs(c[(size_t)i * n + j] - s) / sa;
                worst = r > worst || r != r ? r : worst;
                sum_rel += r;
            }
        const double limit = 2 * u + u * u + (k + 2) * ldexp(1.0, -24);
        CHECK(worst <= limit, "%s %s vs fp32 inputs: max |err|/sum|a||b| %.3g > %.3g", runnable[v],
              pt_precision_name(t), worst, limit);
        printf("gemm %-4s %-10s vs unrounded fp32 (%dx%dx%d): |err|/sum|a||b| max %.2e mean %.2e "
               "(limit 2u+u^2 = %.2e, u = 2^%d)\n", pt_precision_name(t), runnable[v], m, n, k,
               worst, sum_rel / (m * n), 2 * u + u * u, t == PT_BF16 ? -8 : -11);
        if (strcmp(runnable[v], "fallback") && strcmp(runnable[v], "sbgemm"))
            CHECK(!memcmp(c, c2, (size_t)m * n * 4), "%s %s: 1 and 2 threads give different bits",
                  runnable[v], pt_precision_name(t));
    }
    omp_set_num_threads(1);
    REQUIRE_OK(pt_lowp_gemm_select(t, "auto"));
    free(a), free(b), free(ah), free(bh), free(c), free(c2);
}

__attribute__((unused)) static void find_variants(pt_dtype t)
{
    n_runnable = 0;
    for (int i = 0; pt_lowp_gemm_variant_name(i); i++) {
        const char *v = pt_lowp_gemm_variant_name(i), *why = NULL;
        if (pt_lowp_gemm_available(t, v, &why)) {
            runnable[n_runnable++] = v;
            continue;
        }
        if (!strstr(why, " only")) /* not "bf16 only": that is no lack of this machine */
            printf("SKIP-part: lowp gemm %s %s: %s\n", v, pt_precision_name(t), why);
        /* refusing it is an argument error with the reason, not a crash later */
        CHECK(pt_lowp_gemm_select(t, v) == PT_ERR_ARG && strstr(pt_error_message(), why),
              "select(%s, %s) on a machine without it: not PT_ERR_ARG with the reason", v, pt_precision_name(t));
    }
    CHECK(n_runnable >= 1 && !strcmp(runnable[0], "fallback"), "fallback must always run");
}

#ifdef LOWP_EMU
int main(void)
{
    runnable[0] = "amx(emulated)", runnable[1] = "avx512bf16(emulated)", n_runnable = 2;
    omp_set_num_threads(1);
    test_gemm(PT_BF16);
    test_vs_fp32(PT_BF16);
    runnable[0] = "avx512fp16(emulated)", n_runnable = 1;
    test_gemm(PT_F16);
    test_vs_fp32(PT_F16);
    return test_exit_code("t_lowp_emu");
}
#else
int main(void)
{
    /* PT_LOWP_GEMM is read once: a bad value is refused by check and by every GEMM call */
    setenv("PT_LOWP_GEMM", "bogus", 1);
    CHECK(pt_lowp_gemm_check(PT_BF16) == PT_ERR_ARG && strstr(pt_error_message(), "bogus"),
          "PT_LOWP_GEMM=bogus not refused: %s", pt_error_message());
    uint16_t one = 0x3f80;
    float out = 0;
    CHECK(pt_lowp_gemm(PT_BF16, false, false, 1, 1, 1, 1.f, &one, 1, &one, 1, 0.f, &out, 1) == PT_ERR_ARG,
          "gemm ran with PT_LOWP_GEMM=bogus");
    CHECK(!strcmp(pt_lowp_gemm_variant(PT_F16), "invalid"), "variant name with a bad PT_LOWP_GEMM");
    CHECK(pt_lowp_gemm_select(PT_BF16, "nonesuch") == PT_ERR_ARG, "select(nonesuch) accepted");
    CHECK(pt_lowp_gemm_select(PT_F16, "avx512bf16") == PT_ERR_ARG, "avx512bf16 accepted for fp16");
    REQUIRE_OK(pt_lowp_gemm_select(PT_BF16, NULL));
    REQUIRE_OK(pt_lowp_gemm_select(PT_F16, "auto"));
    pt_dtype d;
    CHECK(pt_precision_parse("bf16", &d) == PT_OK && d == PT_BF16, "parse bf16");
    CHECK(pt_precision_parse("fp8", &d) == PT_ERR_ARG, "parse fp8 accepted");
    printf("auto: bf16 -> %s, fp16 -> %s\n", pt_lowp_gemm_variant(PT_BF16), pt_lowp_gemm_variant(PT_F16));

    const pt_dtype types[2] = {PT_BF16, PT_F16};
    for (int i = 0; i < 2; i++) {
        test_to_f32(types[i]);
        test_from_f32(types[i]);
    }
#if PT_HAVE_X86_KERNELS
    /* each ISA object's conversions directly (the CPU flags they need are those of the avx2 and
     * avx512fp16 GEMM variants) */
    static const struct {
        const char *name, *variant;
        from_fn from;
        to_fn to;
        round_fn round;
    } isa[] = {{"avx2", "avx2", pt_lowp_from_f32_avx2, pt_lowp_to_f32_avx2, pt_lowp_round_f32_avx2},
               {"avx512", "avx512fp16", pt_lowp_from_f32_avx512, pt_lowp_to_f32_avx512,
                pt_lowp_round_f32_avx512}};
    for (int v = 0; v < 2; v++) {
        const char *why = NULL;
        if (!pt_lowp_gemm_available(PT_F16, isa[v].variant, &why)) {
            printf("SKIP-part: conversions %s: %s\n", isa[v].name, why);
            continue;
        }
        cvt_from = isa[v].from, cvt_to = isa[v].to, cvt_round = isa[v].round, cvt_name = isa[v].name;
        for (int i = 0; i < 2; i++) {
            test_to_f32(types[i]);
            test_from_f32(types[i]);
        }
    }
    cvt_from = pt_lowp_from_f32, cvt_to = pt_lowp_to_f32, cvt_round = pt_lowp_round_f32, cvt_name = "dispatch";
#endif
    omp_set_num_threads(1);
    for (int i = 0; i < 2; i++) {
        find_variants(types[i]);
        test_gemm(types[i]);
        test_vs_fp32(types[i]);
    }
    return test_exit_code("t_lowp");
}
#endif
