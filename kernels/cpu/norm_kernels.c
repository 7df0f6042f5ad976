/* CPU normalization kernels: batch norm in three steps (statistics, apply; backward statistics,
 * backward apply: a synchronized batch norm sums the statistics over the data-parallel group
 * between them) and layer norm. The loops are the ones src/nn/ops_norm.c had, so the bits stay:
 * per-channel sums in double, per block of rows, the blocks added in a fixed order, so a fixed
 * thread count gives the same bits every time. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "cpu_kernels.h"

#define NB_BLOCKS 64 /* row blocks of the channel sums */

/* Scratch: per-block partial sums, NB_BLOCKS x 2C doubles, in floats plus one for aligning the
 * doubles. */
static int64_t cpu_batchnorm_scratch(const pt_batchnorm_desc *d)
{
    return 2 * (int64_t)NB_BLOCKS * 2 * d->C + 1;
}

static double *bn_part(float *scratch)
{
    return (double *)(((uintptr_t)scratch + 7) & ~(uintptr_t)7);
}

/* s0[c], s1[c] = sums over rows [0, N) of two quantities at once: mode 0 sum x, sum x^2 (a = x);
 * mode 1 sum dy, sum dy * xhat (a = dy, b = x). */
static void channel_sums(const float *a, const float *b, const float *mean, const float *rstd,
                         int64_t N, int C, int mode, double *part, double *s0, double *s1)
{
    memset(part, 0, sizeof(double) * (size_t)NB_BLOCKS * 2 * (size_t)C);
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < NB_BLOCKS; blk++) {
        int64_t r0 = N * blk / NB_BLOCKS, r1 = N * (blk + 1) / NB_BLOCKS;
        double *p0 = part + (int64_t)blk * 2 * C, *p1 = p0 + C;
        for (int64_t r = r0; r < r1; r++) {
            const float *ar = a + r * C;
            if (mode == 0) { /* sum x, sum x^2 */
                for (int c = 0; c < C; c++) p0[c] += ar[c], p1[c] += (double)ar[c] * ar[c];
            } else { /* a = dy, b = x: sum dy, sum dy * xhat */
                const float *br = b + r * C;
                for (int c = 0; c < C; c++)
                    p0[c] += ar[c], p1[c] += (double)ar[c] * ((br[c] - mean[c]) * rstd[c]);
            }
        }
    }
    for (int c = 0; c < C; c++) s0[c] = s1[c] = 0.0;
    for (int blk = 0; blk < NB_BLOCKS; blk++)
        for (int c = 0; c < C; c++) s0[c] += part[(int64_t)blk * 2 * C + c],
                                    s1[c] += part[(int64_t)blk * 2 * C + C + c];
}

static pt_status cpu_batchnorm_stats(const pt_batchnorm_desc *d, int64_t n, const float *x,
                                     double *sums, float *scratch)
{
    const int C = d->C;
    channel_sums(x, NULL, NULL, NULL, n, C, 0, bn_part(scratch), sums, sums + C);
    sums[2 * C] = (double)n;
    return PT_OK;
}

static pt_status cpu_batchnorm_forward_apply(const pt_batchnorm_desc *d, int64_t n, const float *x,
                                             const double *sums, const float *gamma,
                                             const float *beta, float *rm, float *rv,
                                             float *mean, float *rstd, float *y)
{
    const int C = d->C;
    const float mom = d->momentum, eps = d->eps;
    if (sums) {
        const double *s0 = sums, *s1 = sums + C, cnt = sums[2 * C];
        for (int c = 0; c < C; c++) {
            double mu = s0[c] / cnt, var = s1[c] / cnt - mu * mu;
            if (var < 0) var = 0;
            mean[c] = (float)mu;
            rstd[c] = (float)(1.0 / sqrt(var + eps));
            rm[c] = (1.0f - mom) * rm[c] + mom * (float)mu;
            rv[c] = (1.0f - mom) * rv[c] + mom * (float)(cnt > 1 ? var * cnt / (cnt - 1) : var);
        }
    } else {
        for (int c = 0; c < C; c++) mean[c] = rm[c], rstd[c] = 1.0f / sqrtf(rv[c] + eps);
    }
    const int relu = d->act == PT_ACT_RELU;
#pragma omp parallel for schedule(static) if (n * C >= PT_CPU_PAR_MIN)
    for (int64_t r = 0; r < n; r++)
        for (int c = 0; c < C; c++) {
            float v = gamma[c] * (x[r * C + c] - mean[c]) * rstd[c] + beta[c];
            y[r * C + c] = relu && v < 0.0f ? 0.0f : v;
        }
    return PT_OK;
}

static pt_status cpu_batchnorm_backward_stats(const pt_batchnorm_desc *d, int64_t n,
                                              const float *dy, const float *x, const float *mean,
                                              const float *rstd, double *sums, float *dgamma,
                                              float *dbeta, float *scratch)
{
    const int C = d->C;
    const double *s0 = sums, *s1 = sums + C;
    channel_sums(dy, x, mean, rstd, n, C, 1, bn_part(scratch), sums, sums + C);
    sums[2 * C] = (double)n;
    for (int c = 0; c < C; c++) dgamma[c] = (float)s1[c], dbeta[c] = (float)s0[c];
    return PT_OK;
}

