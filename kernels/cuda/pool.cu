/* CUDA pooling (max and average, square windows without padding, channels-last) and TextCNN's max
 * over time. One thread per output in the forward passes; the backward passes gather (one thread
 * per input element sums the outputs whose window holds it, in output order), so overlapping
 * windows need no atomics and the sums are deterministic. argmax holds the CPU's index: the
 * offset of the winner inside its sample, ((y * H + x) * C + c). */
#include <float.h>

#include "cuda_common.h"

/* The outputs whose window covers input coordinate i: [*o0, *o1) */
static __device__ inline void covering(int i, int k, int s, int Ho, int *o0, int *o1)
{
    const int lo = i - k + 1;
    *o0 = lo <= 0 ? 0 : (lo + s - 1) / s;
    const int hi = i / s + 1;
    *o1 = hi < Ho ? hi : Ho;
}

__global__ void k_maxpool_fwd(pt_pool2d_desc d, int rows, const float *x, float *y, int32_t *arg)
{
    const int H = d.H, C = d.C, k = d.k, s = d.stride, Ho = d.Ho;
    GRID_STRIDE(o, (int64_t)rows * Ho * Ho * C)
    {
        const int c = (int)(o % C), ox = (int)(o / C % Ho), oy = (int)(o / C / Ho % Ho);
        const int64_t b = o / ((int64_t)Ho * Ho * C);
        float best = -FLT_MAX;
        int32_t at = 0;
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                const int32_t i = ((oy * s + ky) * H + ox * s + kx) * C + c;
                const float v = x[b * H * H * C + i];
                if (v > best) best = v, at = i; /* first maximum wins, as PyTorch */
            }
        y[o] = best;
        arg[o] = at;
    }
}

static pt_status cuda_maxpool2d_forward(const pt_pool2d_desc *d, int rows, const float *x,
                                        float *y, int32_t *argmax)
{
    const int64_t n = (int64_t)rows * d->Ho * d->Ho * d->C;
    if (n <= 0) return PT_OK;
    k_maxpool_fwd<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(*d, rows, x, y,
                                                                                argmax);
    PT_CUDA_LAUNCH_CHECK("maxpool2d_forward");
    return PT_OK;
}

__global__ void k_maxpool_bwd(pt_pool2d_desc d, int rows, const float *dy, const int32_t *arg,
                              float beta, float *dx)
{
    const int H = d.H, C = d.C, k = d.k, s = d.stride, Ho = d.Ho;
    GRID_STRIDE(i, (int64_t)rows * H * H * C)
    {
        const int c = (int)(i % C), ix = (int)(i / C % H), iy = (int)(i / C / H % H);
        const int64_t b = i / ((int64_t)H * H * C);
        const int32_t self = (int32_t)(i - b * H * H * C);
        int oy0, oy1, ox0, ox1;
        covering(iy, k, s, Ho, &oy0, &oy1);
        covering(ix, k, s, Ho, &ox0, &ox1);
        float acc = 0.0f;
        for (int oy = oy0; oy < oy1; oy++)
            for (int ox = ox0; ox < ox1; ox++) {
                const int64_t o = ((b * Ho + oy) * Ho + ox) * C + c;
                if (arg[o] == self) acc += dy[o];
            }
        dx[i] = beta == 0.0f ? acc : beta * dx[i] + acc; /* 0 overwrites: dx may hold anything */
    }
}

static pt_status cuda_maxpool2d_backward(const pt_pool2d_desc *d, int rows, const float *dy,
                                         const int32_t *argmax, float beta, float *dx)
{
    const int64_t n = (int64_t)rows * d->H * d->H * d->C;
    if (n <= 0) return PT_OK;
    k_maxpool_bwd<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(*d, rows, dy, argmax,
                                                                                beta, dx);
    PT_CUDA_LAUNCH_CHECK("maxpool2d_backward");
    return PT_OK;
}

__global__ void k_avgpool_fwd(pt_pool2d_desc d, int rows, const float *x, float *y)
{
    const int H = d.H, C = d.C, k = d.k, s = d.stride, Ho = d.Ho;
    const float inv = 1.0f / (float)(k * k);
    GRID_STRIDE(o, (int64_t)rows * Ho * Ho * C)
    {
        const int c = (int)(o % C), ox = (int)(o / C % Ho), oy = (int)(o / C / Ho % Ho);
        const int64_t b = o / ((int64_t)Ho * Ho * C);
        float acc = 0.0f;
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
                acc += x[((b * H + oy * s + ky) * H + ox * s + kx) * C + c];
        y[o] = acc * inv;
    }
}

static pt_status cuda_avgpool2d_forward(const pt_pool2d_desc *d, int rows, const float *x, float *y)
{
    const int64_t n = (int64_t)rows * d->Ho * d->Ho * d->C;
    if (n <= 0) return PT_OK;
    k_avgpool_fwd<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(*d, rows, x, y);
    PT_CUDA_LAUNCH_CHECK("avgpool2d_forward");
    return PT_OK;
}

