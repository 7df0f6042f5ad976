/* The low-precision GEMM variants behind pt_lowp_gemm (kernels/cpu/lowp_gemm.c dispatches; see
 * include/paratrain/lowp.h). Every one has pt_lowp_gemm's contract: row-major, C fp32,
 * C = alpha * op(A) op(B) + beta * C, beta == 0 never reads C, fp32 accumulation. Each lives in an
 * object compiled for its own ISA (Makefile.am's liblowp_*.la): call one only after lowp_gemm.c
 * checked CPUID (and, for AMX, the kernel's permission). */
#ifndef PT_LOWP_KERNELS_H
#define PT_LOWP_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paratrain/error.h"
#include "paratrain/tensor.h"

typedef pt_status (*pt_lowp_kernel_fn)(pt_dtype t, bool ta, bool tb, int m, int n, int k,
                                       float alpha, const uint16_t *a, int lda, const uint16_t *b,
                                       int ldb, float beta, float *c, int ldc);

/* kernels/cpu/lowp_blocked.c built twice: packs panels of A and B to fp32 while converting and runs
 * an fp32 FMA micro-kernel (6x16 on AVX2, 12x32 on AVX-512F); bf16 and fp16 */
pt_status pt_lowp_blocked_avx2(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                               const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta,
                               float *c, int ldc);
pt_status pt_lowp_blocked_avx512(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                                 const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta,
                                 float *c, int ldc);
/* kernels/cpu/lowp_blocked.c's conversions, bit for bit those of src/comm/half.h (pt_lowp_from_f32
 * and pt_lowp_to_f32 dispatch to them) */
void pt_lowp_from_f32_avx2(pt_dtype t, uint16_t *dst, const float *src, int64_t n);
void pt_lowp_from_f32_avx512(pt_dtype t, uint16_t *dst, const float *src, int64_t n);
void pt_lowp_to_f32_avx2(pt_dtype t, float *dst, const uint16_t *src, int64_t n);
void pt_lowp_to_f32_avx512(pt_dtype t, float *dst, const uint16_t *src, int64_t n);
void pt_lowp_round_f32_avx2(pt_dtype t, float *x, int64_t n);
void pt_lowp_round_f32_avx512(pt_dtype t, float *x, int64_t n);
/* kernels/cpu/lowp_avx512bf16.c: vdpbf16ps on bf16 pairs; bf16 only */
pt_status pt_lowp_dpbf16_avx512(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                                const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta,
                                float *c, int ldc);
/* false where the flags took AVX512-BF16 away again (CFLAGS=-mno-avx512f): no kernel then */
bool pt_lowp_dpbf16_built(void);
/* kernels/cpu/lowp_amx.c: AMX-BF16 tiles; bf16 only */
pt_status pt_lowp_amx(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                      const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta, float *c,
                      int ldc);

/* Grown, 64-byte aligned scratch of the calling thread (slot 0..3), kept between calls: no malloc in
 * the steady state. NULL (with a PT_ERR recorded) when out of memory. */
void *pt_lowp_scratch(int slot, size_t bytes);

/* op(X)[i][p] of a row-major X (trans: X is stored p-major) */
static inline const uint16_t *pt_lowp_at(const uint16_t *x, int ld, bool trans, int64_t i, int64_t p)
{
    return trans ? x + p * ld + i : x + i * ld + p;
}

/* bf16 pairs for vdpbf16ps / tdpbf16ps: out[q*P + r] = op(X)[r][2q] | op(X)[r][2q+1] << 16 for
 * q < kp (k rounded up to the instruction's step; zero beyond k), r < nv (zero up to P).
 * contig: element (r, p) is src[p*ld + r] (r runs along memory), else src[r*ld + p]. */
static inline void pt_lowp_pack_pairs(const uint16_t *src, int ld, bool contig, int nv, int k,
                                      int kp, int P, uint32_t *out)
{
    if (contig) {
        for (int q = 0; q < kp; q++)
            for (int r = 0; r < P; r++) {
                const int p0 = 2 * q, p1 = p0 + 1;
                const uint32_t lo = r < nv && p0 < k ? src[(int64_t)p0 * ld + r] : 0;
                const uint32_t hi = r < nv && p1 < k ? src[(int64_t)p1 * ld + r] : 0;
                out[(int64_t)q * P + r] = lo | hi << 16;
            }
        return;
    }
    for (int r = 0; r < P; r++) {
        const uint16_t *s = src + (int64_t)r * ld;
        for (int q = 0; q < kp; q++) {
            const int p0 = 2 * q, p1 = p0 + 1;
            const uint32_t lo = r < nv && p0 < k ? s[p0] : 0, hi = r < nv && p1 < k ? s[p1] : 0;
            out[(int64_t)q * P + r] = lo | hi << 16;
        }
    }
}

#endif
