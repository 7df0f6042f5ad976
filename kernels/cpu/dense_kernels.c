/* CPU dense kernels: GEMM through OpenBLAS cblas_sgemm, and its deterministic tiling; the
 * low-precision entries wrap paratrain/lowp.h (whose kernel variant is chosen from CPUID). */
#include "config.h"

#include <cblas.h>
#include <string.h>

#include "paratrain/lowp.h"

#include "cpu_kernels.h"

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

static pt_status cpu_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                     const float *b, int ldb, float beta, float *c, int ldc)
{
    const CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
    if (!gemm_deterministic) {
        cblas_sgemm(CblasRowMajor, opa, opb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return PT_OK;
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
    return PT_OK;
}

/* ---- low precision: bf16 / fp16 inputs, fp32 accumulation and output */

static pt_status cpu_lowp_gemm(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                               const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta,
                               float *c, int ldc)
{
    if (t != PT_BF16 && t != PT_F16)
        return PT_ERR(PT_ERR_ARG, NULL, "lowp_gemm: dtype %d is not bf16 or fp16", (int)t);
    return pt_lowp_gemm(t, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* (pt_lowp_from_f32 and pt_lowp_round_f32 run on the OpenMP threads themselves) */
static pt_status cpu_lowp_from_f32(pt_dtype t, uint16_t *dst, const float *src, int64_t n)
{
    if (t != PT_BF16 && t != PT_F16)
        return PT_ERR(PT_ERR_ARG, NULL, "lowp_from_f32: dtype %d is not bf16 or fp16", (int)t);
    pt_lowp_from_f32(t, dst, src, n);
    return PT_OK;
}

static pt_status cpu_lowp_round(pt_dtype t, float *dst, const float *src, int64_t n)
{
    if (t != PT_BF16 && t != PT_F16)
        return PT_ERR(PT_ERR_ARG, NULL, "lowp_round: dtype %d is not bf16 or fp16", (int)t);
    if (dst != src && n > 0) memcpy(dst, src, sizeof(float) * (size_t)n);
    pt_lowp_round_f32(t, dst, n);
    return PT_OK;
}

/* The exponent field of t's bit pattern is 0 for +-0 and subnormals alike; the mantissa tells
 * them apart. bf16 has fp32's exponent, so it flushes only what fp32 itself could not hold. */
static pt_status cpu_lowp_flush_count(pt_dtype t, const float *src, const uint16_t *dst16,
                                      int64_t n, int64_t counts[3])
{
    if (t != PT_BF16 && t != PT_F16)
        return PT_ERR(PT_ERR_ARG, NULL, "lowp_flush_count: dtype %d is not bf16 or fp16", (int)t);
    const uint16_t expo = t == PT_F16 ? 0x7c00 : 0x7f80;
    int64_t nz = 0, zero = 0, sub = 0;
#pragma omp parallel for schedule(static) reduction(+ : nz, zero, sub)
    for (int64_t i = 0; i < n; i++) {
        uint32_t b; /* the bits: with denormals-are-zero a subnormal src compares equal to 0 */
        memcpy(&b, &src[i], 4);
        if (!(b & 0x7fffffffu)) continue;
        nz++;
        const uint16_t h = dst16[i] & 0x7fff;
        if (h == 0) zero++;
        else if (!(h & expo)) sub++;
    }
    counts[0] = nz, counts[1] = zero, counts[2] = sub;
    return PT_OK;
}

void pt_cpu_register_dense(pt_backend *be)
{
    be->gemm = cpu_gemm;
    be->lowp_gemm = cpu_lowp_gemm;
    be->lowp_from_f32 = cpu_lowp_from_f32;
    be->lowp_round = cpu_lowp_round;
    be->lowp_flush_count = cpu_lowp_flush_count;
    be->set_deterministic = cpu_set_deterministic;
}
