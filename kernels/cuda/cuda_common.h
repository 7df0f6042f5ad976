/* What the CUDA backend's op families share (kernels/cuda/<family>.cu): the one stream every entry
 * queues on, the cuBLAS handle, the check macros and the register function of each family.
 * Runtime API only (cudart + cuBLAS): a binary linked with -lcuda does not start without a driver.
 *
 * Errors: an entry that returns a status returns the failure of its own calls (a launch's
 * configuration error, a cuBLAS status); a kernel that faults while running is only seen by a
 * later call, at the latest by `synchronize`. Entries without a status (alloc, copies) record their
 * first failure with pt_cuda_record, and `synchronize` returns it. */
#ifndef PT_CUDA_COMMON_H
#define PT_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "paratrain/backend.h"
#include "paratrain/error.h"

/* The stream of every entry and the cuBLAS handle bound to it (created on first use). */
cudaStream_t pt_cuda_stream(void);
cublasHandle_t pt_cuda_blas(void);
/* --reproducible (set_deterministic): no TF32, pedantic cuBLAS math, fixed kernel shapes. */
bool pt_cuda_deterministic(void);

/* Records the first failure of an entry that cannot return one; synchronize reports it. */
void pt_cuda_record(pt_status st);
const char *pt_cublas_status_name(cublasStatus_t s);

#define PT_CUDA_HINT                                                                               \
    "run with CUDA_LAUNCH_BLOCKING=1 (or under compute-sanitizer) to find the failing kernel"

/* Every CUDA runtime call: what failed, cudaGetErrorName/String, file:line (PT_ERR) and a hint. */
#define PT_CUDA_CHECK(call)                                                                        \
    do {                                                                                           \
        cudaError_t pt_cu_rc_ = (call);                                                            \
        if (pt_cu_rc_ != cudaSuccess)                                                              \
            return PT_ERR(PT_ERR_CUDA, PT_CUDA_HINT, "%s failed: %s (%s)", #call,                  \
                          cudaGetErrorName(pt_cu_rc_), cudaGetErrorString(pt_cu_rc_));             \
    } while (0)
/* The same in an entry without a status: records the failure (synchronize returns it). */
#define PT_CUDA_CHECK_RECORD(call)                                                                 \
    do {                                                                                           \
        cudaError_t pt_cu_rc_ = (call);                                                            \
        if (pt_cu_rc_ != cudaSuccess)                                                              \
            pt_cuda_record(PT_ERR(PT_ERR_CUDA, PT_CUDA_HINT, "%s failed: %s (%s)", #call,          \
                                  cudaGetErrorName(pt_cu_rc_), cudaGetErrorString(pt_cu_rc_)));    \
    } while (0)
#define PT_CUBLAS_CHECK(call)                                                                      \
    do {                                                                                           \
        cublasStatus_t pt_cb_rc_ = (call);                                                         \
        if (pt_cb_rc_ != CUBLAS_STATUS_SUCCESS)                                                    \
            return PT_ERR(PT_ERR_CUDA,                                                             \
                          "check the GEMM's shapes and leading dimensions (row-major, see "        \
                          "backend.h)",                                                            \
                          "%s failed: %s", #call, pt_cublas_status_name(pt_cb_rc_));              \
    } while (0)
/* After a kernel launch: a bad configuration (grid, block, shared memory) shows here. */
#define PT_CUDA_LAUNCH_CHECK(what)                                                                 \
    do {                                                                                           \
        cudaError_t pt_cu_rc_ = cudaGetLastError();                                                \
        if (pt_cu_rc_ != cudaSuccess)                                                              \
            return PT_ERR(PT_ERR_CUDA, PT_CUDA_HINT, "launching %s failed: %s (%s)", (what),       \
                          cudaGetErrorName(pt_cu_rc_), cudaGetErrorString(pt_cu_rc_));             \
    } while (0)

/* Grid of a 1-D elementwise kernel over n elements (grid-stride loops cover the rest). */
#define PT_CUDA_THREADS 256
static inline unsigned pt_cuda_blocks(int64_t n)
{
    int64_t b = (n + PT_CUDA_THREADS - 1) / PT_CUDA_THREADS;
    if (b < 1) b = 1;
    return (unsigned)(b < 65535 * 8 ? b : 65535 * 8);
}

/* A grid-stride loop over [0, n). */
#define GRID_STRIDE(i, n)                                                                          \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)blockDim.x * gridDim.x)

/* Fixed-order reductions (deterministic for any input: no atomics on floats). A reduction kernel
 * runs PT_CUDA_RED_BLOCKS blocks of PT_CUDA_THREADS threads, each block writes one partial, and
 * one thread adds the partials in block order. pt_cuda_partials: device scratch of
 * PT_CUDA_RED_BLOCKS * 4 doubles, allocated once with the stream. */
#define PT_CUDA_RED_BLOCKS 256
double *pt_cuda_partials(void);

#ifdef __CUDACC__
/* Sum over the block (blockDim.x == PT_CUDA_THREADS) in a fixed tree; every thread gets it. */
static __device__ inline double pt_block_sum(double v, double *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = PT_CUDA_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    const double r = sh[0];
    __syncthreads();
    return r;
}
/* Max and its first index over the block (ties: the lowest index, as the CPU's first maximum). */
static __device__ inline void pt_block_argmax(float *v, int *i, float *shv, int *shi)
{
    shv[threadIdx.x] = *v, shi[threadIdx.x] = *i;
    __syncthreads();
    for (int s = PT_CUDA_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) {
            const float a = shv[threadIdx.x], b = shv[threadIdx.x + s];
            const int ia = shi[threadIdx.x], ib = shi[threadIdx.x + s];
            if (b > a || (b == a && ib >= 0 && (ia < 0 || ib < ia)))
                shv[threadIdx.x] = b, shi[threadIdx.x] = ib;
        }
        __syncthreads();
    }
    *v = shv[0], *i = shi[0];
    __syncthreads();
}
/* Adds partials[0..n) in order into *out (one thread). */
__global__ void pt_cuda_sum_partials(const double *partials, int n, double *out);
#endif

/* The op families (one .cu each); backend_cuda.cu calls each once. */
void pt_cuda_register_dense(pt_backend *be);
void pt_cuda_register_elementwise(pt_backend *be);
void pt_cuda_register_optim(pt_backend *be);
void pt_cuda_register_loss(pt_backend *be);
void pt_cuda_register_conv(pt_backend *be);
void pt_cuda_register_pool(pt_backend *be);
void pt_cuda_register_norm(pt_backend *be);
void pt_cuda_register_attention(pt_backend *be);

/* dense.cu's GEMM, also used by conv.cu (im2col + GEMM). */
pt_status pt_cuda_gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc);

#endif
