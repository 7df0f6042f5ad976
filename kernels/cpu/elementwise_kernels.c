/* The CPU backend's elementwise loops and reductions (bias + activation, activation and bias
 * backward, the optimizer updates, sum of squares, scale, all-finite), compiled once per ISA
 * level, like kernels/cpu/conv_direct_isa.c: Makefile.am builds this file three times, as
 * libew_baseline.la (the architecture's baseline flags; also the only one on non-x86 hosts),
 * libew_avx2.la (-mavx2 -mfma -mno-avx512f) and libew_avx512.la (-mavx512f -mavx2 -mfma), with
 * PT_EW_SUFFIX naming the table each exports (pt_cpu_ew_kernels_baseline / _avx2 / _avx512).
 * The baseline object also holds the dispatch, pt_cpu_ew_kernels_get(), which picks one table
 * once from pt_cpu_isa() (PT_CPU_ISA forces a level).
 *
 * Every level gives the same bits (tests/t_ew_isa.c), and the same bits as the loops had in
 * kernels/cpu/backend_cpu.c before they moved here (compiled for the x86-64 baseline):
 *  - every object is compiled with -ffp-contract=off, so no multiply-add becomes an FMA (the
 *    x86-64 baseline has none; GNU C contracts by default where the target has them);
 *  - the loops are the same C as before, the same OpenMP static partitions (so the same
 *    elements on the same threads); libm calls (erff, expf, tanhf, powf) are not vectorized
 *    without -ffast-math, so every level calls the same scalar functions; sqrt, division, min
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

#define PAR_MIN 16384 /* elements below which a loop stays on one thread (as in backend_cpu.c) */

static inline float gelu(float x) { return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); }
static inline float gelu_grad(float x)
{
    const float inv_sqrt_2pi = 0.3989422804014327f;
    return 0.5f * (1.0f + erff(x * (float)M_SQRT1_2)) + x * inv_sqrt_2pi * expf(-0.5f * x * x);
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
        case PT_ACT_GELU:
            for (int c = 0; c < cols; c++) {
                float v = yr[c] + bias[c];
                if (pr) pr[c] = v;
                yr[c] = gelu(v);
            }
            break;
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
    case PT_ACT_GELU:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * gelu_grad(pre[i]);
        break;
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
    /* Columns split across threads; each column summed over rows in a fixed order. */
#pragma omp parallel if ((int64_t)rows * cols >= PAR_MIN)
    {
#pragma omp for schedule(static)
        for (int c0 = 0; c0 < cols; c0 += 64) {
            int c1 = c0 + 64 < cols ? c0 + 64 : cols;
            for (int c = c0; c < c1; c++) db[c] = 0.0f;
            for (int r = 0; r < rows; r++) {
                const float *dyr = dy + (int64_t)r * cols;
                for (int c = c0; c < c1; c++) db[c] += dyr[c];
            }
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
