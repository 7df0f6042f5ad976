/* Low-precision GEMM and conversions (include/paratrain/lowp.h): the conversions, the run-time
 * choice of the GEMM variant, and the two variants that need no ISA of their own.
 *
 * The choice: CPUID and XGETBV once (AVX2/FMA/F16C, AVX-512F/BW, AVX512_BF16, AMX-TILE/AMX-BF16,
 * and the OS state of each), the AMX permission asked of Linux once, PT_LOWP_GEMM read once; the
 * kernels themselves live in objects compiled for their ISA (lowp_blocked.c, lowp_avx512bf16.c,
 * lowp_amx.c) and are entered only from here, after the check.
 *
 * The fallback variant: convert A and B to fp32 and call cblas_sgemm. It is exact in the sense
 * that matters for the tests: fp32 products of 16-bit inputs are exact (8 + 8 or 11 + 11
 * significant bits fit in 24), so it differs from a true bf16 dot-product unit only in the
 * order of fp32 accumulation. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#if PT_HAVE_X86_KERNELS
#include <cpuid.h>
#endif

#include <cblas.h>

#include "../../src/comm/half.h"
#include "lowp_kernels.h"
#include "paratrain/log.h"
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

/* the scalar conversions of src/comm/half.h; the ISA objects' vector ones give the same bits */
static void from_f32_scalar(pt_dtype t, uint16_t *dst, const float *src, int64_t n)
{
    if (t == PT_BF16) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
    } else {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) dst[i] = f32_to_f16(src[i]);
    }
}

static void to_f32_scalar(pt_dtype t, float *dst, const uint16_t *src, int64_t n)
{
    if (t == PT_BF16) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
    } else {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(src[i]);
    }
}

/* the conversions in use: the scalar ones until init() has read CPUID and picked the widest
 * vector copies the CPU runs (one pthread_once with the GEMM's choice) */
static void (*from_f32_fn)(pt_dtype, uint16_t *, const float *, int64_t) = from_f32_scalar;
static void (*to_f32_fn)(pt_dtype, float *, const uint16_t *, int64_t) = to_f32_scalar;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init(void);

void pt_lowp_from_f32(pt_dtype t, uint16_t *dst, const float *src, int64_t n)
{
    pthread_once(&once, init);
    from_f32_fn(t, dst, src, n);
}

void pt_lowp_to_f32(pt_dtype t, float *dst, const uint16_t *src, int64_t n)
{
    pthread_once(&once, init);
    to_f32_fn(t, dst, src, n);
}

static void round_f32_scalar(pt_dtype t, float *x, int64_t n)
{
    if (t == PT_BF16) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
    } else if (t == PT_F16) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) x[i] = f16_to_f32(f32_to_f16(x[i]));
    }
}
static void (*round_f32_fn)(pt_dtype, float *, int64_t) = round_f32_scalar;

void pt_lowp_round_f32(pt_dtype t, float *x, int64_t n)
{
    if (t != PT_BF16 && t != PT_F16) return;
    pthread_once(&once, init);
    round_f32_fn(t, x, n);
}

/* ------------------------------------------------------------------ scratch */

static _Thread_local struct {
    void *p;
    size_t n;
} scratch_slot[4];

void *pt_lowp_scratch(int slot, size_t bytes)
{
    if (bytes <= scratch_slot[slot].n) return scratch_slot[slot].p;
    const size_t n = (bytes + bytes / 4 + 4095) & ~(size_t)4095; /* room to grow, 64-aligned */
    void *p = aligned_alloc(64, n);
    if (!p) {
        PT_ERR(PT_ERR_NOMEM, "lower the batch size", "lowp gemm: no memory for %zu bytes of scratch", n);
        return NULL;
    }
    free(scratch_slot[slot].p);
    scratch_slot[slot].p = p, scratch_slot[slot].n = n;
    return p;
}

/* ------------------------------------------------------------------ fallback and sbgemm */

