/* Low-precision (bf16 / fp16) compute on the CPU: element types, conversions and the GEMM that
 * mixed precision (--precision bf16|fp16) runs on. fp32 accumulation always; the inputs are
 * 16-bit, the output fp32. The kernel variant is chosen at run time from CPUID (never from the
 * build host): PT_LOWP_GEMM=auto|amx|avx512bf16|avx512fp16|sbgemm|fallback overrides it, and a
 * variant the CPU lacks is refused with a message. "fallback" converts to fp32 and calls
 * cblas_sgemm: always available, the reference every other variant is tested against. */
#ifndef PARATRAIN_LOWP_H
#define PARATRAIN_LOWP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paratrain/error.h"
#include "paratrain/tensor.h" /* pt_dtype: PT_F32, PT_BF16, PT_F16 here */

/* --precision names: "fp32", "bf16", "fp16" */
const char *pt_precision_name(pt_dtype t);
pt_status pt_precision_parse(const char *s, pt_dtype *out);

/* fp32 <-> 16-bit arrays, round to nearest even, NaN kept (quiet), Inf kept; fp16 overflow
 * gives Inf (which the loss scaler then sees). n elements; dst and src do not overlap. */
void pt_lowp_from_f32(pt_dtype t, uint16_t *dst, const float *src, int64_t n);
void pt_lowp_to_f32(pt_dtype t, float *dst, const uint16_t *src, int64_t n);
/* x = lowp(x) in place: what storing x in t and reading it back gives (x unchanged for fp32) */
void pt_lowp_round_f32(pt_dtype t, float *x, int64_t n);

/* C = alpha * op(A) * op(B) + beta * C; row-major like the backend's gemm, A and B of dtype t
 * (bf16 or fp16), C fp32, accumulation in fp32. */
pt_status pt_lowp_gemm(pt_dtype t, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                       const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta, float *c,
                       int ldc);

/* The variant pt_lowp_gemm runs for t ("amx", "avx512bf16", "avx512fp16", "sbgemm", "fallback"),
 * after PT_LOWP_GEMM; also warns once (stderr) when only the fallback is available. */
const char *pt_lowp_gemm_variant(pt_dtype t);
/* Force a variant (tests and benchmarks loop over them): PT_ERR_ARG with a message when this CPU
 * or build cannot run it. NULL or "auto": the CPUID choice. */
pt_status pt_lowp_gemm_select(pt_dtype t, const char *variant);

#endif
