/* The CPU backend's elementwise loops and reductions (bias + activation, activation and bias
 * backward, the optimizer updates, sum of squares, scale, all-finite) and the tiled attention
 * kernels (issue 20: they share the vectorized exp defined here), compiled once per ISA
 * level, like kernels/cpu/conv_direct_isa.c: Makefile.am builds this file three times, as
 * libew_baseline.la (the architecture's baseline flags; also the only one on non-x86 hosts),
 * libew_avx2.la (-mavx2 -mfma -mno-avx512f) and libew_avx512.la (-mavx512f -mavx2 -mfma), with
 * PT_EW_SUFFIX naming the table each exports (pt_cpu_ew_kernels_baseline / _avx2 / _avx512).
 * The baseline object also holds the dispatch, pt_cpu_ew_kernels_get(), which picks one table
 * once from pt_cpu_isa() (PT_CPU_ISA forces a level).
 *
 * Every level gives the same bits (tests/t_ew_isa.c), and, except GELU (issue 20 moved it from
 * libm's erff/expf to the vectorized erf/exp below, on purpose) and attention (new), the same
 * bits as the loops had in kernels/cpu/backend_cpu.c before they moved here (x86-64 baseline):
 *  - every object is compiled with -ffp-contract=off, so no multiply-add becomes an FMA (the
 *    x86-64 baseline has none; GNU C contracts by default where the target has them);
 *  - the loops are the same C as before, the same OpenMP static partitions (so the same
 *    elements on the same threads); the remaining libm calls (tanhf, powf) are not vectorized
 *    without -ffast-math, so every level calls the same scalar functions; GELU's erf and exp
 *    and attention's exp are the v8f code below, the same operations at every width; sqrt, division, min
 *    and max are exactly rounded at every vector width;
 *  - the one reduction whose order the compiler chose, the per-block sum of sum_squares
 *    (`#pragma omp simd reduction`: GCC 12 summed four lanes at the baseline, eight or sixteen
 *    with wider vectors), is written out in the baseline's order, see block_sum_squares();
 *  - all_finite's reduction is a bitwise OR, in any order the same. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "elementwise_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef PT_EW_SUFFIX
#define PT_EW_SUFFIX baseline /* the cross-compile check (.ci/cross-aarch64.sh) builds it bare */
#define PT_EW_BASELINE 1
#endif
#ifndef PT_EW_BASELINE
#define PT_EW_BASELINE 0
#endif
#define PT_CAT2(a, b) a##b
#define PT_CAT(a, b) PT_CAT2(a, b)
#define FN(name) PT_CAT(name##_, PT_EW_SUFFIX)

#if !PT_EW_BASELINE && (!defined(__AVX2__) || !defined(__FMA__))
#error "the avx2 and avx512 variants of elementwise_kernels.c need at least -mavx2 -mfma"
#endif

/* what this object was really compiled for (what the flags gave, not what was asked) */
#if PT_EW_BASELINE
#define PT_EW_COMPILED_ISA "baseline"
#elif defined(__AVX512F__)
#define PT_EW_COMPILED_ISA "avx512"
#else
#define PT_EW_COMPILED_ISA "avx2"
#endif

/* the vector helpers below are static and inlined: no vector crosses an ABI boundary */
#pragma GCC diagnostic ignored "-Wpsabi"

#define PAR_MIN 16384 /* elements below which a loop stays on one thread (as in backend_cpu.c) */

/* ---- vectorized exp and erf (issue 20) ----
 * Eight lanes in GCC's generic vector type: two SSE registers at the baseline, one AVX register
 * at avx2 and avx512. Only +, *, min/max selects, conversions and shifts, all exactly rounded,
 * with -ffp-contract=off: every level and every lane gives the same bits, and so does the tail
 * of an array (padded into a vector). Coefficients were fitted for this file (least squares on
 * Chebyshev nodes against double precision, then rounded to float). */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
