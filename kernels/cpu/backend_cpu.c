/* CPU backend: OpenMP loops and OpenBLAS cblas_sgemm. No MPI, no HDF5 here (design.md).
 *
 * Elementwise loops run on OpenMP threads only above a size where the fork/join pays for itself;
 * reductions accumulate in double with a static schedule, so a run with a fixed thread count is
 * bitwise repeatable. */
#include "config.h"

#include "paratrain/backend.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h> /* _mm_setcsr: SSE, part of every x86-64 baseline */
#endif
#include <stdlib.h>
#include <string.h>

#include "paratrain/cpu.h"
#include "elementwise_kernels.h"
#include "paratrain/log.h"
#include "paratrain/rng.h"

#define PAR_MIN 16384 /* elements below which a loop stays on one thread */

static void *cpu_alloc(size_t bytes)
{
    if (bytes == 0) return NULL;
    void *p = NULL;
    /* 64-byte alignment for AVX-512 loads; round up so aligned_alloc's size rule holds. */
    if (posix_memalign(&p, 64, (bytes + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}
static void cpu_free(void *p) { free(p); }
static void cpu_zero(void *p, size_t bytes) { if (bytes) memset(p, 0, bytes); }
static void cpu_copy(void *dst, const void *src, size_t bytes) { if (bytes) memcpy(dst, src, bytes); }

/* Deterministic GEMM (set_deterministic, used by --reproducible): OpenBLAS does not promise the
 * same bits for different thread counts, and it does not deliver them: its Haswell kernels (what
 * 0.3.21 picks on AMD Zen 4) round differently with 1 and 2 threads on shapes as small as
 * 8 x 64 x 784 (tests/t_backend_det), because the split of C among threads moves the edges of its
 * register tiles. So C is cut into fixed tiles whatever the thread count, and each tile is one
 * single-threaded sgemm (OpenBLAS's OpenMP build runs sequentially inside a parallel region):
 * the same calls on the same operands for any number of threads. */
#define DET_TILE_M 128
#define DET_TILE_N 256
static bool gemm_deterministic;
static void cpu_set_deterministic(bool on) { gemm_deterministic = on; }

static void cpu_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                     const float *b, int ldb, float beta, float *c, int ldc)
{
    const CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
    if (!gemm_deterministic) {
        cblas_sgemm(CblasRowMajor, opa, opb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    const int tm = (m + DET_TILE_M - 1) / DET_TILE_M, tn = (n + DET_TILE_N - 1) / DET_TILE_N;
    /* always inside a parallel region, even for one tile: outside one OpenBLAS would thread */
#pragma omp parallel for schedule(static)
    for (int t = 0; t < tm * tn; t++) {
        const int i0 = (t / tn) * DET_TILE_M, j0 = (t % tn) * DET_TILE_N;
        const int mi = m - i0 < DET_TILE_M ? m - i0 : DET_TILE_M;
        const int nj = n - j0 < DET_TILE_N ? n - j0 : DET_TILE_N;
        /* rows i0.. of op(A) and columns j0.. of op(B), wherever they sit in memory */
        const float *ai = ta ? a + i0 : a + (int64_t)i0 * lda;
        const float *bj = tb ? b + (int64_t)j0 * ldb : b + j0;
        cblas_sgemm(CblasRowMajor, opa, opb, mi, nj, k, alpha, ai, lda, bj, ldb, beta,
                    c + (int64_t)i0 * ldc + j0, ldc);
    }
}

/* The elementwise loops and reductions are compiled once per ISA level and picked at run time
 * (elementwise_kernels.c); these entries call the chosen table. */
static void cpu_bias_act_forward(float *y, float *pre, const float *bias, int rows, int cols,
                                 pt_act act)
{
    pt_cpu_ew_kernels_get()->bias_act_forward(y, pre, bias, rows, cols, act);
}

static void cpu_act_backward(float *dx, const float *dy, const float *pre, int64_t n, pt_act act)
{
    pt_cpu_ew_kernels_get()->act_backward(dx, dy, pre, n, act);
}

static void cpu_bias_backward(float *db, const float *dy, int rows, int cols)
{
    pt_cpu_ew_kernels_get()->bias_backward(db, dy, rows, cols);
}

static void cpu_dropout(float *x, int rows, int cols, int64_t row_offset, float p, uint64_t seed,
                        uint64_t stream)
{
    if (p <= 0.0f) return;
    const float keep_scale = 1.0f / (1.0f - p);
    /* One Philox block gives four 32-bit draws: index i uses block i/4, word i%4. */
    const uint32_t threshold = (uint32_t)((double)p * 4294967296.0);
    const int64_t n = (int64_t)rows * cols, base = row_offset * cols;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
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
}

static void cpu_dropout_cols(float *x, int rows, int cols, int64_t row_offset, int64_t col_offset,
                             int64_t row_width, float p, uint64_t seed, uint64_t stream)
{
    if (p <= 0.0f) return;
    if (col_offset == 0 && row_width == cols) { /* whole rows: one contiguous index range */
        cpu_dropout(x, rows, cols, row_offset, p, seed, stream);
        return;
    }
    const float keep_scale = 1.0f / (1.0f - p);
    const uint32_t threshold = (uint32_t)((double)p * 4294967296.0);
#pragma omp parallel for schedule(static) if ((int64_t)rows * cols >= PAR_MIN)
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
}

static double cpu_softmax_xent(const float *logits, const int32_t *labels, int rows, int cols,
                               float grad_scale, float *dlogits, int64_t *correct)
{
    double loss = 0.0;
    int64_t ncorrect = 0;
#pragma omp parallel for schedule(static) reduction(+ : loss, ncorrect) if ((int64_t)rows * cols >= PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *z = logits + (int64_t)r * cols;
        float zmax = z[0];
        int argmax = 0;
        for (int c = 1; c < cols; c++)
            if (z[c] > zmax) zmax = z[c], argmax = c;
        double sum = 0.0;
        for (int c = 0; c < cols; c++) sum += exp((double)(z[c] - zmax));
        const int y = labels[r];
        loss += log(sum) - (double)(z[y] - zmax);
        ncorrect += argmax == y;
        if (dlogits) {
            float *d = dlogits + (int64_t)r * cols;
            const double inv = 1.0 / sum;
            for (int c = 0; c < cols; c++)
                d[c] = (float)(exp((double)(z[c] - zmax)) * inv) * grad_scale;
            d[y] -= grad_scale;
        }
    }
    if (correct) *correct = ncorrect;
    return loss;
}

static double cpu_sum_squares(const float *x, int64_t n)
{
    return pt_cpu_ew_kernels_get()->sum_squares(x, n);
}

static void cpu_scale(float *x, int64_t n, float alpha)
{
    pt_cpu_ew_kernels_get()->scale(x, n, alpha);
}

static bool cpu_all_finite(const float *x, int64_t n)
{
    return pt_cpu_ew_kernels_get()->all_finite(x, n);
}

static void cpu_sgd_update(float *w, const float *g, float *buf, int64_t n,
                           const pt_update_params *p)
{
    pt_cpu_ew_kernels_get()->sgd_update(w, g, buf, n, p);
}

static void cpu_adagrad_update(float *w, const float *g, float *sum_sq, int64_t n,
                               const pt_update_params *p)
{
    pt_cpu_ew_kernels_get()->adagrad_update(w, g, sum_sq, n, p);
}

static void cpu_adam_update(float *w, const float *g, float *m, float *v, int64_t n,
                            const pt_update_params *p)
{
    pt_cpu_ew_kernels_get()->adam_update(w, g, m, v, n, p);
}

static const pt_backend cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .gemm = cpu_gemm,
    .bias_act_forward = cpu_bias_act_forward,
    .act_backward = cpu_act_backward,
    .bias_backward = cpu_bias_backward,
    .dropout = cpu_dropout,
    .dropout_cols = cpu_dropout_cols,
    .softmax_xent = cpu_softmax_xent,
    .sum_squares = cpu_sum_squares,
    .scale = cpu_scale,
    .all_finite = cpu_all_finite,
    .sgd_update = cpu_sgd_update,
    .adagrad_update = cpu_adagrad_update,
    .adam_update = cpu_adam_update,
    .set_deterministic = cpu_set_deterministic,
};

/* OpenBLAS (pthreads build) sizes its own thread pool from the machine, not from the rank's core
 * binding or OMP_NUM_THREADS: align it with OpenMP once, so a rank never runs more GEMM threads
 * than the cores it was given. */

const pt_backend *pt_backend_cpu(void)
{
    static int threads_set = 0;
    if (!threads_set) {
        threads_set = 1;
        /* Flush denormals to zero (FTZ) and read them as zero (DAZ) on every thread of the pool.
         * Optimizer state of parameters whose gradient is always zero (e.g. weights of blank
         * border pixels) decays geometrically into the denormal range after a few hundred steps,
         * and x86 computes on denormals through microcode assists: without this, AdamW on
         * Fashion-MNIST slowed from 13k to 4.4k samples/s after ~800 steps. Values below 1.2e-38
         * are irrelevant to training; the fixture tests are unaffected. */
#if defined(__x86_64__) || defined(__i386__)
#pragma omp parallel
        _mm_setcsr(_mm_getcsr() | 0x8040);
#elif defined(__aarch64__)
        /* the same on AArch64: FPCR.FZ (bit 24) flushes denormal inputs and outputs to zero */
#pragma omp parallel
        __builtin_aarch64_set_fpcr(__builtin_aarch64_get_fpcr() | (1u << 24));
#endif
        (void)pt_cpu_ew_kernels_get(); /* choose the kernels' ISA level now, and log it once */
        const int nt = omp_get_max_threads();
#if HAVE_OPENBLAS_SET_NUM_THREADS
        openblas_set_num_threads(nt);
#endif
#if HAVE_OPENBLAS_GET_PARALLEL
        /* openblas_get_parallel(): 0 sequential, 1 pthreads, 2 OpenMP. */
        if (nt > 1 && openblas_get_parallel() == 1 && !getenv("OMP_WAIT_POLICY"))
            pt_log_warn("OpenBLAS uses its own pthreads next to %d OpenMP threads, and the two "
                        "pools compete for cores: configure with the OpenMP OpenBLAS "
                        "(libopenblas-openmp-dev) or set OMP_WAIT_POLICY=PASSIVE",
                        nt);
#endif
    }
    return &cpu_backend;
}