__global__ void k_avgpool_bwd(pt_pool2d_desc d, int rows, const float *dy, float beta, float *dx)
{
    const int H = d.H, C = d.C, k = d.k, s = d.stride, Ho = d.Ho;
    const float inv = 1.0f / (float)(k * k);
    GRID_STRIDE(i, (int64_t)rows * H * H * C)
    {
        const int c = (int)(i % C), ix = (int)(i / C % H), iy = (int)(i / C / H % H);
        const int64_t b = i / ((int64_t)H * H * C);
        int oy0, oy1, ox0, ox1;
        covering(iy, k, s, Ho, &oy0, &oy1);
        covering(ix, k, s, Ho, &ox0, &ox1);
        float acc = 0.0f;
        for (int oy = oy0; oy < oy1; oy++)
            for (int ox = ox0; ox < ox1; ox++) acc += dy[((b * Ho + oy) * Ho + ox) * C + c] * inv;
        dx[i] = beta == 0.0f ? acc : beta * dx[i] + acc; /* 0 overwrites: dx may hold anything */
    }
}

static pt_status cuda_avgpool2d_backward(const pt_pool2d_desc *d, int rows, const float *dy,
                                         float beta, float *dx)
{
    const int64_t n = (int64_t)rows * d->H * d->H * d->C;
    if (n <= 0) return PT_OK;
    k_avgpool_bwd<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(*d, rows, dy, beta,
                                                                                dx);
    PT_CUDA_LAUNCH_CHECK("avgpool2d_backward");
    return PT_OK;
}

/* ---- TextCNN: max over the L - k + 1 full windows of each (sample, filter) */

__global__ void k_maxtime_fwd(pt_maxtime_desc d, int rows, const float *conv, const float *bias,
                              float *y, int32_t *arg)
{
    const int L = d.L, F = d.F, k = d.k;
    GRID_STRIDE(i, (int64_t)rows * F)
    {
        const int f = (int)(i % F);
        const int64_t b = i / F;
        float best = -FLT_MAX;
        int32_t at = 0;
        for (int t = 0; t + k <= L; t++) {
            const float v = conv[(b * L + t) * F + f];
            if (v > best) best = v, at = t;
        }
        best += bias[f];
        y[b * d.y_width + d.y_col + f] = best > 0.0f ? best : 0.0f;
        arg[i] = at;
    }
}

static pt_status cuda_maxtime_forward(const pt_maxtime_desc *d, int rows, const float *conv,
                                      const float *bias, float *y, int32_t *argmax)
{
    const int64_t n = (int64_t)rows * d->F;
    if (n <= 0) return PT_OK;
    k_maxtime_fwd<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(*d, rows, conv, bias,
                                                                                y, argmax);
    PT_CUDA_LAUNCH_CHECK("maxtime_forward");
    return PT_OK;
}

/* dconv: dy at each winner, 0 elsewhere (a gather over t per (sample, filter)) */
__global__ void k_maxtime_dconv(pt_maxtime_desc d, int rows, const float *dy, const int32_t *arg,
                                float *dconv)
{
    const int L = d.L, F = d.F;
    GRID_STRIDE(i, (int64_t)rows * L * F)
    {
        const int f = (int)(i % F), t = (int)(i / F % L);
        const int64_t b = i / ((int64_t)L * F);
        dconv[i] = arg[b * F + f] == t ? dy[b * d.y_width + d.y_col + f] : 0.0f;
    }
}

/* db[f] = sum over samples, in order */
__global__ void k_maxtime_db(pt_maxtime_desc d, int rows, const float *dy, float *db)
{
    const int f = blockIdx.x * blockDim.x + threadIdx.x;
    if (f >= d.F) return;
    float s = 0.0f;
    for (int b = 0; b < rows; b++) s += dy[(int64_t)b * d.y_width + d.y_col + f];
    db[f] = s;
}

static pt_status cuda_maxtime_backward(const pt_maxtime_desc *d, int rows, const float *dy,
                                       const int32_t *argmax, float *dconv, float *db)
{
    cudaStream_t st = pt_cuda_stream();
    const int64_t n = (int64_t)rows * d->L * d->F;
    if (n > 0) {
        k_maxtime_dconv<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, st>>>(*d, rows, dy, argmax, dconv);
        PT_CUDA_LAUNCH_CHECK("maxtime_backward (dconv)");
    }
    if (d->F > 0) {
        k_maxtime_db<<<(d->F + 127) / 128, 128, 0, st>>>(*d, rows, dy, db);
        PT_CUDA_LAUNCH_CHECK("maxtime_backward (db)");
    }
    return PT_OK;
}

void pt_cuda_register_pool(pt_backend *be)
{
    be->maxpool2d_forward = cuda_maxpool2d_forward;
    be->maxpool2d_backward = cuda_maxpool2d_backward;
    be->avgpool2d_forward = cuda_avgpool2d_forward;
    be->avgpool2d_backward = cuda_avgpool2d_backward;
    be->maxtime_forward = cuda_maxtime_forward;
    be->maxtime_backward = cuda_maxtime_backward;
}