#define V8(a) ((v8f){a, a, a, a, a, a, a, a})
static inline v8f v8_load(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void v8_store(float *p, v8f v) { memcpy(p, &v, sizeof v); }
static inline v8f v8_sel(v8i m, v8f a, v8f b) /* m ? a : b, lane by lane */
{
    return (v8f)(((v8i)a & m) | ((v8i)b & ~m));
}
/* the first n (< 8) floats of p in a vector, zeros after */
static inline v8f v8_load_part(const float *p, int n)
{
    float t[8] = {0};
    memcpy(t, p, sizeof(float) * (size_t)n);
    return v8_load(t);
}
static inline void v8_store_part(float *p, v8f v, int n)
{
    float t[8];
    v8_store(t, v);
    memcpy(p, t, sizeof(float) * (size_t)n);
}

/* exp(x): x = n ln2 + r, |r| <= ln2/2 (Cody-Waite, two-part ln2), exp(r) = 1 + r + r^2 P(r),
 * times 2^n built in the exponent bits. Max error 1 ulp on [-87, 88] (tests/t_ew_isa sweeps it
 * through GELU's gradient); below -87.33 it returns 0, above 88 it returns exp(88); NaN stays NaN. */
static inline v8f v8_exp(v8f x)
{
    x = v8_sel(x > V8(88.0f), V8(88.0f), x);
    const v8f magic = V8(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    const v8f n = (x * V8(1.44269502f) + magic) - magic;
    v8f r = x - n * V8(0.693359375f);
    r = r - n * V8(-2.12194440e-4f);
    v8f p = V8(1.39336579e-3f);
    p = p * r + V8(8.36317986e-3f);
    p = p * r + V8(4.16664630e-2f);
    p = p * r + V8(1.66665763e-1f);
    p = p * r + V8(0.5f);
    p = (p * (r * r) + r) + V8(1.0f);
    const v8i e = (__builtin_convertvector(n, v8i) + 127) << 23;
    return v8_sel(x < V8(-87.33f), V8(0.0f), p * (v8f)e);
}

/* 1 + erf(z), the factor GELU needs (written so that z < 0 does not cancel):
 *   |z| < 0.921875:  1 + z P(z^2)
 *   above:           erfc(|z|) = exp(Q(|z| - c)), so 1 + erf(z) = 2 - erfc(|z|) for z > 0 and
 *                    erfc(|z|) for z < 0; Q fits log(erfc) on [0.921875, 3.93], and beyond 3.93
 *                    erfc(|z|) < 2^-26 is taken as 0 (erff's float result is +-1 there too).
 * erf's max error against double precision is about 2 ulp (tests/t_ew_isa states the measured
 * figure for GELU). */
static inline v8f v8_one_plus_erf(v8f z)
{
    const v8f a = v8_sel(z < V8(0.0f), -z, z);
    const v8f s = z * z;
    v8f p = V8(8.41106303e-5f);
    p = p * s + V8(-8.15379084e-4f);
    p = p * s + V8(5.20217698e-3f);
    p = p * s + V8(-2.68599577e-2f);
    p = p * s + V8(1.12837084e-1f);
    p = p * s + V8(-3.76126349e-1f);
    p = p * s + V8(1.12837923f);
    const v8f small = V8(1.0f) + z * p;
    const v8f t = v8_sel(a > V8(3.93f), V8(3.93f), a) - V8(2.4259375f);
    v8f q = V8(-2.58920032e-8f);
    q = q * t + V8(1.63417462e-6f);
    q = q * t + V8(-1.41201081e-5f);
    q = q * t + V8(8.44593305e-5f);
    q = q * t + V8(-4.56379552e-4f);
    q = q * t + V8(2.32741097e-3f);
    q = q * t + V8(-1.15234451e-2f);
    q = q * t + V8(-9.41408038e-1f);
    q = q * t + V8(-5.21304893f);
    q = q * t + V8(-7.41555548f);
    v8f ec = v8_exp(q);
    ec = v8_sel(a > V8(3.93f), V8(0.0f), ec);
    const v8f large = v8_sel(z > V8(0.0f), V8(2.0f) - ec, ec);
    return v8_sel(a < V8(0.921875f), small, large);
}
static inline v8f v8_gelu(v8f x)
{
    return V8(0.5f) * x * v8_one_plus_erf(x * V8((float)M_SQRT1_2));
}
static inline v8f v8_gelu_grad(v8f x)
{
    const v8f cdf = V8(0.5f) * v8_one_plus_erf(x * V8((float)M_SQRT1_2));
    return cdf + x * V8(0.3989422804014327f) * v8_exp(V8(-0.5f) * x * x);
}

/* y[i] = gelu(v[i] + bias[i]) over n, pre (may be NULL) keeping the sum */
static inline void gelu_row(float *y, float *pre, const float *bias, int n)
{
    int c = 0;
    for (; c + 8 <= n; c += 8) {
        const v8f v = v8_load(y + c) + v8_load(bias + c);
        if (pre) v8_store(pre + c, v);
        v8_store(y + c, v8_gelu(v));
    }
    if (c < n) {
        const v8f v = v8_load_part(y + c, n - c) + v8_load_part(bias + c, n - c);
        if (pre) v8_store_part(pre + c, v, n - c);
        v8_store_part(y + c, v8_gelu(v), n - c);
    }
}

static void FN(bias_act_forward)(float *y, float *pre, const float *bias, int rows, int cols,
                                 pt_act act)
{
#pragma omp parallel for schedule(static) if ((int64_t)rows * cols >= PAR_MIN)
    for (int r = 0; r < rows; r++) {
        float *yr = y + (int64_t)r * cols;
        float *pr = pre ? pre + (int64_t)r * cols : NULL;
        switch (act) {
        case PT_ACT_NONE:
            for (int c = 0; c < cols; c++) yr[c] += bias[c];
            if (pr) memcpy(pr, yr, sizeof(float) * (size_t)cols);
            break;
        case PT_ACT_RELU:
            if (pr)
                for (int c = 0; c < cols; c++) {
                    float v = yr[c] + bias[c];
                    pr[c] = v;
                    yr[c] = v > 0.0f ? v : 0.0f;
                }
            else /* a loop without the pre-activation store vectorizes */
                for (int c = 0; c < cols; c++) {
                    const float v = yr[c] + bias[c];
                    yr[c] = v > 0.0f ? v : 0.0f;
                }
            break;
        case PT_ACT_GELU: gelu_row(yr, pr, bias, cols); break;
        case PT_ACT_TANH:
            for (int c = 0; c < cols; c++) {
                float v = yr[c] + bias[c];
                if (pr) pr[c] = v;
                yr[c] = tanhf(v);
            }
            break;
        }
    }
}

static void FN(act_backward)(float *dx, const float *dy, const float *pre, int64_t n, pt_act act)
{
    switch (act) {
    case PT_ACT_NONE:
        if (dx != dy) memcpy(dx, dy, sizeof(float) * (size_t)n);
        break;
    case PT_ACT_RELU:
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) dx[i] = pre[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case PT_ACT_GELU: {
        /* blocks of 8 (the static partition is over blocks, so the same elements on the same
         * threads at every level); dx may alias dy: each block is read before it is written */
        const int64_t nb = n / 8;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t b = 0; b < nb; b++)
            v8_store(dx + 8 * b, v8_load(dy + 8 * b) * v8_gelu_grad(v8_load(pre + 8 * b)));
        if (n > 8 * nb) {
            const int r = (int)(n - 8 * nb);
            v8_store_part(dx + 8 * nb,
                          v8_load_part(dy + 8 * nb, r) * v8_gelu_grad(v8_load_part(pre + 8 * nb, r)),
                          r);
        }
        break;
    }
    case PT_ACT_TANH:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            float t = tanhf(pre[i]);
            dx[i] = dy[i] * (1.0f - t * t);
        }
        break;
    }
}

