/* CUDA batch norm (the three steps of backend.h, so a synchronized batch norm can allreduce the
 * sums between them) and layer norm. Batch-norm channel sums are in double: NB_BLOCKS row blocks
 * each sum their rows per channel (8 row lanes, added in a fixed order), then one thread per
 * channel adds the blocks in order, so the sums are the same bits every run. Layer norm: one
 * thread per row, the CPU's float order; its parameter gradients one thread per column, rows in
 * order. Correct, not tuned (rows are short in these models). */
#include <math.h>

#include "cuda_common.h"

#define NB_BLOCKS 64
#define LANES 8

/* scratch: NB_BLOCKS x 2C doubles of partials (in floats, plus one to align the doubles) */
static int64_t cuda_batchnorm_scratch(const pt_batchnorm_desc *d)
{
    return 2 * ((int64_t)NB_BLOCKS * 2 * d->C) + 2;
}
static double *part_of(float *scratch)
{
    return (double *)(((uintptr_t)scratch + 7) & ~(uintptr_t)7);
}

/* grid (ceil(C / 32), NB_BLOCKS), block (32, LANES): partials of sum a, sum a * b' per channel,
 * where mode 0: a = x, b' = x; mode 1: a = dy, b' = xhat = (x - mean) rstd */
__global__ void k_channel_part(const float *a, const float *x, const float *mean, const float *rstd,
                               int64_t n, int C, int mode, double *part)
{
    __shared__ double s0[LANES][32], s1[LANES][32];
    const int c = blockIdx.x * 32 + threadIdx.x, blk = blockIdx.y;
    const int64_t r0 = n * blk / NB_BLOCKS, r1 = n * (blk + 1) / NB_BLOCKS;
    double p0 = 0.0, p1 = 0.0;
    if (c < C)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += LANES) {
            const float v = a[r * C + c];
            p0 += v;
            p1 += mode == 0 ? (double)v * v : (double)v * ((x[r * C + c] - mean[c]) * rstd[c]);
        }
    s0[threadIdx.y][threadIdx.x] = p0, s1[threadIdx.y][threadIdx.x] = p1;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        double t0 = 0.0, t1 = 0.0;
        for (int l = 0; l < LANES; l++) t0 += s0[l][threadIdx.x], t1 += s1[l][threadIdx.x];
        part[(int64_t)blk * 2 * C + c] = t0;
        part[(int64_t)blk * 2 * C + C + c] = t1;
    }
}

/* sums[c], sums[C + c]: the blocks in order; sums[2C] = n. For the backward also dgamma, dbeta. */
__global__ void k_channel_total(const double *part, int C, int64_t n, double *sums, float *dgamma,
                                float *dbeta)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c == 0) sums[2 * C] = (double)n;
    if (c >= C) return;
    double t0 = 0.0, t1 = 0.0;
    for (int b = 0; b < NB_BLOCKS; b++)
        t0 += part[(int64_t)b * 2 * C + c], t1 += part[(int64_t)b * 2 * C + C + c];
    sums[c] = t0, sums[C + c] = t1;
    if (dgamma) dgamma[c] = (float)t1, dbeta[c] = (float)t0;
}

static pt_status channel_sums(const float *a, const float *x, const float *mean, const float *rstd,
                              int64_t n, int C, int mode, double *sums, float *dgamma,
                              float *dbeta, float *scratch)
{
    cudaStream_t st = pt_cuda_stream();
    double *part = part_of(scratch);
    const dim3 grid((C + 31) / 32, NB_BLOCKS), block(32, LANES);
    k_channel_part<<<grid, block, 0, st>>>(a, x, mean, rstd, n, C, mode, part);
    PT_CUDA_LAUNCH_CHECK("batch norm channel sums");
    k_channel_total<<<(C + 127) / 128, 128, 0, st>>>(part, C, n, sums, dgamma, dbeta);
    PT_CUDA_LAUNCH_CHECK("batch norm channel totals");
    return PT_OK;
}

static pt_status cuda_batchnorm_stats(const pt_batchnorm_desc *d, int64_t n, const float *x,
                                      double *sums, float *scratch)
{
    if (d->C <= 0) return PT_OK;
    return channel_sums(x, NULL, NULL, NULL, n, d->C, 0, sums, NULL, NULL, scratch);
}

/* per channel: mean, rstd (and the running statistics) as the CPU's bn_forward */
__global__ void k_bn_stats(pt_batchnorm_desc d, const double *sums, float *rm, float *rv,
                           float *mean, float *rstd)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x, C = d.C;
    if (c >= C) return;
    const float mom = d.momentum, eps = d.eps;
    if (sums) {
        const double cnt = sums[2 * C], mu = sums[c] / cnt;
        double var = sums[C + c] / cnt - mu * mu;
        if (var < 0) var = 0;
        mean[c] = (float)mu;
        rstd[c] = (float)(1.0 / sqrt(var + eps));
        rm[c] = (1.0f - mom) * rm[c] + mom * (float)mu;
        rv[c] = (1.0f - mom) * rv[c] + mom * (float)(cnt > 1 ? var * cnt / (cnt - 1) : var);
    } else {
        mean[c] = rm[c], rstd[c] = 1.0f / sqrtf(rv[c] + eps);
    }
}

__global__ void k_bn_apply(const float *x, const float *gamma, const float *beta,
                           const float *mean, const float *rstd, int64_t n, int C, bool relu,
                           float *y)
{
    GRID_STRIDE(i, n * C)
    {
        const int c = (int)(i % C);
        const float v = gamma[c] * (x[i] - mean[c]) * rstd[c] + beta[c];
        y[i] = relu && v < 0.0f ? 0.0f : v;
    }
}

