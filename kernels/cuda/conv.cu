/* CUDA conv2d, channels-last: im2col + cuBLAS GEMM per chunk of samples, col2im as a gather (one
 * thread per input element sums the column entries that read it, in a fixed order: no atomics,
 * deterministic). Layouts as the CPU's (src/nn/ops_conv.c): col has Ho*Ho rows per sample and
 * k*k*Cin columns in (ky, kx, c) order, the weight is (Cout, k, k, Cin), so y = col W^T,
 * dW = dy^T col and dcol = dy W. Chunks bound the column matrix to CONV_SCRATCH floats. No direct
 * (implicit-GEMM) kernel: conv2d_uses_direct stays NULL. Not tuned. */
#include "cuda_common.h"

#define CONV_SCRATCH (8 << 20) /* floats, as the CPU */

static int conv_chunk(const pt_conv2d_desc *d, int rows)
{
    const int64_t per = (int64_t)d->Ho * d->Ho * d->k * d->k * d->Cin;
    int64_t c = per > 0 ? CONV_SCRATCH / per : rows;
    if (c < 1) c = 1;
    return (int)(c < rows ? c : rows);
}

static int64_t cuda_conv2d_scratch(const pt_conv2d_desc *d, int rows)
{
    return (int64_t)conv_chunk(d, rows) * d->Ho * d->Ho * d->k * d->k * d->Cin;
}

__global__ void k_im2col(const float *x, int rows, int H, int C, int k, int s, int pad, int Ho,
                         float *col)
{
    const int64_t K = (int64_t)k * k * C, n = (int64_t)rows * Ho * Ho * K;
    GRID_STRIDE(i, n)
    {
        const int64_t row = i / K, j = i % K;
        const int c = (int)(j % C), kx = (int)(j / C % k), ky = (int)(j / C / k);
        const int ox = (int)(row % Ho), oy = (int)(row / Ho % Ho);
        const int64_t b = row / ((int64_t)Ho * Ho);
        const int iy = oy * s - pad + ky, ix = ox * s - pad + kx;
        col[i] = iy >= 0 && iy < H && ix >= 0 && ix < H ? x[((b * H + iy) * H + ix) * C + c] : 0.0f;
    }
}

/* dx = beta dx + the sum of the column entries that read each input element */
__global__ void k_col2im(const float *col, int rows, int H, int C, int k, int s, int pad, int Ho,
                         float beta, float *dx)
{
    const int64_t K = (int64_t)k * k * C, n = (int64_t)rows * H * H * C;
    GRID_STRIDE(i, n)
    {
        const int c = (int)(i % C), ix = (int)(i / C % H), iy = (int)(i / C / H % H);
        const int64_t b = i / ((int64_t)H * H * C);
        float acc = 0.0f;
        for (int ky = 0; ky < k; ky++) {
            const int ty = iy + pad - ky;
            if (ty < 0 || ty % s) continue;
            const int oy = ty / s;
            if (oy >= Ho) continue;
            for (int kx = 0; kx < k; kx++) {
                const int tx = ix + pad - kx;
                if (tx < 0 || tx % s) continue;
                const int ox = tx / s;
                if (ox >= Ho) continue;
                acc += col[((b * Ho + oy) * Ho + ox) * K + ((int64_t)ky * k + kx) * C + c];
            }
        }
        dx[i] = beta == 0.0f ? acc : beta * dx[i] + acc; /* 0 overwrites: dx may hold anything */
    }
}

__global__ void k_bias_relu(float *y, const float *bias, int64_t n, int cols, bool relu)
{
    GRID_STRIDE(i, n)
    {
        const float v = bias ? y[i] + bias[i % cols] : y[i];
        y[i] = relu && v < 0.0f ? 0.0f : v;
    }
}