static pt_status gemm_fallback(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                               const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta,
                               float *c, int ldc)
{
    /* whole rows of the stored matrices, the last one only as long as it must be */
    const size_t ra = ta ? (size_t)k : (size_t)m, ca = ta ? (size_t)m : (size_t)k;
    const size_t rb = tb ? (size_t)n : (size_t)k, cb = tb ? (size_t)k : (size_t)n;
    const size_t na = (ra - 1) * (size_t)lda + ca, nb = (rb - 1) * (size_t)ldb + cb;
    float *s = pt_lowp_scratch(2, (na + nb) * sizeof(float));
    if (!s) return PT_ERR_NOMEM;
    pt_lowp_to_f32(t, s, a, (int64_t)na);
    pt_lowp_to_f32(t, s + na, b, (int64_t)nb);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
                k, alpha, s, lda, s + na, ldb, beta, c, ldc);
    return PT_OK;
}

/* Debian's OpenBLAS 0.3.21 declares cblas_sbgemm in cblas.h but is built without BUILD_BFLOAT16,
 * so the library lacks it: look it up at run time, so that one binary uses it where the OpenBLAS
 * it runs against has it. */
typedef __typeof__(cblas_sbgemm) sbgemm_fn;
static sbgemm_fn *sbgemm_ptr;

static pt_status gemm_sbgemm(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                             const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta,
                             float *c, int ldc)
{
    sbgemm_ptr(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
               k, alpha, a, lda, b, ldb, beta, c, ldc);
    return PT_OK;
}

/* ------------------------------------------------------------------ CPUID and the variants */

enum { V_FALLBACK, V_SBGEMM, V_AVX2, V_AVX512FP16, V_AVX512BF16, V_AMX, V_N };
static const char *const vnames[V_N] = {"fallback", "sbgemm", "avx2", "avx512fp16", "avx512bf16", "amx"};

static struct {
    bool avx2, avx512, avx512bf16, amx;
    const char *amx_why;
} cpu;

#if PT_HAVE_X86_KERNELS
static uint64_t xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

static void detect_cpu(void)
{
    unsigned a1, b1, c1, d1, b7 = 0, d7 = 0, a71 = 0, x, max = __get_cpuid_max(0, NULL);
    if (!__get_cpuid(1, &a1, &b1, &c1, &d1)) return;
    if (max >= 7) {
        __cpuid_count(7, 0, x, b7, x, d7);
        __cpuid_count(7, 1, a71, x, x, x);
    }
    (void)x;
    if (!(c1 & (1u << 27))) return; /* OSXSAVE: without it the OS saves no vector state */
    const uint64_t os = xcr0();
    const bool os_avx = (os & 0x6) == 0x6, os_avx512 = (os & 0xe6) == 0xe6;
    const bool os_amx = (os & (3ull << 17)) == (3ull << 17); /* XTILECFG, XTILEDATA */
    cpu.avx2 = os_avx && (c1 >> 28 & 1) /* AVX */ && (c1 >> 12 & 1) /* FMA */ &&
               (c1 >> 29 & 1) /* F16C */ && (b7 >> 5 & 1) /* AVX2 */;
    cpu.avx512 = cpu.avx2 && os_avx512 && (b7 >> 16 & 1) /* AVX512F */ && (b7 >> 30 & 1) /* BW */;
    cpu.avx512bf16 = cpu.avx512 && (a71 >> 5 & 1); /* leaf 7 subleaf 1 EAX bit 5 */
    const bool amx_hw = (d7 >> 24 & 1) /* AMX-TILE */ && (d7 >> 22 & 1) /* AMX-BF16 */;
    if (!amx_hw) cpu.amx_why = "CPU lacks AMX-TILE/AMX-BF16";
    else if (!os_amx) cpu.amx_why = "the OS does not enable the AMX tile state (XCR0)";
    /* Linux hands out the 8 KiB tile data state only on request, once per process (0x1023:
     * ARCH_REQ_XCOMP_PERM, 18: XFEATURE_XTILEDATA); a tile instruction without it is SIGILL */
    else if (syscall(SYS_arch_prctl, 0x1023, 18) != 0)
        cpu.amx_why = "the kernel refused AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM)";
    else cpu.amx = true;
}
#else
static void detect_cpu(void) { cpu.amx_why = "not an x86-64 build"; }
#endif

