/* CUDA loss entries: softmax cross-entropy (double sums, as the CPU), a language model's targets,
 * and the three steps of the vocabulary-parallel cross-entropy. One block per row (a grid-stride
 * over rows); the summed loss and the correct count go through per-block partials added in block
 * order, so the result is the same every run. Entries returning the loss synchronize. */
#include <math.h>

#include "cuda_common.h"

/* Row r of the logits: max and first argmax (the CPU's), then the double sum of exp(z - max). */
static __device__ void row_stats(const float *z, int cols, float *mx, int *am, double *sum,
                                 float *shv, int *shi, double *shd)
{
    float v = -INFINITY;
    int vi = -1;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        if (vi < 0 || z[c] > v) v = z[c], vi = c;
    pt_block_argmax(&v, &vi, shv, shi);
    double s = 0.0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s += exp((double)(z[c] - v));
    *sum = pt_block_sum(s, shd);
    *mx = v, *am = vi;
}

/* partials[b] = block b's loss, partials[RED_BLOCKS + b] = its correct count */
__global__ void k_softmax_xent(const float *logits, const int32_t *labels, int rows, int cols,
                               float grad_scale, float *dlogits, double *partials)
{
    __shared__ float shv[PT_CUDA_THREADS];
    __shared__ int shi[PT_CUDA_THREADS];
    __shared__ double shd[PT_CUDA_THREADS];
    double loss = 0.0, correct = 0.0;
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *z = logits + (int64_t)r * cols;
        float mx;
        int am;
        double sum;
        row_stats(z, cols, &mx, &am, &sum, shv, shi, shd);
        const int y = labels[r];
        loss += log(sum) - (double)(z[y] - mx);
        correct += am == y;
        if (dlogits) {
            float *d = dlogits + (int64_t)r * cols;
            const double inv = 1.0 / sum;
            for (int c = threadIdx.x; c < cols; c += blockDim.x) {
                const float p = (float)(exp((double)(z[c] - mx)) * inv) * grad_scale;
                d[c] = c == y ? p - grad_scale : p;
            }
        }
    }
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = loss;
        partials[PT_CUDA_RED_BLOCKS + blockIdx.x] = correct;
    }
}

/* Adds both partial arrays, writes out[0] = loss, out[1] = correct. */
__global__ void k_sum2(const double *p, int n, double *out)
{
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        double a = 0.0, b = 0.0;
        for (int i = 0; i < n; i++) a += p[i], b += p[PT_CUDA_RED_BLOCKS + i];
        out[0] = a, out[1] = b;
    }
}

/* Reduces the partials of `blocks` blocks and brings (loss, correct) to the host. */
static double finish_partials(int blocks, int64_t *correct)
{
    double *part = pt_cuda_partials(), out[2] = {NAN, 0.0};
    cudaStream_t st = pt_cuda_stream();
    k_sum2<<<1, 1, 0, st>>>(part, blocks, part + 2 * PT_CUDA_RED_BLOCKS);
    PT_CUDA_CHECK_RECORD(cudaGetLastError());
    PT_CUDA_CHECK_RECORD(cudaMemcpyAsync(out, part + 2 * PT_CUDA_RED_BLOCKS, sizeof out,
                                         cudaMemcpyDeviceToHost, st));
    PT_CUDA_CHECK_RECORD(cudaStreamSynchronize(st));
    if (correct) *correct = (int64_t)out[1];
    return out[0];
}

static int row_blocks(int rows)
{
    return rows < PT_CUDA_RED_BLOCKS ? (rows > 0 ? rows : 1) : PT_CUDA_RED_BLOCKS;
}

static double cuda_softmax_xent(const float *logits, const int32_t *labels, int rows, int cols,
                                float grad_scale, float *dlogits, int64_t *correct)
{
    const int nb = row_blocks(rows);
    k_softmax_xent<<<nb, PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(logits, labels, rows, cols,
                                                                 grad_scale, dlogits,
                                                                 pt_cuda_partials());
    PT_CUDA_CHECK_RECORD(cudaGetLastError());
    return finish_partials(nb, correct);
}

__global__ void k_lm_targets(const float *tokens, int rows, int T, int stride, int32_t *tgt)
{
    GRID_STRIDE(i, (int64_t)rows * T)
    {
        const int64_t r = i / T, t = i % T;
        tgt[i] = (int32_t)tokens[r * stride + t + 1];
    }
}

static pt_status cuda_lm_targets(const float *tokens, int rows, int T, int stride, int32_t *tgt)
{
    const int64_t n = (int64_t)rows * T;
    if (n <= 0) return PT_OK;
    k_lm_targets<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(tokens, rows, T,
                                                                               stride, tgt);
    PT_CUDA_LAUNCH_CHECK("lm_targets");
    return PT_OK;
}

