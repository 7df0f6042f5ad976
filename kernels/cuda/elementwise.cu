/* CUDA elementwise entries: fused bias + activation and its backward, ReLU, residual adds,
 * accumulation, dropout (Philox, the CPU's mask bit for bit) and the reductions (sum of squares
 * in double, all-finite). Grid-stride loops; reductions in a fixed order (cuda_common.h). */
#include <math.h>

#include "cuda_common.h"

static __device__ inline float gelu(float x)
{
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}
static __device__ inline float gelu_grad(float x)
{
    const float inv_sqrt_2pi = 0.3989422804014327f;
    return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) + x * inv_sqrt_2pi * expf(-0.5f * x * x);
}
static __device__ inline float act_f(float v, pt_act act)
{
    switch (act) {
    case PT_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case PT_ACT_GELU: return gelu(v);
    case PT_ACT_TANH: return tanhf(v);
    default: return v;
    }
}

__global__ void k_bias_act(float *y, float *pre, const float *bias, int64_t n, int cols, pt_act act)
{
    GRID_STRIDE(i, n)
    {
        const float v = y[i] + bias[i % cols];
        if (pre) pre[i] = v;
        y[i] = act_f(v, act);
    }
}

static pt_status cuda_bias_act_forward(float *y, float *pre, const float *bias, int rows, int cols,
                                       pt_act act)
{
    const int64_t n = (int64_t)rows * cols;
    if (n <= 0) return PT_OK;
    k_bias_act<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(y, pre, bias, n, cols,
                                                                             act);
    PT_CUDA_LAUNCH_CHECK("bias_act_forward");
    return PT_OK;
}

__global__ void k_act_backward(float *dx, const float *dy, const float *pre, int64_t n, pt_act act)
{
    GRID_STRIDE(i, n)
    {
        const float p = pre ? pre[i] : 0.0f;
        switch (act) {
        case PT_ACT_RELU: dx[i] = p > 0.0f ? dy[i] : 0.0f; break;
        case PT_ACT_GELU: dx[i] = dy[i] * gelu_grad(p); break;
        case PT_ACT_TANH: {
            const float t = tanhf(p);
            dx[i] = dy[i] * (1.0f - t * t);
            break;
        }
        default: dx[i] = dy[i]; break;
        }
    }
}

static pt_status cuda_act_backward(float *dx, const float *dy, const float *pre, int64_t n,
                                   pt_act act)
{
    if (n <= 0 || (act == PT_ACT_NONE && dx == dy)) return PT_OK;
    k_act_backward<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(dx, dy, pre, n,
                                                                                 act);
    PT_CUDA_LAUNCH_CHECK("act_backward");
    return PT_OK;
}

/* One thread per column, rows summed in order (the CPU's order, float accumulation): coalesced
 * across the threads of a row. Not tuned for few wide columns. */
__global__ void k_bias_backward(float *db, const float *dy, int rows, int cols)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float s = 0.0f;
    for (int r = 0; r < rows; r++) s += dy[(int64_t)r * cols + c];
    db[c] = s;
}

static pt_status cuda_bias_backward(float *db, const float *dy, int rows, int cols)
{
    if (cols <= 0) return PT_OK;
    k_bias_backward<<<(cols + 127) / 128, 128, 0, pt_cuda_stream()>>>(db, dy, rows, cols);
    PT_CUDA_LAUNCH_CHECK("bias_backward");
    return PT_OK;
}

__global__ void k_add(float *y, const float *a, const float *b, int64_t n, bool relu)
{
    GRID_STRIDE(i, n)
    {
        const float v = b ? a[i] + b[i] : a[i];
        y[i] = relu && v < 0.0f ? 0.0f : v;
    }
}

static pt_status cuda_relu(float *y, const float *x, int64_t n)
{
    if (n <= 0) return PT_OK;
    k_add<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(y, x, NULL, n, true);
    PT_CUDA_LAUNCH_CHECK("relu");
    return PT_OK;
}

static pt_status cuda_add(float *y, const float *a, const float *b, int64_t n, bool relu)
{
    if (n <= 0) return PT_OK;
    k_add<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(y, a, b, n, relu);
    PT_CUDA_LAUNCH_CHECK("add");
    return PT_OK;
}

static pt_status cuda_accumulate(float *dst, const float *src, int64_t n, float beta)
{
    if (n <= 0) return PT_OK;
    if (beta == 0.0f) {
        if (dst != src)
            PT_CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(float) * (size_t)n,
                                          cudaMemcpyDeviceToDevice, pt_cuda_stream()));
        return PT_OK;
    }
    k_add<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(dst, dst, src, n, false);
    PT_CUDA_LAUNCH_CHECK("accumulate");
    return PT_OK;
}

/* ---- dropout: src/core/rng.c's Philox4x32-10: the same words for (seed, stream, index) */

