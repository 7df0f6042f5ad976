/* The 16-bit float loops of src/comm (fp32 <-> fp16/bf16 conversion, 16-bit local reductions, the
 * low-precision allreduce's block sums), compiled once per ISA level and picked by pt_cpu_isa().
 *
 * The library is built for the x86-64 baseline, which has no fp16 instructions: there the integer
 * conversions of half.h are used. The AVX2 and AVX-512 variants convert fp16 with F16C
 * (vcvtps2ph / vcvtph2ps, round to nearest even), which half.h matches bit for bit, so every level
 * gives the same bits (tests/test_cpu_isa.sh runs t_compress's bitwise check under each); bf16
 * stays in integer code, vectorized wider under the target attribute. Everything works in tiles
 * of fp32 so the loops vectorize, with the additions of each element in rank order. Intrinsics
 * appear only here, under PT_HAVE_X86_KERNELS; elsewhere the baseline variant alone is built. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdint.h>

#include "half.h"
#include "half_kernels.h"
#include "paratrain/cpu.h"

#if PT_HAVE_X86_KERNELS
#include <immintrin.h>
#define F16C_ATTR __attribute__((target("avx2,fma,f16c")))
F16C_ATTR static inline void f16c_to_f32(const uint16_t *h, float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) x[i] = f16_to_f32(h[i]);
}
F16C_ATTR static inline void f16c_from_f32(const float *x, uint16_t *h, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) h[i] = f32_to_f16(x[i]);
}
#endif

/* array conversions of the baseline variant */
static inline void int_to_f32(const uint16_t *h, float *x, int64_t n, int bf)
{
    if (bf)
        for (int64_t i = 0; i < n; i++) x[i] = bf16_to_f32(h[i]);
    else
        for (int64_t i = 0; i < n; i++) x[i] = f16_to_f32(h[i]);
}
static inline void int_from_f32(const float *x, uint16_t *h, int64_t n, int bf)
{
    if (bf)
        for (int64_t i = 0; i < n; i++) h[i] = f32_to_bf16(x[i]);
    else
        for (int64_t i = 0; i < n; i++) h[i] = f32_to_f16(x[i]);
}

enum { TILE = 512 };

/* One set of loops over the array conversions TO(h, x, n, bf) and FROM(x, h, n, bf). */
#define DEFINE_HALF_KERNELS(SUFFIX, ATTR, TO, FROM)                                                \
    ATTR static void from_f32_##SUFFIX(const float *x, uint16_t *h, int64_t n, int bf)             \
    {                                                                                              \
        FROM(x, h, n, bf);                                                                         \
    }                                                                                              \
    ATTR static void to_f32_##SUFFIX(const uint16_t *h, float *x, int64_t n, int bf)               \
    {                                                                                              \
        TO(h, x, n, bf);                                                                           \
    }                                                                                              \
    ATTR static void sum_blocks_##SUFFIX(const uint16_t *blocks, int64_t stride, int64_t len, int p, \
                                         uint16_t *out, int bf)                                    \
    {                                                                                              \
        float acc[TILE], t[TILE];                                                                  \
        for (int64_t i0 = 0; i0 < len; i0 += TILE) {                                               \
            const int64_t m = len - i0 < TILE ? len - i0 : TILE;                                   \
            TO(blocks + i0, acc, m, bf);                                                           \
            for (int q = 1; q < p; q++) {                                                          \
                TO(blocks + stride * q + i0, t, m, bf);                                            \
                for (int64_t i = 0; i < m; i++) acc[i] += t[i];                                    \
            }                                                                                      \
            FROM(acc, out + i0, m, bf);                                                            \
        }                                                                                          \
    }                                                                                              \
    ATTR static void reduce_##SUFFIX(uint16_t *d, const uint16_t *s, int64_t n, int bf, int op)    \
    {                                                                                              \
        float a[TILE], b[TILE];                                                                    \
        for (int64_t i0 = 0; i0 < n; i0 += TILE) {                                                 \
            const int64_t m = n - i0 < TILE ? n - i0 : TILE;                                       \
            TO(d + i0, a, m, bf);                                                                  \
            TO(s + i0, b, m, bf);                                                                  \
            if (op == 1)                                                                           \
                for (int64_t i = 0; i < m; i++) a[i] = a[i] > b[i] ? a[i] : b[i];                  \
            else if (op == 2)                                                                      \
                for (int64_t i = 0; i < m; i++) a[i] = a[i] < b[i] ? a[i] : b[i];                  \
            else                                                                                   \
                for (int64_t i = 0; i < m; i++) a[i] += b[i];                                      \
            FROM(a, d + i0, m, bf);                                                                \
        }                                                                                          \
    }                                                                                              \
    static const pt_half_kernels half_kernels_##SUFFIX = {                                         \
        from_f32_##SUFFIX, to_f32_##SUFFIX, sum_blocks_##SUFFIX, reduce_##SUFFIX};

DEFINE_HALF_KERNELS(baseline, , int_to_f32, int_from_f32)
#if PT_HAVE_X86_KERNELS
#define F16C_TO(h, x, n, bf) ((bf) ? int_to_f32(h, x, n, 1) : f16c_to_f32(h, x, n))
#define F16C_FROM(x, h, n, bf) ((bf) ? int_from_f32(x, h, n, 1) : f16c_from_f32(x, h, n))
DEFINE_HALF_KERNELS(avx2, F16C_ATTR, F16C_TO, F16C_FROM)
DEFINE_HALF_KERNELS(avx512, __attribute__((target("avx512f,avx512bw,avx2,fma,f16c"))), F16C_TO, F16C_FROM)
#endif

const pt_half_kernels *pt_half_kernels_get(void)
{
#if PT_HAVE_X86_KERNELS
    switch (pt_cpu_isa()) {
    case PT_ISA_AVX512: return &half_kernels_avx512;
    case PT_ISA_AVX2: return &half_kernels_avx2;
    default: break;
    }
#endif
    return &half_kernels_baseline;
}