static void FN(bias_backward)(float *db, const float *dy, int rows, int cols)
{
    /* Columns split across threads in blocks of 64; each column summed over rows in order, one
     * vector lane per column, in registers (GCC kept the loop scalar, storing db every row). */
#pragma omp parallel if ((int64_t)rows * cols >= PAR_MIN)
    {
#pragma omp for schedule(static)
        for (int c0 = 0; c0 < cols; c0 += 64) {
            const int w = c0 + 64 < cols ? 64 : cols - c0, nv = w / 8;
            v8f acc[8];
            float tail[8] = {0};
            for (int v = 0; v < 8; v++) acc[v] = V8(0.0f);
            for (int r = 0; r < rows; r++) {
                const float *dyr = dy + (int64_t)r * cols + c0;
                for (int v = 0; v < nv; v++) acc[v] += v8_load(dyr + 8 * v);
                for (int c = 8 * nv; c < w; c++) tail[c - 8 * nv] += dyr[c];
            }
            for (int v = 0; v < nv; v++) v8_store(db + c0 + 8 * v, acc[v]);
            for (int c = 8 * nv; c < w; c++) db[c0 + c] = tail[c - 8 * nv];
        }
    }
}

/* The sum of x[0..m)^2 in double, in the order GCC 12 gave `#pragma omp simd reduction(+ : s)`
 * over this loop at the x86-64 baseline (what backend_cpu.c had; read from its assembly): four
 * lanes, lane j summing x[4k + j]^2 for k = 0, 1, ... over the first m & ~3 elements, the last
 * m % 4 (or all of them when m < 4) added to lane 0 in order, then ((l0 + l1) + l2) + l3. The
 * squares of floats are exact in double, so only these additions round. A vector of four doubles
 * is two SSE2 registers, one AVX register; the order is the same at every width. */
