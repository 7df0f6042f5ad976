/* Low-precision GEMM by conversion into packed fp32 panels (the "avx2" and "avx512fp16" variants
 * of include/paratrain/lowp.h). Compiled twice with per-file flags (Makefile.am liblowp_avx2.la:
 * -mavx2 -mfma -mf16c -mno-avx512f; liblowp_avx512.la: -mavx512f), so only lowp_gemm.c's CPUID
 * check leads here.
 *
 * op(A) is packed into MR-row panels and op(B) into NR-column panels, [panel][p][MR or NR] fp32,
 * converting on the way (bf16: a 16-bit shift; fp16: vcvtph2ps), zero-padded at the edges. The
 * packing reads the 16-bit inputs once, which is what the fallback's separate conversion pass and
 * OpenBLAS's own packing cost twice. C is cut into MC x NC tiles, one thread each (OpenMP); inside
 * a tile K runs in KC slices so that a B micro-panel stays in L1 and the A block in L2. The
 * MR x NR micro-kernel keeps C in registers and does one FMA per element and k, in plain
 * GCC vector types: the same source is ymm code in one object and zmm code in the other.
 * Every C element is summed by one thread in the order p = 0..k-1 (FMA per product), so the
 * result does not depend on the thread count. */
#include <immintrin.h>
#include <string.h>

#include "../../src/comm/half.h"
#include "lowp_kernels.h"

/* The geometry follows what the flags really gave (a CFLAGS of -mno-avx512f after the per-file
 * flags, as .ci/valgrind.sh builds, leaves the "avx512" object with AVX2 code: still correct), the
 * exported name follows PT_LOWP_SUFFIX (Makefile.am). */
#if defined(__AVX512F__) || defined(PT_LOWP_EMU_AVX512) /* the latter: tests/t_lowp_emu */
#define VW 16 /* floats per vector */
#define MR 12
#define NR 32
#define MC 96
#define NC 512
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define VW 8
#define MR 6
#define NR 16
#define MC 72
#define NC 256
#else
#error "lowp_blocked.c is compiled per ISA (-mavx2 -mfma -mf16c or -mavx512f), see Makefile.am"
#endif
#ifndef PT_LOWP_SUFFIX
#error "lowp_blocked.c is compiled per ISA: define PT_LOWP_SUFFIX (avx2 or avx512), see Makefile.am"
#endif
#define PT_CAT2(a, b) a##b
#define PT_CAT(a, b) PT_CAT2(a, b)
#define FN PT_CAT(pt_lowp_blocked_, PT_LOWP_SUFFIX)
#define KC 256
#define NV (NR / VW)

typedef float vf __attribute__((vector_size(VW * 4)));                    /* aligned (packed) */
typedef float vfu __attribute__((vector_size(VW * 4), aligned(4), may_alias)); /* C, unaligned */

static inline float cvt1(bool bf, uint16_t h) { return bf ? bf16_to_f32(h) : f16_to_f32(h); }

/* VW 16-bit values at s to fp32 (both conversions are exact) */
static inline vf cvt_vec(bool bf, const uint16_t *s)
{
#if VW == 16
    const __m256i h = _mm256_loadu_si256((const __m256i *)s);
    return bf ? (vf)_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16) : (vf)_mm512_cvtph_ps(h);
#else
    const __m128i h = _mm_loadu_si128((const __m128i *)s);
    return bf ? (vf)_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16) : (vf)_mm256_cvtph_ps(h);
#endif
}

/* out[p*P + c] = src[p*ld + c] for c < nv, 0 for nv <= c < P: the panel's index runs along memory
 * (op(B) not transposed, op(A) transposed) */
static inline __attribute__((always_inline)) void pack_contig(bool bf, const uint16_t *src, int ld,
                                                              int nv, int kc, int P, float *out)
{
    for (int p = 0; p < kc; p++, out += P) {
        const uint16_t *s = src + (int64_t)p * ld;
        int c = 0;
        if (P % VW == 0)
            for (; c + VW <= nv; c += VW) *(vf *)(out + c) = cvt_vec(bf, s + c);
        for (; c < nv; c++) out[c] = cvt1(bf, s[c]);
        for (; c < P; c++) out[c] = 0.f;
    }
}

#ifndef PT_LOWP_EMU_AVX512
/* 8 16-bit values to fp32 in a ymm (AVX2 + F16C; the AVX-512 object has both too) */
static inline __m256 cvt8(bool bf, const uint16_t *s)
{
    const __m128i h = _mm_loadu_si128((const __m128i *)s);
    return bf ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)) : _mm256_cvtph_ps(h);
}

/* r[q][i] <- r[i][q] */
static inline void transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2)
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44), u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44), u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++)
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20), r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
}

/* out[p*P + r] = src[r*ld + p] for r < nv, 0 beyond: the panel's index runs across rows (op(A) not
 * transposed, op(B) transposed). 8 rows x 8 k at a time: converted, transposed in registers, stored
 * as 8 panel rows (masked where the panel has fewer than 8 lanes left: P = 6, 12). */