/* ---- vocabulary-parallel: stat = [max (rows) | (sum, z[y] - max) (2 rows) | argmax (rows)] */

__global__ void k_vp_max(const float *logits, int rows, int cols, double *stat)
{
    __shared__ float shv[PT_CUDA_THREADS];
    __shared__ int shi[PT_CUDA_THREADS];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *z = logits + (int64_t)r * cols;
        float v = -INFINITY;
        int vi = -1;
        for (int c = threadIdx.x; c < cols; c += blockDim.x)
            if (vi < 0 || z[c] > v) v = z[c], vi = c;
        pt_block_argmax(&v, &vi, shv, shi);
        if (threadIdx.x == 0) stat[r] = v;
    }
}

static pt_status cuda_vp_xent_max(const float *logits, int rows, int cols, double *stat)
{
    if (rows <= 0) return PT_OK;
    k_vp_max<<<row_blocks(rows), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(logits, rows, cols, stat);
    PT_CUDA_LAUNCH_CHECK("vp_xent_max");
    return PT_OK;
}

__global__ void k_vp_sums(const float *logits, const int32_t *labels, int rows, int cols,
                          int64_t v0, double *stat)
{
    __shared__ double shd[PT_CUDA_THREADS];
    __shared__ float shv[PT_CUDA_THREADS];
    __shared__ int shi[PT_CUDA_THREADS];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *z = logits + (int64_t)r * cols;
        const float mx = (float)stat[r];
        double s = 0.0;
        int first = -1;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) {
            s += exp((double)(z[c] - mx));
            if (first < 0 && z[c] == mx) first = c;
        }
        s = pt_block_sum(s, shd);
        /* the lowest index holding the max: an argmax over (is max, -index) */
        float key = first >= 0 ? 1.0f : 0.0f;
        pt_block_argmax(&key, &first, shv, shi);
        if (threadIdx.x == 0) {
            const int64_t y = labels[r] - v0;
            stat[rows + 2 * r] = s;
            stat[rows + 2 * r + 1] = y >= 0 && y < cols ? (double)(z[y] - mx) : 0.0;
            stat[3 * rows + r] = key > 0.0f ? (double)(v0 + first) : INFINITY;
        }
    }
}

static pt_status cuda_vp_xent_sums(const float *logits, const int32_t *labels, int rows, int cols,
                                   int64_t v0, double *stat)
{
    if (rows <= 0) return PT_OK;
    k_vp_sums<<<row_blocks(rows), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(logits, labels, rows,
                                                                          cols, v0, stat);
    PT_CUDA_LAUNCH_CHECK("vp_xent_sums");
    return PT_OK;
}

__global__ void k_vp_finish(const float *logits, const int32_t *labels, int rows, int cols,
                            int64_t v0, const double *stat, float grad_scale, float *dlogits,
                            double *partials)
{
    double loss = 0.0, correct = 0.0;
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const double sum = stat[rows + 2 * r];
        loss += log(sum) - stat[rows + 2 * r + 1];
        correct += stat[3 * rows + r] == (double)labels[r];
        if (dlogits) {
            const float *z = logits + (int64_t)r * cols;
            const float mx = (float)stat[r];
            const double inv = 1.0 / sum;
            const int64_t y = labels[r] - v0;
            float *d = dlogits + (int64_t)r * cols;
            for (int c = threadIdx.x; c < cols; c += blockDim.x) {
                const float p = (float)(exp((double)(z[c] - mx)) * inv) * grad_scale;
                d[c] = c == y ? p - grad_scale : p;
            }
        }
    }
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = loss;
        partials[PT_CUDA_RED_BLOCKS + blockIdx.x] = correct;
    }
}

static double cuda_vp_xent_finish(const float *logits, const int32_t *labels, int rows, int cols,
                                  int64_t v0, const double *stat, float grad_scale,
                                  float *dlogits, int64_t *correct)
{
    const int nb = row_blocks(rows);
    k_vp_finish<<<nb, PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(logits, labels, rows, cols, v0, stat,
                                                              grad_scale, dlogits,
                                                              pt_cuda_partials());
    PT_CUDA_CHECK_RECORD(cudaGetLastError());
    return finish_partials(nb, correct);
}

void pt_cuda_register_loss(pt_backend *be)
{
    be->softmax_xent = cuda_softmax_xent;
    be->lm_targets = cuda_lm_targets;
    be->vp_xent_max = cuda_vp_xent_max;
    be->vp_xent_sums = cuda_vp_xent_sums;
    be->vp_xent_finish = cuda_vp_xent_finish;
}
