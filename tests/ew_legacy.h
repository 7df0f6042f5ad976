/* The CPU backend's elementwise loops as they were in kernels/cpu/backend_cpu.c before they moved
 * to kernels/cpu/elementwise_kernels.c (commit d73ed62), verbatim but renamed legacy_*: tests/t_ew_isa.c
 * compares the dispatched kernels with them bit for bit where the test itself is compiled for the
 * x86-64 baseline (what the library was built for then). */
#ifndef PT_EW_LEGACY_H
#define PT_EW_LEGACY_H
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/backend.h"

#define PAR_MIN 16384
static inline float legacy_gelu(float x) { return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); }
static inline float legacy_gelu_grad(float x)
{
    const float inv_sqrt_2pi = 0.3989422804014327f;
    return 0.5f * (1.0f + erff(x * (float)M_SQRT1_2)) + x * inv_sqrt_2pi * expf(-0.5f * x * x);
}

static void legacy_bias_act_forward(float *y, float *pre, const float *bias, int rows, int cols,
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
                yr[c] = legacy_gelu(v);
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

static void legacy_act_backward(float *dx, const float *dy, const float *pre, int64_t n, pt_act act)
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
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * legacy_gelu_grad(pre[i]);
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

static void legacy_bias_backward(float *db, const float *dy, int rows, int cols)
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

/* Fixed 4096-element blocks, each summed in order, and the block sums added in block order: the
 * result does not depend on the thread count (--reproducible relies on it). */
#define SUMSQ_BLOCK 4096
static double legacy_sum_squares(const float *x, int64_t n)
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
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = lo; i < hi; i++) s += (double)x[i] * x[i];
        part[b] = s;
    }
    double s = 0.0;
    for (int64_t b = 0; b < nb; b++) s += part[b];
    if (part != small) free(part);
    return s;
}

static void legacy_scale(float *x, int64_t n, float alpha)
{
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) x[i] *= alpha;
}

static bool legacy_all_finite(const float *x, int64_t n)
{
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) bad |= !isfinite(x[i]);
    return !bad;
}

/* Update rules follow torch.optim (1.13) operation by operation, so the fixture test can be tight. */
static void legacy_sgd_update(float *w, const float *g, float *buf, int64_t n,
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

static void legacy_adagrad_update(float *w, const float *g, float *sum_sq, int64_t n,
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

static void legacy_adam_update(float *w, const float *g, float *m, float *v, int64_t n,
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

#endif