static inline __attribute__((always_inline)) void pack_strided(bool bf, const uint16_t *src, int ld,
                                                               int nv, int kc, int P, float *out)
{
    for (int r0 = 0; r0 < P; r0 += 8) {
        const int lanes = P - r0 < 8 ? P - r0 : 8;
        const int rows = nv - r0 < 0 ? 0 : nv - r0 < lanes ? nv - r0 : lanes;
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        int p = 0;
        for (; p + 8 <= kc; p += 8) {
            __m256 v[8];
            for (int q = 0; q < 8; q++)
                v[q] = q < rows ? cvt8(bf, src + (int64_t)(r0 + q) * ld + p) : _mm256_setzero_ps();
            transpose8(v);
            for (int q = 0; q < 8; q++) {
                float *o = out + (int64_t)(p + q) * P + r0;
                if (lanes == 8) _mm256_storeu_ps(o, v[q]);
                else _mm256_maskstore_ps(o, mask, v[q]);
            }
        }
        for (; p < kc; p++)
            for (int r = 0; r < lanes; r++)
                out[(int64_t)p * P + r0 + r] = r < rows ? cvt1(bf, src[(int64_t)(r0 + r) * ld + p]) : 0.f;
    }
}
#else
/* tests/t_lowp_emu (no ymm intrinsics there): the same layout, element by element */
static inline void pack_strided(bool bf, const uint16_t *src, int ld, int nv, int kc, int P, float *out)
{
    for (int p = 0; p < kc; p++)
        for (int r = 0; r < P; r++)
            out[(int64_t)p * P + r] = r < nv ? cvt1(bf, src[(int64_t)r * ld + p]) : 0.f;
}
#endif

static void pack(bool bf, bool contig, const uint16_t *src, int ld, int nv, int kc, int P, float *out)
{
    if (bf) contig ? pack_contig(true, src, ld, nv, kc, P, out) : pack_strided(true, src, ld, nv, kc, P, out);
    else contig ? pack_contig(false, src, ld, nv, kc, P, out) : pack_strided(false, src, ld, nv, kc, P, out);
}

/* acc = Apanel . Bpanel over kc, into t (MR x NR). Apart from the other steps so that nothing but
 * the accumulators, B and the broadcast is live in the loop: with alpha and beta as well, GCC
 * spilled one accumulator to the stack and the loop ran at the store-forwarding latency. */
static __attribute__((noinline)) void micro_acc(int kc, const float *restrict ap,
                                                const float *restrict bp, float *restrict t)
{
    vf acc[MR][NV];
    memset(acc, 0, sizeof acc);
#pragma GCC unroll 4
    for (int p = 0; p < kc; p++, ap += MR, bp += NR) {
        vf b[NV];
#pragma GCC unroll 4
        for (int j = 0; j < NV; j++) b[j] = ((const vf *)bp)[j];
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            const float s = ap[i];
#pragma GCC unroll 4
            for (int j = 0; j < NV; j++) acc[i][j] += s * b[j];
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NV; j++) ((vf *)t)[i * NV + j] = acc[i][j];
}

/* C[0..mr, 0..nr) = alpha * Apanel . Bpanel + beta * C over kc; beta == 0 does not read C */
static void micro(int kc, const float *restrict ap, const float *restrict bp, float *restrict c,
                  int ldc, int mr, int nr, float alpha, float beta)
{
    float t[MR][NR] __attribute__((aligned(64)));
    micro_acc(kc, ap, bp, &t[0][0]);
    if (mr == MR && nr == NR) {
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NV; j++) {
                vfu *cp = (vfu *)(c + (int64_t)i * ldc + j * VW);
                const vf x = ((const vf *)t[i])[j];
                *cp = beta == 0.f ? alpha * x : alpha * x + beta * *cp;
            }
        return;
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float *cp = c + (int64_t)i * ldc + j;
            *cp = beta == 0.f ? alpha * t[i][j] : alpha * t[i][j] + beta * *cp;
        }
}