typedef double pt_v4d __attribute__((vector_size(32)));
typedef float pt_v4f __attribute__((vector_size(16), aligned(4), may_alias));
static inline double block_sum_squares(const float *x, int64_t m)
{
    const int64_t q = m & ~(int64_t)3;
    pt_v4d acc = {0.0, 0.0, 0.0, 0.0};
    for (int64_t i = 0; i < q; i += 4) {
        const pt_v4d d = __builtin_convertvector(*(const pt_v4f *)(x + i), pt_v4d);
        acc += d * d;
    }
    double l0 = acc[0];
    for (int64_t i = q; i < m; i++) l0 += (double)x[i] * x[i];
    return ((l0 + acc[1]) + acc[2]) + acc[3];
}

/* Fixed 4096-element blocks, each summed in order, and the block sums added in block order: the
 * result does not depend on the thread count (--reproducible relies on it). */
#define SUMSQ_BLOCK 4096
static double FN(sum_squares)(const float *x, int64_t n)
{
    const int64_t nb = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
    double small[64], *part = nb <= 64 ? small : malloc(sizeof(double) * (size_t)nb);
    if (!part) { /* no memory for the partial sums: one ordered pass */
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
        return s;
    }
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t lo = b * SUMSQ_BLOCK, hi = lo + SUMSQ_BLOCK < n ? lo + SUMSQ_BLOCK : n;
        part[b] = block_sum_squares(x + lo, hi - lo);
    }
    double s = 0.0;
    for (int64_t b = 0; b < nb; b++) s += part[b];
    if (part != small) free(part);
    return s;
}

static void FN(scale)(float *x, int64_t n, float alpha)
{
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) x[i] *= alpha;
}

static bool FN(all_finite)(const float *x, int64_t n)
{
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) bad |= !isfinite(x[i]);
    return !bad;
}

/* Update rules follow torch.optim (1.13) operation by operation, so the fixture test can be tight. */
static void FN(sgd_update)(float *w, const float *g, float *buf, int64_t n,
                           const pt_update_params *p)
{
    const float lr = p->lr, mu = p->momentum, wd = p->weight_decay;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        if (buf) {
            buf[i] = mu * buf[i] + d;
            d = p->nesterov ? d + mu * buf[i] : buf[i];
        }
        w[i] -= lr * d;
    }
}

static void FN(adagrad_update)(float *w, const float *g, float *sum_sq, int64_t n,
                               const pt_update_params *p)
{
    const float lr = p->lr, wd = p->weight_decay, eps = p->eps;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        sum_sq[i] += d * d;
        w[i] -= lr * d / (sqrtf(sum_sq[i]) + eps);
    }
}