static pt_status cpu_batchnorm_backward_apply(const pt_batchnorm_desc *d, int64_t n,
                                              const float *dy, const float *x, const float *gamma,
                                              const float *mean, const float *rstd,
                                              const double *sums, float beta_x, float *dx)
{
    const int C = d->C;
    const double *s0 = sums, *s1 = sums + C, cnt = sums[2 * C];
    float a[C], b[C], k[C];
    for (int c = 0; c < C; c++) {
        k[c] = gamma[c] * rstd[c];
        a[c] = (float)(s0[c] / cnt);
        b[c] = (float)(s1[c] / cnt);
    }
    const int acc = beta_x != 0.0f; /* 0 overwrites: dx may hold anything */
#pragma omp parallel for schedule(static) if (n * C >= PT_CPU_PAR_MIN)
    for (int64_t r = 0; r < n; r++)
        for (int c = 0; c < C; c++) {
            const float xhat = (x[r * C + c] - mean[c]) * rstd[c];
            const float v = k[c] * (dy[r * C + c] - a[c] - xhat * b[c]);
            dx[r * C + c] = acc ? beta_x * dx[r * C + c] + v : v;
        }
    return PT_OK;
}

/* ------------------------------------------------------------------ layer norm */

static pt_status cpu_layernorm_forward(const pt_layernorm_desc *d, int64_t n, const float *x,
                                       const float *gamma, const float *beta, float *y,
                                       float *stat)
{
    const int D = d->D;
    const float eps = d->eps;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * D;
        float mu = 0.0f, var = 0.0f;
        for (int i = 0; i < D; i++) mu += xr[i];
        mu /= (float)D;
        for (int i = 0; i < D; i++) var += (xr[i] - mu) * (xr[i] - mu);
        const float rs = 1.0f / sqrtf(var / (float)D + eps);
        float *yr = y + r * D;
        for (int i = 0; i < D; i++) yr[i] = (xr[i] - mu) * rs * gamma[i] + beta[i];
        stat[2 * r] = mu, stat[2 * r + 1] = rs;
    }
    return PT_OK;
}

static pt_status cpu_layernorm_backward(const pt_layernorm_desc *d, int64_t n, const float *x,
                                        const float *dy, const float *gamma, const float *stat,
                                        float *dgamma, float *dbeta, float beta_x, float *dx)
{
    const int D = d->D;
    /* parameter gradients: each thread owns a contiguous range of columns and walks the rows in
     * order through it, LN_COLS columns a pass: each row's part is one contiguous read, where
     * 32-column blocks read 128 bytes of every row and jumped a row ahead (a strided walk, ~5x
     * slower at D 512). Every column is still summed over the rows in order with the same
     * operations, so the bits are those of the blocked loop. The sums are kept in local arrays,
     * which GCC vectorizes (into dgamma/dbeta directly it could not rule out aliasing). */
    enum { LN_COLS = 1024 };
#pragma omp parallel
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        const int per = ((D + 15) / 16 + nt - 1) / nt * 16; /* columns a thread, a multiple of 16 */
        const int lo = t * per < D ? t * per : D, hi = lo + per < D ? lo + per : D;
        for (int c0 = lo; c0 < hi; c0 += LN_COLS) {
            const int w = c0 + LN_COLS < hi ? LN_COLS : hi - c0;
            float ag[LN_COLS], ab[LN_COLS];
            memset(ag, 0, sizeof(float) * (size_t)w), memset(ab, 0, sizeof(float) * (size_t)w);
            for (int64_t r = 0; r < n; r++) {
                const float mu = stat[2 * r], rs = stat[2 * r + 1];
                const float *dyr = dy + r * D + c0, *xr = x + r * D + c0;
                for (int c = 0; c < w; c++) {
                    ag[c] += dyr[c] * (xr[c] - mu) * rs;
                    ab[c] += dyr[c];
                }
            }
            for (int c = 0; c < w; c++) dgamma[c0 + c] = ag[c], dbeta[c0 + c] = ab[c];
        }
    }
    if (!dx) return PT_OK;
    const int acc = beta_x != 0.0f; /* 0 overwrites: dx may hold anything */
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; r++) {
        const float mu = stat[2 * r], rs = stat[2 * r + 1];
        const float *xr = x + r * D, *dyr = dy + r * D;
        float mg = 0.0f, mgx = 0.0f;
        for (int i = 0; i < D; i++) {
            const float g = dyr[i] * gamma[i];
            mg += g, mgx += g * (xr[i] - mu) * rs;
        }
        mg /= (float)D, mgx /= (float)D;
        float *dxr = dx + r * D;
        for (int i = 0; i < D; i++) {
            const float v = rs * (dyr[i] * gamma[i] - mg - (xr[i] - mu) * rs * mgx);
            dxr[i] = acc ? beta_x * dxr[i] + v : v;
        }
    }
    return PT_OK;
}

void pt_cpu_register_norm(pt_backend *be)
{
    be->batchnorm_scratch = cpu_batchnorm_scratch;
    be->batchnorm_stats = cpu_batchnorm_stats;
    be->batchnorm_forward_apply = cpu_batchnorm_forward_apply;
    be->batchnorm_backward_stats = cpu_batchnorm_backward_stats;
    be->batchnorm_backward_apply = cpu_batchnorm_backward_apply;
    be->layernorm_forward = cpu_layernorm_forward;
    be->layernorm_backward = cpu_layernorm_backward;
}
