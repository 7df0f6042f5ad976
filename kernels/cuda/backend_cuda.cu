/* CUDA backend: device selection, memory (cudaMalloc, asynchronous copies on one stream, pinned
 * staging memory), synchronize, and the table, whose entries each op family's file fills
 * (cuda_common.h). One stream for every entry keeps the queue in program order, so the entries need
 * no events between them; host copies synchronize only where the host reads or reuses the memory.
 * Host memory given to to_device / to_host may be pageable: cudaMemcpyAsync then copies
 * synchronously with respect to the host, which is what the callers (checkpoints, staging)
 * expect. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cuda_common.h"

/* ------------------------------------------------------------------ errors */

static pt_status first_err = PT_OK;
static char first_msg[1024];

void pt_cuda_record(pt_status st)
{
    if (st == PT_OK || first_err != PT_OK) return;
    first_err = st;
    snprintf(first_msg, sizeof first_msg, "%s", pt_error_message());
}

const char *pt_cublas_status_name(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
    }
}

/* ------------------------------------------------------------------ device, stream, handle */

static int device_count = -1; /* -1: not probed yet */
static char why[512];
static int selected = -1;     /* the device chosen by pt_backend_cuda_select (-1: none yet) */
static cudaStream_t stream;
static cublasHandle_t blas;
static bool initialized, deterministic;
static double *partials; /* pt_cuda_partials */

/* Counts the devices once. Without a GPU (or driver) cudaGetDeviceCount fails (error 35,
 * cudaErrorInsufficientDriver, or 100, cudaErrorNoDevice) and leaves the count unset. */
static int probe(void)
{
    if (device_count >= 0) return device_count;
    int n = 0;
    cudaError_t rc = cudaGetDeviceCount(&n);
    if (rc != cudaSuccess) {
        snprintf(why, sizeof why,
                 "no CUDA device: cudaGetDeviceCount failed: %s (%s); this machine has no "
                 "usable NVIDIA GPU and driver",
                 cudaGetErrorName(rc), cudaGetErrorString(rc));
        (void)cudaGetLastError(); /* clear it: the error is not sticky */
        n = 0;
    } else if (n == 0) {
        snprintf(why, sizeof why, "no CUDA device: the driver sees none; nothing to run on");
    }
    device_count = n;
    return n;
}

/* The stream and the cuBLAS handle, on the current device (the selected one, else device 0). */
static pt_status init_once(void)
{
    if (initialized) return PT_OK;
    if (probe() == 0) return PT_ERR(PT_ERR_CUDA, "use --backend cpu", "%s", why);
    if (selected < 0) {
        PT_CUDA_CHECK(cudaSetDevice(0));
        selected = 0;
    }
    PT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    PT_CUDA_CHECK(cudaMalloc((void **)&partials, sizeof(double) * PT_CUDA_RED_BLOCKS * 4));
    cublasStatus_t bs = cublasCreate(&blas);
    if (bs != CUBLAS_STATUS_SUCCESS)
        return PT_ERR(PT_ERR_CUDA, "check the GPU's free memory (nvidia-smi)",
                      "cublasCreate failed: %s", pt_cublas_status_name(bs));
    PT_CUBLAS_CHECK(cublasSetStream(blas, stream));
    /* pointer mode host: alpha and beta are host scalars in every call */
    PT_CUBLAS_CHECK(cublasSetPointerMode(blas, CUBLAS_POINTER_MODE_HOST));
    PT_CUBLAS_CHECK(cublasSetMathMode(blas, deterministic ? CUBLAS_PEDANTIC_MATH
                                                          : CUBLAS_DEFAULT_MATH));
    initialized = true;
    return PT_OK;
}

cudaStream_t pt_cuda_stream(void) { return stream; }
double *pt_cuda_partials(void) { return partials; }

__global__ void pt_cuda_sum_partials(const double *p, int n, double *out)
{
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        double s = 0.0;
        for (int i = 0; i < n; i++) s += p[i];
        *out = s;
    }
}
cublasHandle_t pt_cuda_blas(void) { return blas; }
bool pt_cuda_deterministic(void) { return deterministic; }

/* ------------------------------------------------------------------ memory */

static void *cuda_alloc(size_t bytes)
{
    if (bytes == 0) return NULL;
    void *p = NULL;
    cudaError_t rc = cudaMalloc(&p, bytes);
    if (rc != cudaSuccess) {
        /* NULL tells the caller (PT_ALLOC_CHECK); the message says why */
        PT_ERR(PT_ERR_NOMEM, "reduce the batch size or the model, or check nvidia-smi",
               "cudaMalloc of %zu bytes failed: %s (%s)", bytes, cudaGetErrorName(rc),
               cudaGetErrorString(rc));
        (void)cudaGetLastError();
        return NULL;
    }
    return p;
}
static void cuda_free(void *p)
{
    if (p) PT_CUDA_CHECK_RECORD(cudaFree(p));
}
static void cuda_zero(void *p, size_t bytes)
{
    if (bytes) PT_CUDA_CHECK_RECORD(cudaMemsetAsync(p, 0, bytes, stream));
}
/* The host buffer may be reused as soon as the call returns (a stack array, a staging buffer
 * refilled next): wait for the copy. */
