/* Scalar stand-ins for the AVX-512 / AVX512-BF16 / AMX-BF16 intrinsics that kernels/cpu/lowp_avx512bf16.c
 * and lowp_amx.c use (and the few that lowp_blocked.c's 12 x 32 AVX-512 build does), so that tests/t_lowp_emu can run those kernels' packing, blocking and edge
 * code on a CPU without the instructions. Force-included (-include) before the kernel source; it
 * defines immintrin.h's guard so that the real header is skipped. Each stand-in follows the
 * instruction's description in Intel's SDM (vdpbf16ps: the odd pair product is added first, then the
 * even one; tdpbf16ps likewise per pair), except for DAZ/FTZ, which the tests' normal inputs never
 * meet. Alignment that the real instruction demands (vmovdqa32 for _mm512_load_si512) is checked. */
#ifndef PT_LOWP_ISA_EMU_H
#define PT_LOWP_ISA_EMU_H
#define _IMMINTRIN_H_INCLUDED

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef float __m512 __attribute__((vector_size(64), may_alias));
typedef long long __m512i __attribute__((vector_size(64), may_alias));
typedef short __m512bh __attribute__((vector_size(64), may_alias));
typedef unsigned short __mmask16;

static inline float emu_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline __m512 _mm512_setzero_ps(void) { return (__m512){0}; }
static inline __m512 _mm512_set1_ps(float x)
{
    __m512 r;
    for (int i = 0; i < 16; i++) r[i] = x;
    return r;
}
static inline __m512i _mm512_set1_epi32(int x)
{
    int32_t v[16];
    for (int i = 0; i < 16; i++) v[i] = x;
    __m512i r;
    memcpy(&r, v, 64);
    return r;
}
static inline __m512i _mm512_load_si512(const void *p)
{
    if ((uintptr_t)p % 64) {
        fprintf(stderr, "lowp_isa_emu: _mm512_load_si512 at %p is not 64-byte aligned (a fault on hardware)\n", p);
        abort();
    }
    __m512i r;
    memcpy(&r, p, 64);
    return r;
}
static inline __m512 _mm512_mul_ps(__m512 a, __m512 b) { return a * b; }
static inline __m512 _mm512_fmadd_ps(__m512 a, __m512 b, __m512 c)
{
    for (int i = 0; i < 16; i++) c[i] = __builtin_fmaf(a[i], b[i], c[i]);
    return c;
}
static inline __m512 _mm512_maskz_loadu_ps(__mmask16 k, const void *p)
{
    __m512 r = {0};
    for (int i = 0; i < 16; i++)
        if (k >> i & 1) memcpy((float *)&r + i, (const float *)p + i, 4);
    return r;
}
static inline void _mm512_mask_storeu_ps(void *p, __mmask16 k, __m512 a)
{
    for (int i = 0; i < 16; i++)
        if (k >> i & 1) memcpy((float *)p + i, (float *)&a + i, 4);
}
static inline __m512 _mm512_dpbf16_ps(__m512 acc, __m512bh a, __m512bh b)
{
    for (int j = 0; j < 16; j++) {
        acc[j] += emu_bf16((uint16_t)a[2 * j + 1]) * emu_bf16((uint16_t)b[2 * j + 1]);
        acc[j] += emu_bf16((uint16_t)a[2 * j]) * emu_bf16((uint16_t)b[2 * j]);
    }
    return acc;
}

/* lowp_blocked.c's AVX-512 conversions (its arithmetic is GCC vector code, which compiles to
 * ymm pairs without -mavx512f) */
