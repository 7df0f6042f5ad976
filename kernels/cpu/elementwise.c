/* CPU elementwise entries: fused bias + activation and its backward, ReLU, residual adds,
 * accumulation, dropout (Philox masks keyed by the global element index) and the reductions.
 * The loops that matter for speed are compiled once per ISA level (elementwise_kernels.c) and
 * picked at run time; these entries call the chosen table. */
#include <omp.h>
#include <string.h>

#include "cpu_kernels.h"
#include "elementwise_kernels.h"
#include "paratrain/rng.h"

static pt_status cpu_bias_act_forward(float *y, float *pre, const float *bias, int rows, int cols,
                                      pt_act act)
{
    pt_cpu_ew_kernels_get()->bias_act_forward(y, pre, bias, rows, cols, act);
    return PT_OK;
}

static pt_status cpu_act_backward(float *dx, const float *dy, const float *pre, int64_t n,
                                  pt_act act)
{
    pt_cpu_ew_kernels_get()->act_backward(dx, dy, pre, n, act);
    return PT_OK;
}

static pt_status cpu_bias_backward(float *db, const float *dy, int rows, int cols)
{
    pt_cpu_ew_kernels_get()->bias_backward(db, dy, rows, cols);
    return PT_OK;
}

static pt_status cpu_relu(float *y, const float *x, int64_t n)
{
#pragma omp parallel for simd schedule(static) if (n >= PT_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
    return PT_OK;
}

static pt_status cpu_add(float *y, const float *a, const float *b, int64_t n, bool relu)
{
#pragma omp parallel for simd schedule(static) if (n >= PT_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float v = a[i] + b[i];
        y[i] = relu && v < 0.0f ? 0.0f : v;
    }
    return PT_OK;
}

static pt_status cpu_accumulate(float *dst, const float *src, int64_t n, float beta)
{
    if (beta == 0.0f) {
        if (n > 0 && dst != src) memcpy(dst, src, sizeof(float) * (size_t)n);
        return PT_OK;
    }
#pragma omp parallel for simd schedule(static) if (n >= PT_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
    return PT_OK;
}

static pt_status cpu_dropout(float *x, int rows, int cols, int64_t row_offset, float p, uint64_t seed,
                        uint64_t stream)
{
    if (p <= 0.0f) return PT_OK;
    const float keep_scale = 1.0f / (1.0f - p);
    /* One Philox block gives four 32-bit draws: index i uses block i/4, word i%4. */
    const uint32_t threshold = (uint32_t)((double)p * 4294967296.0);
    const int64_t n = (int64_t)rows * cols, base = row_offset * cols;
#pragma omp parallel for schedule(static) if (n >= PT_CPU_PAR_MIN)
    for (int64_t blk = 0; blk < (n + 3) / 4 + 1; blk++) {
        /* Align blocks to the global index so the mask of element i never depends on base. */
        int64_t g0 = ((base >> 2) + blk) * 4;
        uint32_t w[4];
        pt_rng_block(seed, stream, (uint64_t)(g0 >> 2), w);
        for (int j = 0; j < 4; j++) {
            int64_t i = g0 + j - base;
            if (i < 0 || i >= n) continue;
            x[i] = w[j] >= threshold ? x[i] * keep_scale : 0.0f;
        }
    }
    return PT_OK;
}

static pt_status cpu_dropout_cols(float *x, int rows, int cols, int64_t row_offset, int64_t col_offset,
                             int64_t row_width, float p, uint64_t seed, uint64_t stream)
{
    if (p <= 0.0f) return PT_OK;
    if (col_offset == 0 && row_width == cols) { /* whole rows: one contiguous index range */
        return cpu_dropout(x, rows, cols, row_offset, p, seed, stream);
    }
    const float keep_scale = 1.0f / (1.0f - p);
    const uint32_t threshold = (uint32_t)((double)p * 4294967296.0);
#pragma omp parallel for schedule(static) if ((int64_t)rows * cols >= PT_CPU_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const int64_t base = (row_offset + r) * row_width + col_offset; /* global index of c = 0 */
        float *xr = x + (int64_t)r * cols;
        /* as cpu_dropout: global index i takes word i % 4 of Philox block i / 4 */
        for (int64_t g0 = (base >> 2) * 4; g0 < base + cols; g0 += 4) {
            uint32_t w[4];
            pt_rng_block(seed, stream, (uint64_t)(g0 >> 2), w);
            for (int j = 0; j < 4; j++) {
                const int64_t c = g0 + j - base;
                if (c < 0 || c >= cols) continue;
                xr[c] = w[j] >= threshold ? xr[c] * keep_scale : 0.0f;
            }
        }
    }
    return PT_OK;
}

static double cpu_sum_squares(const float *x, int64_t n)
{
    return pt_cpu_ew_kernels_get()->sum_squares(x, n);
}

static pt_status cpu_scale(float *x, int64_t n, float alpha)
{
    pt_cpu_ew_kernels_get()->scale(x, n, alpha);
    return PT_OK;
}

static bool cpu_all_finite(const float *x, int64_t n)
{
    return pt_cpu_ew_kernels_get()->all_finite(x, n);
}

void pt_cpu_register_elementwise(pt_backend *be)
{
    be->bias_act_forward = cpu_bias_act_forward;
    be->act_backward = cpu_act_backward;
    be->bias_backward = cpu_bias_backward;
    be->relu = cpu_relu;
    be->add = cpu_add;
    be->accumulate = cpu_accumulate;
    be->dropout = cpu_dropout;
    be->dropout_cols = cpu_dropout_cols;
    be->sum_squares = cpu_sum_squares;
    be->scale = cpu_scale;
    be->all_finite = cpu_all_finite;
}