static void cuda_to_device(void *dst, const void *host_src, size_t bytes)
{
    if (!bytes) return;
    PT_CUDA_CHECK_RECORD(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream));
    PT_CUDA_CHECK_RECORD(cudaStreamSynchronize(stream));
}
/* The host reads the result right after: wait for it (and for the kernels that produce it). */
static void cuda_to_host(void *host_dst, const void *src, size_t bytes)
{
    if (!bytes) return;
    PT_CUDA_CHECK_RECORD(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream));
    PT_CUDA_CHECK_RECORD(cudaStreamSynchronize(stream));
}
static void cuda_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes && dst != src)
        PT_CUDA_CHECK_RECORD(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
}

/* The first failure since the last call: a recorded one, else whatever the queue reports. */
static pt_status cuda_synchronize(void)
{
    cudaError_t rc = cudaStreamSynchronize(stream);
    if (first_err != PT_OK) {
        pt_status st = first_err;
        first_err = PT_OK;
        return PT_ERR(st, PT_CUDA_HINT, "an earlier CUDA call failed: %s", first_msg);
    }
    if (rc != cudaSuccess)
        return PT_ERR(PT_ERR_CUDA, PT_CUDA_HINT,
                      "a queued CUDA kernel or copy failed: %s (%s) (cudaStreamSynchronize)",
                      cudaGetErrorName(rc), cudaGetErrorString(rc));
    return PT_OK;
}

/* Pinned memory: MPI staging buffers (Open MPI here is not CUDA-aware), so that the copies run
 * at full bandwidth and cudaMemcpyAsync is truly asynchronous. */
static void *cuda_host_alloc(size_t bytes)
{
    if (bytes == 0) return NULL;
    void *p = NULL;
    cudaError_t rc = cudaMallocHost(&p, bytes);
    if (rc != cudaSuccess) {
        PT_ERR(PT_ERR_NOMEM, "reduce --bucket-mb or the model (pinned memory is limited)",
               "cudaMallocHost of %zu bytes failed: %s (%s)", bytes, cudaGetErrorName(rc),
               cudaGetErrorString(rc));
        (void)cudaGetLastError();
        return NULL;
    }
    return p;
}
static void cuda_host_free(void *p)
{
    if (p) PT_CUDA_CHECK_RECORD(cudaFreeHost(p));
}

/* --reproducible: cuBLAS without TF32 or reduced-precision shortcuts (the GEMM's own fixed
 * algorithm is dense.cu's part); the other kernels have fixed launch shapes and reduce in a fixed
 * order, so they are deterministic already. */
static void cuda_set_deterministic(bool on)
{
    deterministic = on;
    if (!initialized) return; /* init_once applies it */
    cublasStatus_t bs = cublasSetMathMode(blas, on ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH);
    if (bs != CUBLAS_STATUS_SUCCESS)
        pt_cuda_record(PT_ERR(PT_ERR_CUDA, "", "cublasSetMathMode failed: %s",
                              pt_cublas_status_name(bs)));
}

static pt_backend cuda_backend = {
    .name = "cuda",
    .alloc = cuda_alloc,
    .free = cuda_free,
    .zero = cuda_zero,
    .to_device = cuda_to_device,
    .to_host = cuda_to_host,
    .copy = cuda_copy,
    .synchronize = cuda_synchronize,
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
};

extern "C" const pt_backend *pt_backend_cuda(void)
{
    static bool registered;
    if (init_once() != PT_OK) return NULL;
    if (!registered) {
        registered = true;
        pt_cuda_register_dense(&cuda_backend);
        pt_cuda_register_elementwise(&cuda_backend);
        pt_cuda_register_optim(&cuda_backend);
        pt_cuda_register_loss(&cuda_backend);
        pt_cuda_register_conv(&cuda_backend);
        pt_cuda_register_pool(&cuda_backend);
        pt_cuda_register_norm(&cuda_backend);
        pt_cuda_register_attention(&cuda_backend);
        cuda_backend.set_deterministic = cuda_set_deterministic;
    }
    return &cuda_backend;
}

extern "C" const char *pt_backend_cuda_why(void)
{
    if (probe() == 0) return why;
    if (!initialized) return "the CUDA backend is not initialized (see the previous error)";
    return "";
}

extern "C" pt_status pt_backend_cuda_select(int local_rank)
{
    const int n = probe();
    if (n == 0) return PT_ERR(PT_ERR_CUDA, "use --backend cpu", "%s", why);
    const int dev = (local_rank < 0 ? 0 : local_rank) % n;
    if (initialized && selected != dev)
        return PT_ERR(PT_ERR_INTERNAL, "call pt_backend_cuda_select before the first CUDA entry",
                      "the CUDA backend already runs on device %d, cannot move to device %d",
                      selected, dev);
    PT_CUDA_CHECK(cudaSetDevice(dev));
    selected = dev;
    return init_once();
}