static void FN(adam_update)(float *w, const float *g, float *m, float *v, int64_t n,
                            const pt_update_params *p)
{
    const float b1 = p->beta1, b2 = p->beta2, eps = p->eps, lr = p->lr, wd = p->weight_decay;
    const float bc1 = 1.0f - powf(b1, (float)p->t);
    const float bc2_sqrt = sqrtf(1.0f - powf(b2, (float)p->t));
    const float step_size = lr / bc1;
    const bool decoupled = p->decoupled_wd;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = g[i];
        if (decoupled)
            w[i] *= 1.0f - lr * wd;
        else
            d += wd * w[i];
        m[i] = b1 * m[i] + (1.0f - b1) * d;
        v[i] = b2 * v[i] + (1.0f - b2) * d * d;
        w[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}

/* ---- causal attention, tiled (FlashAttention's scheme, on the CPU) ----
 * Forward: a task is (sample, head, block of AQ queries). Its queries, scaled by 1/sqrt(dh), meet
 * the keys in blocks of AK (transposed into kt, so a score row is four vectors of keys), blocks
 * wholly above the diagonal skipped; an online softmax keeps per row the running max m, the sum l
 * of exp(s - m) and the unnormalized output, rescaled by exp(m_old - m) whenever a block raises
 * the max. Nothing T x T is stored: the output is o / l and lse = m + log l.
 * Backward: a task is (sample, head), so dk and dv of a key block are summed over the query rows
 * in order, and dq of a row over the key blocks in order: the same bits for any thread count.
 * Per key block and query row i >= the block's first key, the scores are recomputed exactly as
 * the forward computed them, p = exp(s - lse_i), D_i = dO_i . o_i, ds = p (dO_i . v - D_i) / sqrt(dh);
 * dv += p dO_i, dk += ds q_i, dq_i += ds k. */
enum { AQ = 32, AK = 32 }; /* query rows per forward task; keys per block (four vectors) */

static inline int imin(int a, int b) { return a < b ? a : b; }

/* s[0..AK) = sum_c q[c] kt[c][.], c in order */
static inline void attn_row_scores(const float *q, const float *kt, int dh, float *s)
{
    v8f a0 = V8(0.0f), a1 = a0, a2 = a0, a3 = a0;
    for (int c = 0; c < dh; c++) {
        const v8f qc = V8(q[c]);
        const float *k = kt + (int64_t)c * AK;
        a0 += qc * v8_load(k), a1 += qc * v8_load(k + 8);
        a2 += qc * v8_load(k + 16), a3 += qc * v8_load(k + 24);
    }
    v8_store(s, a0), v8_store(s + 8, a1), v8_store(s + 16, a2), v8_store(s + 24, a3);
}

/* rows [j0, j0 + nk) of one head's k (or v) columns into kt[c][jj], zero past nk */
static inline void attn_transpose(const float *src, int64_t ld, int nk, int dh, float *kt)
{
    for (int jj = 0; jj < AK; jj++) {
        const float *r = src + (int64_t)jj * ld;
        for (int c = 0; c < dh; c++) kt[(int64_t)c * AK + jj] = jj < nk ? r[c] : 0.0f;
    }
}

static inline float exp1(float x) { return v8_exp(V8(x))[0]; } /* the vector exp's bits */

/* y[0..n) = y * s + a * x, in vectors with a scalar tail (the same bits per element either way;
 * GCC does not vectorize these loops itself: it cannot rule out the aliasing) */
static inline void scale_axpy(float *y, float s, float a, const float *x, int n)
{
    int c = 0;
    for (; c + 8 <= n; c += 8) v8_store(y + c, v8_load(y + c) * V8(s) + V8(a) * v8_load(x + c));
    for (; c < n; c++) y[c] = y[c] * s + a * x[c];
}
static inline void axpy(float *y, float a, const float *x, int n)
{
    int c = 0;
    for (; c + 8 <= n; c += 8) v8_store(y + c, v8_load(y + c) + V8(a) * v8_load(x + c));
    for (; c < n; c++) y[c] += a * x[c];
}

static void FN(attention_forward)(const pt_attention_desc *d, int rows, const float *qkv, float *y,
                                  float *lse)
{
    const int T = d->T, D = d->D, H = d->H, dh = D / H, nqb = (T + AQ - 1) / AQ;
    const int64_t ld = 3 * (int64_t)D;
    const float scale = 1.0f / sqrtf((float)dh);
#pragma omp parallel for collapse(3) schedule(static)
    for (int b = 0; b < rows; b++)
        for (int h = 0; h < H; h++)
            for (int qb = 0; qb < nqb; qb++) {
                float qs[AQ * dh], kt[dh * AK], o[AQ * dh], m[AQ], l[AQ];
                float s[AK] __attribute__((aligned(32)));
                const float *base = qkv + (int64_t)b * T * ld + (int64_t)h * dh;
                const int i0 = qb * AQ, nq = imin(AQ, T - i0);
                for (int ii = 0; ii < nq; ii++) {
                    const float *q = base + (int64_t)(i0 + ii) * ld;
                    for (int c = 0; c < dh; c++) qs[ii * dh + c] = q[c] * scale, o[ii * dh + c] = 0.0f;
                    m[ii] = -INFINITY, l[ii] = 0.0f;
                }
                for (int j0 = 0; j0 < i0 + nq; j0 += AK) { /* blocks past the last query: skipped */
                    const int nk = imin(AK, i0 + nq - j0);
                    attn_transpose(base + (int64_t)j0 * ld + D, ld, nk, dh, kt);
                    for (int ii = 0; ii < nq; ii++) {
                        const int nv = imin(nk, i0 + ii - j0 + 1); /* keys j <= i */
                        if (nv <= 0) continue;
                        attn_row_scores(qs + ii * dh, kt, dh, s);
                        float mx = m[ii];
                        for (int jj = 0; jj < nv; jj++) mx = s[jj] > mx ? s[jj] : mx;
                        for (int jj = nv; jj < AK; jj++) s[jj] = -INFINITY; /* exp gives 0 */
                        for (int v = 0; v < AK; v += 8) v8_store(s + v, v8_exp(v8_load(s + v) - V8(mx)));
                        const float alpha = exp1(m[ii] - mx); /* 0 on the first block */
                        float sum = 0.0f;
                        for (int jj = 0; jj < nv; jj++) sum += s[jj];
                        l[ii] = l[ii] * alpha + sum;
                        m[ii] = mx;
                        float *orow = o + ii * dh;
                        const float *v0 = base + (int64_t)j0 * ld + 2 * D;
                        scale_axpy(orow, alpha, s[0], v0, dh);
                        for (int jj = 1; jj < nv; jj++) axpy(orow, s[jj], v0 + (int64_t)jj * ld, dh);
                    }
                }
                for (int ii = 0; ii < nq; ii++) {
                    const int i = i0 + ii;
                    const float inv = 1.0f / l[ii];
                    float *yr = y + ((int64_t)b * T + i) * D + (int64_t)h * dh;
                    for (int c = 0; c < dh; c++) yr[c] = o[ii * dh + c] * inv;
                    lse[((int64_t)b * H + h) * T + i] = m[ii] + logf(l[ii]);
                }
            }
}

static void FN(attention_backward)(const pt_attention_desc *d, int rows, const float *qkv,
                                   const float *y, const float *dy, const float *lse, float beta,
                                   float *dqkv)
{
    const int T = d->T, D = d->D, H = d->H, dh = D / H;
    const int64_t ld = 3 * (int64_t)D;
    const float scale = 1.0f / sqrtf((float)dh);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < rows; b++)
        for (int h = 0; h < H; h++) {
            float kt[dh * AK], vt[dh * AK], dk[AK * dh], dv[AK * dh], qs[dh], Di[T];
            float p[AK] __attribute__((aligned(32))), dp[AK] __attribute__((aligned(32)));
            const float *base = qkv + (int64_t)b * T * ld + (int64_t)h * dh;
            float *dbase = dqkv + (int64_t)b * T * ld + (int64_t)h * dh;
            const float *lr = lse + ((int64_t)b * H + h) * T;
            if (beta == 0.0f)
                for (int t = 0; t < T; t++)
                    for (int part = 0; part < 3; part++)
                        memset(dbase + (int64_t)t * ld + part * D, 0, sizeof(float) * (size_t)dh);
            for (int i = 0; i < T; i++) {
                const float *g = dy + ((int64_t)b * T + i) * D + (int64_t)h * dh;
                const float *o = y + ((int64_t)b * T + i) * D + (int64_t)h * dh;
                float acc = 0.0f;
                for (int c = 0; c < dh; c++) acc += g[c] * o[c];
                Di[i] = acc;
            }
            for (int j0 = 0; j0 < T; j0 += AK) {
                const int nk = imin(AK, T - j0);
                attn_transpose(base + (int64_t)j0 * ld + D, ld, nk, dh, kt);
                attn_transpose(base + (int64_t)j0 * ld + 2 * D, ld, nk, dh, vt);
                memset(dk, 0, sizeof dk), memset(dv, 0, sizeof dv);
                for (int i = j0; i < T; i++) { /* rows above the block see none of its keys */
                    const float *q = base + (int64_t)i * ld;
                    const float *g = dy + ((int64_t)b * T + i) * D + (int64_t)h * dh;
                    const int nv = imin(nk, i - j0 + 1);
                    {
                        int c = 0;
                        for (; c + 8 <= dh; c += 8) v8_store(qs + c, v8_load(q + c) * V8(scale));
                        for (; c < dh; c++) qs[c] = q[c] * scale;
                    }
                    attn_row_scores(qs, kt, dh, p);
                    attn_row_scores(g, vt, dh, dp);
                    for (int jj = nv; jj < AK; jj++) p[jj] = -INFINITY;
                    for (int v = 0; v < AK; v += 8) {
                        const v8f pv = v8_exp(v8_load(p + v) - V8(lr[i]));
                        v8_store(p + v, pv);
                        v8_store(dp + v, pv * (v8_load(dp + v) - V8(Di[i])) * V8(scale));
                    }
                    float *dq = dbase + (int64_t)i * ld;
                    for (int jj = 0; jj < nv; jj++) {
                        const float pj = p[jj], ds = dp[jj];
                        const float *k = base + (int64_t)(j0 + jj) * ld + D;
                        float *dkr = dk + jj * dh, *dvr = dv + jj * dh;
                        int c = 0;
                        for (; c + 8 <= dh; c += 8) {
                            v8_store(dvr + c, v8_load(dvr + c) + V8(pj) * v8_load(g + c));
                            v8_store(dkr + c, v8_load(dkr + c) + V8(ds) * v8_load(q + c));
                            v8_store(dq + c, v8_load(dq + c) + V8(ds) * v8_load(k + c));
                        }
                        for (; c < dh; c++) dvr[c] += pj * g[c], dkr[c] += ds * q[c], dq[c] += ds * k[c];
                    }
                }
                for (int jj = 0; jj < nk; jj++) {
                    float *dkr = dbase + (int64_t)(j0 + jj) * ld + D, *dvr = dkr + D;
                    axpy(dkr, 1.0f, dk + jj * dh, dh), axpy(dvr, 1.0f, dv + jj * dh, dh);
                }
            }
        }
}