typedef long long __m256i __attribute__((vector_size(32), may_alias));
static inline __m256i _mm256_loadu_si256(const __m256i *p)
{
    __m256i r;
    memcpy(&r, p, 32);
    return r;
}
static inline __m512i _mm512_cvtepu16_epi32(__m256i h)
{
    uint16_t in[16];
    uint32_t out[16];
    memcpy(in, &h, 32);
    for (int i = 0; i < 16; i++) out[i] = in[i];
    __m512i r;
    memcpy(&r, out, 64);
    return r;
}
static inline __m512i _mm512_slli_epi32(__m512i a, unsigned s)
{
    uint32_t v[16];
    memcpy(v, &a, 64);
    for (int i = 0; i < 16; i++) v[i] = s > 31 ? 0 : v[i] << s;
    memcpy(&a, v, 64);
    return a;
}
static inline __m512 _mm512_cvtph_ps(__m256i h)
{
    _Float16 in[16];
    __m512 r;
    memcpy(in, &h, 32);
    for (int i = 0; i < 16; i++) r[i] = (float)in[i];
    return r;
}

/* lowp_avx512bf16.c's vector packing (masked 16-bit loads, widening, gathers, masked stores) */
typedef unsigned int __mmask32;
static inline __m512i _mm512_setzero_si512(void) { return (__m512i){0}; }
static inline __m512i _mm512_loadu_si512(const void *p)
{
    __m512i r;
    memcpy(&r, p, 64);
    return r;
}
static inline __m512i _mm512_maskz_loadu_epi16(__mmask32 k, const void *p)
{
    __m512i r = {0};
    for (int i = 0; i < 32; i++)
        if (k >> i & 1) memcpy((uint16_t *)&r + i, (const uint16_t *)p + i, 2);
    return r;
}
static inline __m256i _mm512_castsi512_si256(__m512i a)
{
    __m256i r;
    memcpy(&r, &a, 32);
    return r;
}
static inline __m512i _mm512_or_si512(__m512i a, __m512i b) { return a | b; }
static inline void _mm512_mask_storeu_epi32(void *p, __mmask16 k, __m512i a)
{
    for (int i = 0; i < 16; i++)
        if (k >> i & 1) memcpy((uint32_t *)p + i, (uint32_t *)&a + i, 4);
}
static inline __m512i _mm512_maskz_loadu_epi32(__mmask16 k, const void *p)
{
    __m512i r = {0};
    for (int i = 0; i < 16; i++)
        if (k >> i & 1) memcpy((uint32_t *)&r + i, (const uint32_t *)p + i, 4);
    return r;
}
/* the unpacks interleave within each 128-bit lane: lo takes the lane's low half of a and b */
static inline __m512i emu_unpack(__m512i a, __m512i b, int bytes, int hi)
{
    unsigned char x[64], y[64], r[64];
    memcpy(x, &a, 64), memcpy(y, &b, 64);
    const int per = 16 / bytes / 2; /* elements taken from each source per lane */
    for (int l = 0; l < 4; l++)
        for (int e = 0; e < per; e++) {
            memcpy(r + 16 * l + (2 * e) * bytes, x + 16 * l + (hi * per + e) * bytes, bytes);
            memcpy(r + 16 * l + (2 * e + 1) * bytes, y + 16 * l + (hi * per + e) * bytes, bytes);
        }
    memcpy(&a, r, 64);
    return a;
}
#define _mm512_unpacklo_epi32(a, b) emu_unpack((a), (b), 4, 0)
#define _mm512_unpackhi_epi32(a, b) emu_unpack((a), (b), 4, 1)
#define _mm512_unpacklo_epi64(a, b) emu_unpack((a), (b), 8, 0)
#define _mm512_unpackhi_epi64(a, b) emu_unpack((a), (b), 8, 1)
/* result lanes 0, 1 from a, lanes 2, 3 from b, each chosen by two bits of imm */
static inline __m512i _mm512_shuffle_i32x4(__m512i a, __m512i b, int imm)
{
    unsigned char x[64], y[64], r[64];
    memcpy(x, &a, 64), memcpy(y, &b, 64);
    for (int l = 0; l < 4; l++) memcpy(r + 16 * l, (l < 2 ? x : y) + 16 * (imm >> (2 * l) & 3), 16);
    memcpy(&a, r, 64);
    return a;
}
/* lanes off in k keep src's value; vindex in units of scale bytes from base */
static inline __m512i _mm512_mask_i32gather_epi32(__m512i src, __mmask16 k, __m512i vindex,
                                                  const void *base, int scale)
{
    int32_t idx[16];
    memcpy(idx, &vindex, 64);
    for (int i = 0; i < 16; i++)
        if (k >> i & 1) memcpy((uint32_t *)&src + i, (const char *)base + (int64_t)idx[i] * scale, 4);
    return src;
}