static pt_status cuda_conv2d_forward(const pt_conv2d_desc *d, int rows, const float *x,
                                     const float *w, const float *bias, pt_act act, float *y,
                                     float *scratch)
{
    const int H = d->H, Cin = d->Cin, Cout = d->Cout, k = d->k, Ho = d->Ho;
    const int K = k * k * Cin, chunk = conv_chunk(d, rows);
    cudaStream_t st = pt_cuda_stream();
    for (int b0 = 0; b0 < rows; b0 += chunk) {
        const int cb = rows - b0 < chunk ? rows - b0 : chunk;
        const int64_t n = (int64_t)cb * Ho * Ho * K;
        k_im2col<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, st>>>(x + (int64_t)b0 * H * H * Cin, cb,
                                                                  H, Cin, k, d->stride, d->pad, Ho,
                                                                  scratch);
        PT_CUDA_LAUNCH_CHECK("conv2d im2col");
        PT_TRY(pt_cuda_gemm(false, true, cb * Ho * Ho, Cout, K, 1.0f, scratch, K, w, K, 0.0f,
                            y + (int64_t)b0 * Ho * Ho * Cout, Cout));
    }
    const int64_t ny = (int64_t)rows * Ho * Ho * Cout;
    if ((bias || act == PT_ACT_RELU) && ny > 0) {
        k_bias_relu<<<pt_cuda_blocks(ny), PT_CUDA_THREADS, 0, st>>>(y, bias, ny, Cout,
                                                                     act == PT_ACT_RELU);
        PT_CUDA_LAUNCH_CHECK("conv2d bias + ReLU");
    }
    return PT_OK;
}

static pt_status cuda_conv2d_backward_weight(const pt_conv2d_desc *d, int rows, const float *x,
                                             const float *dy, float beta_w, float *dw,
                                             float *scratch)
{
    const int H = d->H, Cin = d->Cin, Cout = d->Cout, k = d->k, Ho = d->Ho;
    const int K = k * k * Cin, chunk = conv_chunk(d, rows);
    cudaStream_t st = pt_cuda_stream();
    for (int b0 = 0; b0 < rows; b0 += chunk) {
        const int cb = rows - b0 < chunk ? rows - b0 : chunk;
        const int64_t n = (int64_t)cb * Ho * Ho * K;
        k_im2col<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, st>>>(x + (int64_t)b0 * H * H * Cin, cb,
                                                                  H, Cin, k, d->stride, d->pad, Ho,
                                                                  scratch);
        PT_CUDA_LAUNCH_CHECK("conv2d im2col");
        PT_TRY(pt_cuda_gemm(true, false, Cout, K, cb * Ho * Ho, 1.0f,
                            dy + (int64_t)b0 * Ho * Ho * Cout, Cout, scratch, K,
                            b0 ? 1.0f : beta_w, dw, K));
    }
    return PT_OK;
}

static pt_status cuda_conv2d_backward_input(const pt_conv2d_desc *d, int rows, const float *dy,
                                            const float *w, float beta_x, float *dx,
                                            float *scratch)
{
    const int H = d->H, Cin = d->Cin, Cout = d->Cout, k = d->k, Ho = d->Ho;
    const int K = k * k * Cin, chunk = conv_chunk(d, rows);
    cudaStream_t st = pt_cuda_stream();
    for (int b0 = 0; b0 < rows; b0 += chunk) {
        const int cb = rows - b0 < chunk ? rows - b0 : chunk;
        PT_TRY(pt_cuda_gemm(false, false, cb * Ho * Ho, K, Cout, 1.0f,
                            dy + (int64_t)b0 * Ho * Ho * Cout, Cout, w, K, 0.0f, scratch, K));
        const int64_t n = (int64_t)cb * H * H * Cin;
        k_col2im<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, st>>>(scratch, cb, H, Cin, k, d->stride,
                                                                  d->pad, Ho, beta_x,
                                                                  dx + (int64_t)b0 * H * H * Cin);
        PT_CUDA_LAUNCH_CHECK("conv2d col2im");
    }
    return PT_OK;
}

void pt_cuda_register_conv(pt_backend *be)
{
    be->conv2d_scratch = cuda_conv2d_scratch;
    be->conv2d_forward = cuda_conv2d_forward;
    be->conv2d_backward_weight = cuda_conv2d_backward_weight;
    be->conv2d_backward_input = cuda_conv2d_backward_input;
    be->conv2d_uses_direct = NULL; /* im2col + GEMM only */
}