const pt_cpu_ew_kernels PT_CAT(pt_cpu_ew_kernels_, PT_EW_SUFFIX) = {
    .isa = PT_EW_COMPILED_ISA,
    .bias_act_forward = FN(bias_act_forward),
    .act_backward = FN(act_backward),
    .bias_backward = FN(bias_backward),
    .sum_squares = FN(sum_squares),
    .scale = FN(scale),
    .all_finite = FN(all_finite),
    .sgd_update = FN(sgd_update),
    .adagrad_update = FN(adagrad_update),
    .adam_update = FN(adam_update),
    .attention_forward = FN(attention_forward),
    .attention_backward = FN(attention_backward),
};

#if PT_EW_BASELINE
/* Only this object decides which table runs. */
#if PT_HAVE_X86_KERNELS
extern const pt_cpu_ew_kernels pt_cpu_ew_kernels_avx2, pt_cpu_ew_kernels_avx512;
#endif

const pt_cpu_ew_kernels *pt_cpu_ew_kernels_for(pt_cpu_isa_t isa)
{
    switch (isa) {
    case PT_ISA_BASELINE: return &pt_cpu_ew_kernels_baseline;
#if PT_HAVE_X86_KERNELS
    case PT_ISA_AVX2: return &pt_cpu_ew_kernels_avx2;
    case PT_ISA_AVX512: return &pt_cpu_ew_kernels_avx512;
#endif
    default: return NULL;
    }
}

const pt_cpu_ew_kernels *pt_cpu_ew_kernels_get(void)
{
    static const pt_cpu_ew_kernels *chosen;
    const pt_cpu_ew_kernels *k = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (k) return k;
    k = pt_cpu_ew_kernels_for(pt_cpu_isa());
    if (!k) k = &pt_cpu_ew_kernels_baseline;
    __atomic_store_n(&chosen, k, __ATOMIC_RELEASE);
    return k;
}
#endif