static __device__ inline void philox(uint64_t seed, uint64_t stream, uint64_t index,
                                     uint32_t out[4])
{
    uint32_t c0 = (uint32_t)index, c1 = (uint32_t)(index >> 32), c2 = (uint32_t)stream,
             c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        const uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        const uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* Element (r, c) has global index g = (row_offset + r) * row_width + col_offset + c and keeps
 * when word g % 4 of Philox block g / 4 is at least the threshold (as the CPU). */
__global__ void k_dropout(float *x, int rows, int cols, int64_t row_offset, int64_t col_offset,
                          int64_t row_width, uint32_t threshold, float keep_scale, uint64_t seed,
                          uint64_t stream)
{
    const int64_t n = (int64_t)rows * cols;
    GRID_STRIDE(i, n)
    {
        const int64_t r = i / cols, c = i % cols;
        const int64_t g = (row_offset + r) * row_width + col_offset + c;
        uint32_t w[4];
        philox(seed, stream, (uint64_t)g >> 2, w);
        x[i] = w[g & 3] >= threshold ? x[i] * keep_scale : 0.0f;
    }
}

static pt_status cuda_dropout_cols(float *x, int rows, int cols, int64_t row_offset,
                                   int64_t col_offset, int64_t row_width, float p, uint64_t seed,
                                   uint64_t stream)
{
    const int64_t n = (int64_t)rows * cols;
    if (p <= 0.0f || n <= 0) return PT_OK;
    const float keep_scale = 1.0f / (1.0f - p);
    const uint32_t threshold = (uint32_t)((double)p * 4294967296.0);
    k_dropout<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(
        x, rows, cols, row_offset, col_offset, row_width, threshold, keep_scale, seed, stream);
    PT_CUDA_LAUNCH_CHECK("dropout");
    return PT_OK;
}

static pt_status cuda_dropout(float *x, int rows, int cols, int64_t row_offset, float p,
                              uint64_t seed, uint64_t stream)
{
    return cuda_dropout_cols(x, rows, cols, row_offset, 0, cols, p, seed, stream);
}

/* ---- reductions */

/* Fixed grid and a fixed tree: the same bits for the same input, every run. */
__global__ void k_sum_squares(const float *x, int64_t n, double *partials)
{
    __shared__ double sh[PT_CUDA_THREADS];
    double s = 0.0;
    GRID_STRIDE(i, n) s += (double)x[i] * x[i];
    s = pt_block_sum(s, sh);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

static double cuda_sum_squares(const float *x, int64_t n)
{
    if (n <= 0) return 0.0;
    double *part = pt_cuda_partials(), out = NAN;
    cudaStream_t st = pt_cuda_stream();
    k_sum_squares<<<PT_CUDA_RED_BLOCKS, PT_CUDA_THREADS, 0, st>>>(x, n, part);
    pt_cuda_sum_partials<<<1, 1, 0, st>>>(part, PT_CUDA_RED_BLOCKS, part + PT_CUDA_RED_BLOCKS);
    PT_CUDA_CHECK_RECORD(cudaGetLastError());
    /* a scalar for the host: synchronizes (NaN when it failed; synchronize says why) */
    PT_CUDA_CHECK_RECORD(cudaMemcpyAsync(&out, part + PT_CUDA_RED_BLOCKS, sizeof out,
                                         cudaMemcpyDeviceToHost, st));
    PT_CUDA_CHECK_RECORD(cudaStreamSynchronize(st));
    return out;
}

__global__ void k_scale(float *x, int64_t n, float alpha)
{
    GRID_STRIDE(i, n) x[i] *= alpha;
}

static pt_status cuda_scale(float *x, int64_t n, float alpha)
{
    if (n <= 0) return PT_OK;
    k_scale<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(x, n, alpha);
    PT_CUDA_LAUNCH_CHECK("scale");
    return PT_OK;
}

__global__ void k_all_finite(const float *x, int64_t n, int *bad)
{
    int b = 0;
    GRID_STRIDE(i, n) b |= !isfinite(x[i]);
    if (b) *bad = 1; /* any writer writes 1: order does not matter */
}

static bool cuda_all_finite(const float *x, int64_t n)
{
    if (n <= 0) return true;
    int *bad = (int *)pt_cuda_partials(), host = 1;
    cudaStream_t st = pt_cuda_stream();
    PT_CUDA_CHECK_RECORD(cudaMemsetAsync(bad, 0, sizeof(int), st));
    k_all_finite<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, st>>>(x, n, bad);
    PT_CUDA_CHECK_RECORD(cudaGetLastError());
    PT_CUDA_CHECK_RECORD(cudaMemcpyAsync(&host, bad, sizeof host, cudaMemcpyDeviceToHost, st));
    PT_CUDA_CHECK_RECORD(cudaStreamSynchronize(st));
    return host == 0; /* a failed check reads as not finite: the caller skips the step */
}

void pt_cuda_register_elementwise(pt_backend *be)
{
    be->bias_act_forward = cuda_bias_act_forward;
    be->act_backward = cuda_act_backward;
    be->bias_backward = cuda_bias_backward;
    be->relu = cuda_relu;
    be->add = cuda_add;
    be->accumulate = cuda_accumulate;
    be->dropout = cuda_dropout;
    be->dropout_cols = cuda_dropout_cols;
    be->sum_squares = cuda_sum_squares;
    be->scale = cuda_scale;
    be->all_finite = cuda_all_finite;
}