static const pt_lowp_kernel_fn kernels[V_N] = {
    [V_FALLBACK] = gemm_fallback, [V_SBGEMM] = gemm_sbgemm,
#if PT_HAVE_X86_KERNELS
    [V_AVX2] = pt_lowp_blocked_avx2, [V_AVX512FP16] = pt_lowp_blocked_avx512,
#endif
#if PT_HAVE_LOWP_ISA
    [V_AVX512BF16] = pt_lowp_dpbf16_avx512, [V_AMX] = pt_lowp_amx,
#endif
};

static bool available(pt_dtype t, int v, const char **why)
{
    const char *w = NULL;
    const bool bf = t == PT_BF16;
    bool built = v < 0 || v >= V_N || v == V_SBGEMM || kernels[v];
#if PT_HAVE_LOWP_ISA
    if (v == V_AVX512BF16) built = pt_lowp_dpbf16_built();
#endif
    if (!built) {
        if (why) *why = "not in this build (compiler or host lacks the ISA flags; see configure)";
        return false;
    }
    switch (v) {
    case V_FALLBACK: break;
    case V_SBGEMM:
        if (!bf) w = "sbgemm is bf16 only";
        else if (!sbgemm_ptr) w = "the OpenBLAS linked here has no cblas_sbgemm (built without BUILD_BFLOAT16)";
        break;
    case V_AVX2:
        if (!cpu.avx2) w = "CPU lacks AVX2/FMA/F16C (or this is not an x86-64 build)";
        break;
    case V_AVX512FP16:
        if (bf) w = "avx512fp16 is fp16 only";
        else if (!cpu.avx512) w = "CPU lacks AVX-512F/BW (or the OS does not enable its state)";
        break;
    case V_AVX512BF16:
        if (!bf) w = "avx512bf16 is bf16 only";
        else if (!cpu.avx512bf16) w = "CPU lacks AVX512_BF16";
        break;
    case V_AMX:
        if (!bf) w = "amx is bf16 only";
        else if (!cpu.amx) w = cpu.amx_why;
        break;
    default: w = "unknown variant";
    }
    if (why) *why = w;
    return w == NULL;
}

/* the CPUID choice: the 16-bit dot-product instructions where the CPU has them, else the fallback.
 * The packed-fp32 kernels (avx2, avx512fp16) are not chosen: on the AMD EPYC here avx2 ran at
 * 0.6-1.3x (median ~0.9x) of the fallback (benchmarks/RESULTS.md, issue 17) since OpenBLAS's fp32
 * micro-kernel beats ours by about as much as the fallback's conversion pass costs; avx512fp16 is
 * the same code in zmm and unmeasured. They stay selectable (PT_LOWP_GEMM, select). */
static int auto_variant(pt_dtype t)
{
    static const int bf16_order[] = {V_AMX, V_AVX512BF16, V_FALLBACK};
    static const int fp16_order[] = {V_FALLBACK};
    const int *o = t == PT_BF16 ? bf16_order : fp16_order;
    while (!available(t, *o, NULL)) o++;
    return *o;
}

static int find(const char *s)
{
    for (int v = 0; v < V_N; v++)
        if (!strcmp(s, vnames[v])) return v;
    return -1;
}

/* per dtype (0 bf16, 1 fp16): the variant in use, or -1 when PT_LOWP_GEMM named one that cannot run */
static int current[2];
static char env_value[32];

static void init(void)
{
    sbgemm_ptr = (sbgemm_fn *)dlsym(RTLD_DEFAULT, "cblas_sbgemm");
    detect_cpu();
#if PT_HAVE_X86_KERNELS
    if (cpu.avx512)
        from_f32_fn = pt_lowp_from_f32_avx512, to_f32_fn = pt_lowp_to_f32_avx512,
        round_f32_fn = pt_lowp_round_f32_avx512;
    else if (cpu.avx2)
        from_f32_fn = pt_lowp_from_f32_avx2, to_f32_fn = pt_lowp_to_f32_avx2,
        round_f32_fn = pt_lowp_round_f32_avx2;
#endif
    const char *e = getenv("PT_LOWP_GEMM");
    if (e) snprintf(env_value, sizeof env_value, "%s", e);
    for (int i = 0; i < 2; i++) {
        const pt_dtype t = i ? PT_F16 : PT_BF16;
        const int v = e && *e && strcmp(e, "auto") ? find(e) : auto_variant(t);
        current[i] = v >= 0 && available(t, v, NULL) ? v : -1;
    }
}

