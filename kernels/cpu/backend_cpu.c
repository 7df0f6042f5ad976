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

static inline float gelu(float x) { return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); }
static inline float gelu_grad(float x)
{
    const float inv_sqrt_2pi = 0.3989422804014327f;
    return 0.5f * (1.0f + erff(x * (float)M_SQRT1_2)) + x * inv_sqrt_2pi * expf(-0.5f * x * x);
}

static void cpu_bias_act_forward(float *y, float *pre, const float *bias, int rows, int cols,
                                 pt_act act)
{
#pragma omp parallel for schedule(static) if ((int64_t)rows * cols >= PAR_MIN)
    for (int r = 0; r < rows; r++) {
        float *yr = y + (int64_t)r * cols;
        float *pr = pre ? pre + (int64_t)r * cols : NULL;
        switch (act) {
        case PT_ACT_NONE:
            for (int c = 0; c < cols; c++) yr[c] += bias[c];
            if (pr) memcpy(pr, yr, sizeof(float) * (size_t)cols);
            break;
        case PT_ACT_RELU:
            if (pr)
                for (int c = 0; c < cols; c++) {
                    float v = yr[c] + bias[c];
                    pr[c] = v;
                    yr[c] = v > 0.0f ? v : 0.0f;
                }
            else /* a loop without the pre-activation store vectorizes */
                for (int c = 0; c < cols; c++) {
                    const float v = yr[c] + bias[c];
                    yr[c] = v > 0.0f ? v : 0.0f;
                }
            break;
        case PT_ACT_GELU:
            for (int c = 0; c < cols; c++) {
                float v = yr[c] + bias[c];
                if (pr) pr[c] = v;
                yr[c] = gelu(v);
            }
            break;
        case PT_ACT_TANH:
            for (int c = 0; c < cols; c++) {
                float v = yr[c] + bias[c];
                if (pr) pr[c] = v;
                yr[c] = tanhf(v);
            }
            break;
        }
    }
}

static void cpu_act_backward(float *dx, const float *dy, const float *pre, int64_t n, pt_act act)
{
    switch (act) {
    case PT_ACT_NONE:
        if (dx != dy) memcpy(dx, dy, sizeof(float) * (size_t)n);
        break;
    case PT_ACT_RELU:
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) dx[i] = pre[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case PT_ACT_GELU:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * gelu_grad(pre[i]);
        break;
    case PT_ACT_TANH:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            float t = tanhf(pre[i]);
            dx[i] = dy[i] * (1.0f - t * t);
        }
        break;
    }
}

static void cpu_bias_backward(float *db, const float *dy, int rows, int cols)
{
    /* Columns split across threads; each column summed over rows in a fixed order. */
#pragma omp parallel if ((int64_t)rows * cols >= PAR_MIN)
    {
#pragma omp for schedule(static)
        for (int c0 = 0; c0 < cols; c0 += 64) {
            int c1 = c0 + 64 < cols ? c0 + 64 : cols;
            for (int c = c0; c < c1; c++) db[c] = 0.0f;
            for (int r = 0; r < rows; r++) {
                const float *dyr = dy + (int64_t)r * cols;
                for (int c = c0; c < c1; c++) db[c] += dyr[c];
            }
        }
    }
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

/* Fixed 4096-element blocks, each summed in order, and the block sums added in block order: the
 * result does not depend on the thread count (--reproducible relies on it). */
#define SUMSQ_BLOCK 4096
static double cpu_sum_squares(const float *x, int64_t n)
{
    const int64_t nb = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
    double small[64], *part = nb <= 64 ? small : malloc(sizeof(double) * (size_t)nb);
    if (!part) { /* no memory for the partial sums: one ordered pass */
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
        return s;
    }
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t lo = b * SUMSQ_BLOCK, hi = lo + SUMSQ_BLOCK < n ? lo + SUMSQ_BLOCK : n;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = lo; i < hi; i++) s += (double)x[i] * x[i];
        part[b] = s;
    }
    double s = 0.0;
    for (int64_t b = 0; b < nb; b++) s += part[b];
    if (part != small) free(part);
    return s;
}

static void cpu_scale(float *x, int64_t n, float alpha)
{
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) x[i] *= alpha;
}

static bool cpu_all_finite(const float *x, int64_t n)
{
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) bad |= !isfinite(x[i]);
    return !bad;
}

/* Update rules follow torch.optim (1.13) operation by operation, so the fixture test can be tight. */
static void cpu_sgd_update(float *w, const float *g, float *buf, int64_t n,
                           const pt_update_params *p)
{
    const float lr = p->lr, mu = p->momentum, wd = p->weight_decay;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        if (buf) {
            buf[i] = mu * buf[i] + d;
            d = p->nesterov ? d + mu * buf[i] : buf[i];
        }
        w[i] -= lr * d;
    }
}

static void cpu_adagrad_update(float *w, const float *g, float *sum_sq, int64_t n,
                               const pt_update_params *p)
{
    const float lr = p->lr, wd = p->weight_decay, eps = p->eps;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        sum_sq[i] += d * d;
        w[i] -= lr * d / (sqrtf(sum_sq[i]) + eps);
    }
}

static void cpu_adam_update(float *w, const float *g, float *m, float *v, int64_t n,
                            const pt_update_params *p)
{
    const float b1 = p->beta1, b2 = p->beta2, eps = p->eps, lr = p->lr, wd = p->weight_decay;
    const float bc1 = 1.0f - powf(b1, (float)p->t);
    const float bc2_sqrt = sqrtf(1.0f - powf(b2, (float)p->t));
    const float step_size = lr / bc1;
    const bool decoupled = p->decoupled_wd;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = g[i];
        if (decoupled)
            w[i] *= 1.0f - lr * wd;
        else
            d += wd * w[i];
        m[i] = b1 * m[i] + (1.0f - b1) * d;
        v[i] = b2 * v[i] + (1.0f - b2) * d * d;
        w[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
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
        (void)pt_cpu_isa(); /* choose the kernels' ISA level now, and log it once */
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