/* AMX: eight tiles of up to 16 rows x 64 bytes per thread, shaped by the last LDTILECFG */
static _Thread_local struct {
    int configured;
    uint8_t rows[8];
    uint16_t colsb[8];
    uint8_t data[8][16][64];
} emu_amx;

static inline void _tile_loadconfig(const void *cfg)
{
    const uint8_t *c = cfg;
    if (c[0] != 1) {
        fprintf(stderr, "lowp_isa_emu: palette %d (only 1 exists)\n", c[0]);
        abort();
    }
    for (int t = 0; t < 8; t++) {
        memcpy(&emu_amx.colsb[t], c + 16 + 2 * t, 2);
        emu_amx.rows[t] = c[48 + t];
        if (emu_amx.rows[t] > 16 || emu_amx.colsb[t] > 64) {
            fprintf(stderr, "lowp_isa_emu: tile %d configured %d x %d bytes\n", t, emu_amx.rows[t], emu_amx.colsb[t]);
            abort();
        }
    }
    emu_amx.configured = 1;
}
static inline void emu_amx_need(void)
{
    if (!emu_amx.configured) {
        fprintf(stderr, "lowp_isa_emu: tile instruction before LDTILECFG in this thread (#UD on hardware)\n");
        abort();
    }
}
#define _tile_release() (emu_amx.configured = 0)
#define _tile_zero(t) (emu_amx_need(), memset(emu_amx.data[t], 0, sizeof emu_amx.data[t]))
static inline void emu_tile_loadd(int t, const void *base, long stride)
{
    emu_amx_need();
    memset(emu_amx.data[t], 0, sizeof emu_amx.data[t]);
    for (int r = 0; r < emu_amx.rows[t]; r++)
        memcpy(emu_amx.data[t][r], (const uint8_t *)base + r * stride, emu_amx.colsb[t]);
}
static inline void emu_tile_stored(int t, void *base, long stride)
{
    emu_amx_need();
    for (int r = 0; r < emu_amx.rows[t]; r++)
        memcpy((uint8_t *)base + r * stride, emu_amx.data[t][r], emu_amx.colsb[t]);
}
#define _tile_loadd(t, base, stride) emu_tile_loadd((t), (base), (stride))
#define _tile_stored(t, base, stride) emu_tile_stored((t), (base), (stride))
/* C (M x N fp32) += A (M x K bf16) . B (K/2 rows x N bf16 pairs) */
static inline void emu_tdpbf16ps(int tc, int ta, int tb)
{
    emu_amx_need();
    const int M = emu_amx.rows[ta], K4 = emu_amx.colsb[ta] / 4, N = emu_amx.colsb[tb] / 4;
    if (emu_amx.rows[tc] != M || emu_amx.colsb[tc] / 4 != N || emu_amx.rows[tb] != K4) {
        fprintf(stderr, "lowp_isa_emu: tdpbf16ps shapes do not match\n");
        abort();
    }
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K4; k++)
            for (int n = 0; n < N; n++) {
                float c;
                uint16_t a0, a1, b0, b1;
                memcpy(&c, &emu_amx.data[tc][m][4 * n], 4);
                memcpy(&a0, &emu_amx.data[ta][m][4 * k], 2), memcpy(&a1, &emu_amx.data[ta][m][4 * k + 2], 2);
                memcpy(&b0, &emu_amx.data[tb][k][4 * n], 2), memcpy(&b1, &emu_amx.data[tb][k][4 * n + 2], 2);
                c += emu_bf16(a0) * emu_bf16(b0);
                c += emu_bf16(a1) * emu_bf16(b1);
                memcpy(&emu_amx.data[tc][m][4 * n], &c, 4);
            }
}
#define _tile_dpbf16ps(c, a, b) emu_tdpbf16ps((c), (a), (b))

#endif