pt_status FN(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha, const uint16_t *a,
             int lda, const uint16_t *b, int ldb, float beta, float *c, int ldc)
{
    const bool bf = t == PT_BF16;
    const int mp = (m + MR - 1) / MR, np = (n + NR - 1) / NR;
    float *ap = pt_lowp_scratch(0, (size_t)mp * MR * (size_t)k * sizeof(float));
    float *bp = pt_lowp_scratch(1, (size_t)np * NR * (size_t)k * sizeof(float));
    if (!ap || !bp) return PT_ERR_NOMEM;
    const int tm = (m + MC - 1) / MC, tn = (n + NC - 1) / NC;
    const bool par = (double)m * n * k >= 32768.0 * 8;
#pragma omp parallel if (par)
    {
#pragma omp for schedule(static) nowait
        for (int ip = 0; ip < mp; ip++) {
            const int i0 = ip * MR, nv = m - i0 < MR ? m - i0 : MR;
            pack(bf, ta, pt_lowp_at(a, lda, ta, i0, 0), lda, nv, k, MR, ap + (size_t)ip * MR * k);
        }
#pragma omp for schedule(static)
        for (int jp = 0; jp < np; jp++) {
            const int j0 = jp * NR, nv = n - j0 < NR ? n - j0 : NR;
            pack(bf, !tb, pt_lowp_at(b, ldb, !tb, j0, 0), ldb, nv, k, NR, bp + (size_t)jp * NR * k);
        }
#pragma omp for schedule(dynamic) /* a descheduled thread on a shared machine: the other takes over */
        for (int tile = 0; tile < tm * tn; tile++) {
            const int i0 = (tile / tn) * MC, j0 = (tile % tn) * NC;
            const int i1 = i0 + MC < m ? i0 + MC : m, j1 = j0 + NC < n ? j0 + NC : n;
            for (int pc = 0; pc < k; pc += KC) {
                const int kc = k - pc < KC ? k - pc : KC;
                const float be = pc == 0 ? beta : 1.f;
                for (int jr = j0; jr < j1; jr += NR)
                    for (int ir = i0; ir < i1; ir += MR)
                        micro(kc, ap + (size_t)(ir / MR) * MR * k + (size_t)pc * MR,
                              bp + (size_t)(jr / NR) * NR * k + (size_t)pc * NR,
                              c + (int64_t)ir * ldc + jr, ldc, m - ir < MR ? m - ir : MR,
                              n - jr < NR ? n - jr : NR, alpha, be);
            }
        }
    }
    return PT_OK;
}

#ifndef PT_LOWP_EMU_AVX512
/* ------------------------------------------------------------------ conversions
 * pt_lowp_from_f32 / pt_lowp_to_f32 for this ISA, bit for bit what src/comm/half.h's scalar
 * functions give (tests/t_lowp checks both against its own reference): the library's baseline
 * build ran them one element at a time, which cost a bf16 MLP step as much as its GEMMs' packing.
 * bf16: round to nearest even in integer lanes, NaN quieted (| 0x40) as half.h does; fp16: the
 * F16C / AVX-512 vcvtps2ph under round-to-nearest, which half.h's integer code matches. */
typedef uint32_t vu __attribute__((vector_size(VW * 4), aligned(4), may_alias));

static inline void from_f32_vec(bool bf, uint16_t *d, const float *s)
{
    const vf x = *(const vfu *)s;
#if VW == 16
    if (!bf) {
        _mm256_storeu_si256((__m256i *)d, _mm512_cvtps_ph((__m512)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        return;
    }
#else
    if (!bf) {
        _mm_storeu_si128((__m128i *)d, _mm256_cvtps_ph((__m256)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        return;
    }
#endif
    const vu u = (vu)x;
    const vu nan = (vu)((u & 0x7fffffffu) > 0x7f800000u); /* all ones where NaN */
    const vu r = ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16 & ~nan) | (((u >> 16) | 0x40u) & nan);
#if VW == 16
    _mm256_storeu_si256((__m256i *)d, _mm512_cvtepi32_epi16((__m512i)r));
#else
    const __m256i ri = (__m256i)r; /* every lane <= 0xffff: the unsigned saturation is exact */
    _mm_storeu_si128((__m128i *)d, _mm_packus_epi32(_mm256_castsi256_si128(ri), _mm256_extracti128_si256(ri, 1)));
#endif
}

void PT_CAT(pt_lowp_from_f32_, PT_LOWP_SUFFIX)(pt_dtype t, uint16_t *dst, const float *src, int64_t n)
{
    const bool bf = t == PT_BF16;
    const int64_t nv = n / VW * VW;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < nv; i += VW) from_f32_vec(bf, dst + i, src + i);
    for (int64_t i = nv; i < n; i++) dst[i] = bf ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
}

void PT_CAT(pt_lowp_round_f32_, PT_LOWP_SUFFIX)(pt_dtype t, float *x, int64_t n)
{
    const bool bf = t == PT_BF16;
    const int64_t nv = n / VW * VW;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < nv; i += VW) {
        uint16_t h[VW];
        from_f32_vec(bf, h, x + i);
        *(vfu *)(x + i) = cvt_vec(bf, h);
    }
    for (int64_t i = nv; i < n; i++) x[i] = bf ? bf16_to_f32(f32_to_bf16(x[i])) : f16_to_f32(f32_to_f16(x[i]));
}

void PT_CAT(pt_lowp_to_f32_, PT_LOWP_SUFFIX)(pt_dtype t, float *dst, const uint16_t *src, int64_t n)
{
    const bool bf = t == PT_BF16;
    const int64_t nv = n / VW * VW;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < nv; i += VW) *(vfu *)(dst + i) = cvt_vec(bf, src + i);
    for (int64_t i = nv; i < n; i++) dst[i] = cvt1(bf, src[i]);
}
#endif