static pt_status cuda_batchnorm_forward_apply(const pt_batchnorm_desc *d, int64_t n, const float *x,
                                              const double *sums, const float *gamma,
                                              const float *beta, float *running_mean,
                                              float *running_var, float *mean, float *rstd,
                                              float *y)
{
    const int C = d->C;
    if (C <= 0) return PT_OK;
    cudaStream_t st = pt_cuda_stream();
    k_bn_stats<<<(C + 127) / 128, 128, 0, st>>>(*d, sums, running_mean, running_var, mean, rstd);
    PT_CUDA_LAUNCH_CHECK("batch norm statistics");
    if (n * C > 0) {
        k_bn_apply<<<pt_cuda_blocks(n * C), PT_CUDA_THREADS, 0, st>>>(x, gamma, beta, mean, rstd, n,
                                                                       C, d->act == PT_ACT_RELU, y);
        PT_CUDA_LAUNCH_CHECK("batch norm apply");
    }
    return PT_OK;
}

static pt_status cuda_batchnorm_backward_stats(const pt_batchnorm_desc *d, int64_t n,
                                               const float *dy, const float *x, const float *mean,
                                               const float *rstd, double *sums, float *dgamma,
                                               float *dbeta, float *scratch)
{
    if (d->C <= 0) return PT_OK;
    return channel_sums(dy, x, mean, rstd, n, d->C, 1, sums, dgamma, dbeta, scratch);
}

__global__ void k_bn_backward_apply(const float *dy, const float *x, const float *gamma,
                                    const float *mean, const float *rstd, const double *sums,
                                    int64_t n, int C, float beta_x, float *dx)
{
    const double cnt = sums[2 * C];
    GRID_STRIDE(i, n * C)
    {
        const int c = (int)(i % C);
        const float k = gamma[c] * rstd[c], a = (float)(sums[c] / cnt);
        const float b = (float)(sums[C + c] / cnt);
        const float xhat = (x[i] - mean[c]) * rstd[c];
        const float v = k * (dy[i] - a - xhat * b);
        dx[i] = beta_x != 0.0f ? beta_x * dx[i] + v : v;
    }
}

static pt_status cuda_batchnorm_backward_apply(const pt_batchnorm_desc *d, int64_t n,
                                               const float *dy, const float *x,
                                               const float *gamma, const float *mean,
                                               const float *rstd, const double *sums,
                                               float beta_x, float *dx)
{
    const int C = d->C;
    if (n * C <= 0) return PT_OK;
    k_bn_backward_apply<<<pt_cuda_blocks(n * C), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(
        dy, x, gamma, mean, rstd, sums, n, C, beta_x, dx);
    PT_CUDA_LAUNCH_CHECK("batch norm backward apply");
    return PT_OK;
}

/* ---- layer norm */

__global__ void k_ln_forward(const float *x, const float *gamma, const float *beta, int64_t n,
                             int D, float eps, float *y, float *stat)
{
    GRID_STRIDE(r, n)
    {
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
}

static pt_status cuda_layernorm_forward(const pt_layernorm_desc *d, int64_t n, const float *x,
                                        const float *gamma, const float *beta, float *y,
                                        float *stat)
{
    if (n <= 0) return PT_OK;
    k_ln_forward<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(x, gamma, beta, n,
                                                                               d->D, d->eps, y,
                                                                               stat);
    PT_CUDA_LAUNCH_CHECK("layernorm_forward");
    return PT_OK;
}

__global__ void k_ln_param_grad(const float *x, const float *dy, const float *stat, int64_t n,
                                int D, float *dgamma, float *dbeta)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= D) return;
    float g = 0.0f, b = 0.0f;
    for (int64_t r = 0; r < n; r++) {
        g += dy[r * D + c] * (x[r * D + c] - stat[2 * r]) * stat[2 * r + 1];
        b += dy[r * D + c];
    }
    dgamma[c] = g, dbeta[c] = b;
}

__global__ void k_ln_input_grad(const float *x, const float *dy, const float *gamma,
                                const float *stat, int64_t n, int D, float beta_x, float *dx)
{
    GRID_STRIDE(r, n)
    {
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
            dxr[i] = beta_x != 0.0f ? beta_x * dxr[i] + v : v;
        }
    }
}

static pt_status cuda_layernorm_backward(const pt_layernorm_desc *d, int64_t n, const float *x,
                                         const float *dy, const float *gamma, const float *stat,
                                         float *dgamma, float *dbeta, float beta_x, float *dx)
{
    const int D = d->D;
    cudaStream_t st = pt_cuda_stream();
    if (D > 0) {
        k_ln_param_grad<<<(D + 127) / 128, 128, 0, st>>>(x, dy, stat, n, D, dgamma, dbeta);
        PT_CUDA_LAUNCH_CHECK("layernorm_backward (parameters)");
    }
    if (dx && n > 0) {
        k_ln_input_grad<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, st>>>(x, dy, gamma, stat, n, D,
                                                                        beta_x, dx);
        PT_CUDA_LAUNCH_CHECK("layernorm_backward (input)");
    }
    return PT_OK;
}

void pt_cuda_register_norm(pt_backend *be)
{
    be->batchnorm_scratch = cuda_batchnorm_scratch;
    be->batchnorm_stats = cuda_batchnorm_stats;
    be->batchnorm_forward_apply = cuda_batchnorm_forward_apply;
    be->batchnorm_backward_stats = cuda_batchnorm_backward_stats;
    be->batchnorm_backward_apply = cuda_batchnorm_backward_apply;
    be->layernorm_forward = cuda_layernorm_forward;
    be->layernorm_backward = cuda_layernorm_backward;
}
