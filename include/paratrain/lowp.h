/* Low-precision (bf16 / fp16) compute on the CPU: element types, conversions and the GEMM that
 * mixed precision (--precision bf16|fp16) runs on. fp32 accumulation always; the inputs are
 * 16-bit, the output fp32. The kernel variant is chosen at run time from CPUID (never from the
 * build host): PT_LOWP_GEMM=auto|amx|avx512bf16|avx512fp16|avx2|sbgemm|fallback overrides it (read
 * once, for both dtypes), and a variant the CPU, the OS or the build lacks is refused with a
 * message (PT_ERR_ARG). The variants (kernels/cpu/lowp_*.c):
 *   amx         bf16. AMX-BF16 tiles (tdpbf16ps), fp32 accumulation in the tile registers, A in
 *               16 x 32 tiles, B in the VNNI pair layout, everything zero-padded to whole tiles.
 *               Needs AMX-TILE + AMX-BF16 (CPUID 7.0 EDX 24, 22), XCR0 tile state, and Linux's
 *               arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) granted (asked once).
 *   avx512bf16  bf16. vdpbf16ps 12 x 32 micro-kernel on k pairs. Needs AVX512F/BW and AVX512_BF16
 *               (CPUID 7.1 EAX 5) and the OS's AVX-512 state (XGETBV).
 *   avx512fp16  fp16. Packs to fp32 with vcvtph2ps (zmm), fp32 FMA 12 x 32 micro-kernel. Named for
 *               its fp16 inputs on AVX-512 machines: it needs only AVX-512F/BW (every AVX512-FP16
 *               CPU has them); AVX512-FP16's own arithmetic is fp16 and is not used, since the
 *               accumulation must be fp32.
 *   avx2        bf16 and fp16. The same packed-fp32 kernel in ymm (6 x 16): bf16 by a shift, fp16
 *               by F16C. Needs AVX2 + FMA + F16C. No 16-bit arithmetic: it saves the fallback's
 *               separate conversion pass, not multiplies.
 *   sbgemm      bf16. OpenBLAS cblas_sbgemm, found with dlsym at run time (Debian's 0.3.21
 *               declares it but is built without it); never chosen by auto.
 *   fallback    both. Converts A and B to fp32, cblas_sgemm. Always available.
 * auto: bf16 amx > avx512bf16 > fallback; fp16 fallback. The packed-fp32 kernels (avx2,
 * avx512fp16) are only chosen by name: avx2 measured ~0.9x of the fallback on the AMD EPYC here
 * (benchmarks/RESULTS.md, issue 17), and avx512fp16 is the same code, unmeasured. The packed
 * kernels give bits independent of the thread count (each C element summed by one thread, k in
 * order); they and the fallback differ only in fp32 summation order (products of 16-bit values
 * are exact in fp32). The dot-product instructions treat bf16 subnormals as zero.
 * Tests: tests/t_lowp (every variant this CPU runs; the rest SKIP-part with the reason) and
 * tests/t_lowp_emu (amx, avx512bf16 and the 12 x 32 avx512fp16 build on scalar stand-ins of their
 * intrinsics, on any x86 CPU). */
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
/* The same name without the warning ("fp32" for PT_F32, "invalid" after a bad PT_LOWP_GEMM). */
const char *pt_lowp_gemm_variant_quiet(pt_dtype t);
/* Force a variant (tests and benchmarks loop over them): PT_ERR_ARG with a message when this CPU
 * or build cannot run it. NULL or "auto": the CPUID choice. */
pt_status pt_lowp_gemm_select(pt_dtype t, const char *variant);

/* PT_OK when PT_LOWP_GEMM names a variant that can run t here, else PT_ERR_ARG with the reason:
 * programs call it before any work, so a bad value stops them at once. */
pt_status pt_lowp_gemm_check(pt_dtype t);
/* The i-th variant name (0 ..), NULL past the last: for loops in tests and benchmarks. */
const char *pt_lowp_gemm_variant_name(int i);
/* Whether this CPU, OS and build can run variant for t; when not, *why (if why) says why. Quiet. */
bool pt_lowp_gemm_available(pt_dtype t, const char *variant, const char **why);

#endif