static int slot(pt_dtype t) { return t == PT_F16; }

static pt_status refuse(pt_dtype t, const char *s)
{
    const int v = find(s);
    const char *why = "unknown variant";
    if (v >= 0) available(t, v, &why);
    return PT_ERR(PT_ERR_ARG, "use auto, avx2 or fallback here (include/paratrain/lowp.h lists the variants)",
                  "lowp gemm variant '%s' cannot run %s here: %s", s, pt_precision_name(t), why);
}

pt_status pt_lowp_gemm_check(pt_dtype t)
{
    pthread_once(&once, init);
    if (t != PT_BF16 && t != PT_F16) return PT_OK;
    return current[slot(t)] < 0 ? refuse(t, env_value) : PT_OK;
}

const char *pt_lowp_gemm_variant_quiet(pt_dtype t)
{
    pthread_once(&once, init);
    if (t != PT_BF16 && t != PT_F16) return "fp32";
    const int v = current[slot(t)];
    return v < 0 ? "invalid" : vnames[v];
}

const char *pt_lowp_gemm_variant(pt_dtype t)
{
    const char *name = pt_lowp_gemm_variant_quiet(t);
    if (t != PT_BF16 && t != PT_F16) return name;
    const int v = current[slot(t)];
    static bool warned[2];
    if ((v == V_AVX2 || v == V_FALLBACK) && !warned[slot(t)]) {
        warned[slot(t)] = true;
        pt_log_warn("lowp: %s GEMMs convert to fp32 and compute there (variant %s): no %s "
                    "dot-product kernel for this CPU", pt_precision_name(t), vnames[v], pt_precision_name(t));
    }
    return name;
}

pt_status pt_lowp_gemm_select(pt_dtype t, const char *variant)
{
    pthread_once(&once, init);
    if (t != PT_BF16 && t != PT_F16)
        return PT_ERR(PT_ERR_ARG, "select a variant for bf16 or fp16", "lowp gemm: no variants for %s", pt_precision_name(t));
    if (!variant || !strcmp(variant, "auto")) {
        current[slot(t)] = auto_variant(t);
        return PT_OK;
    }
    const int v = find(variant);
    if (v < 0 || !available(t, v, NULL)) return refuse(t, variant);
    current[slot(t)] = v;
    return PT_OK;
}

const char *pt_lowp_gemm_variant_name(int i) { return i >= 0 && i < V_N ? vnames[i] : NULL; }

bool pt_lowp_gemm_available(pt_dtype t, const char *variant, const char **why)
{
    pthread_once(&once, init);
    const int v = find(variant);
    if (v < 0) {
        if (why) *why = "unknown variant";
        return false;
    }
    return available(t, v, why);
}


pt_status pt_lowp_gemm(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                       const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta, float *c,
                       int ldc)
{
    if (t != PT_BF16 && t != PT_F16)
        return PT_ERR(PT_ERR_INTERNAL, "call the fp32 gemm", "pt_lowp_gemm with dtype %s", pt_precision_name(t));
    if (m < 0 || n < 0 || k < 0 || lda < (ta ? m : k) || ldb < (tb ? k : n) || ldc < n ||
        lda < 1 || ldb < 1 || ldc < 1)
        return PT_ERR(PT_ERR_INTERNAL, "a caller computed a bad shape",
                      "pt_lowp_gemm: m=%d n=%d k=%d lda=%d ldb=%d ldc=%d (trans %d %d)", m, n, k, lda,
                      ldb, ldc, ta, tb);
    pthread_once(&once, init);
    const int v = current[slot(t)];
    if (v < 0) return refuse(t, env_value);
    if (m == 0 || n == 0) return PT_OK;
    if (k == 0) { /* C = beta C, and beta == 0 does not read C */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(int64_t)i * ldc + j] = beta == 0.f ? 0.f : beta * c[(int64_t)i * ldc + j];
        return PT_OK;
    }
    return kernels[v](t, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
