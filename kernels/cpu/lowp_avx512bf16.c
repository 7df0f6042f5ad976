/* bf16 GEMM on AVX512-BF16 (the "avx512bf16" variant of include/paratrain/lowp.h). Compiled with
 * -mavx512f -mavx512bw -mavx512bf16 (Makefile.am liblowp_avx512bf16.la): lowp_gemm.c calls it only
 * where CPUID reports AVX512_BF16 and the OS saves the AVX-512 state.
 *
 * vdpbf16ps multiplies bf16 pairs and adds both products into an fp32 lane:
 *   acc[j] += a[2j] * b[2j] + a[2j+1] * b[2j+1].
 * So both operands are packed as pairs along k (pt_lowp_pack_pairs): B in NR-column panels where
 * a zmm holds 16 columns x one k pair, A in MR-row panels where one 32-bit word (row i, one k pair)
 * is broadcast. The MR x NR = 12 x 32 micro-kernel keeps 24 fp32 accumulators in registers. Odd k
 * is padded with a zero pair half; edges of M and N with zero rows and a masked-off store.
 * The instruction treats bf16 subnormal inputs as zero and flushes subnormal results (DAZ/FTZ),
 * unlike the fallback: irrelevant for training values, and the tests use normal inputs. */
#include <immintrin.h>
#include <string.h>

#include "lowp_kernels.h"

/* A CFLAGS of -mno-avx512f after the per-file flags (.ci/valgrind.sh, .ci/sanitize.sh builds)
 * turns AVX512-BF16 off too: the object then has no kernel, and says so (lowp_gemm.c asks). */
#if defined(__AVX512BF16__) || defined(LOWP_EMU)
bool pt_lowp_dpbf16_built(void) { return true; }

/* 12 x 32 measured best of 12 x 32, 8 x 48, 14 x 32 and 6 x 64 on Zen 4 (single thread, 2026-12-04;
 * the first three within noise, 6 x 64 at 0.4x) */
#define MR 12
#define NR 32
#define NV (NR / 16) /* zmm of B per k pair */
#define MC 96
#define NC 512
#define KC 256 /* k values per slice (KC / 2 pairs) */

/* v[c][r] <- v[r][c], 32-bit elements: pairs, quads within 128-bit lanes, then the lanes */
static inline void transpose16(__m512i v[16])
{
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2)
        t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]), t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
    for (int i = 0; i < 16; i += 4) { /* u[i + j], 128-bit lane l: column 4l + j of rows i..i+3 */
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]), u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]), u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int j = 0; j < 4; j++) {
        const __m512i x0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x44), x1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xee);
        const __m512i y0 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x44), y1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xee);
        v[j] = _mm512_shuffle_i32x4(x0, y0, 0x88), v[4 + j] = _mm512_shuffle_i32x4(x0, y0, 0xdd);
        v[8 + j] = _mm512_shuffle_i32x4(x1, y1, 0x88), v[12 + j] = _mm512_shuffle_i32x4(x1, y1, 0xdd);
    }
}

/* pt_lowp_pack_pairs (lowp_kernels.h, the scalar reference and what lowp_amx.c uses), 16 panel
 * lanes at a time: it ran element by element with a bounds test per element, 0.4 ms for a
 * 1024 x 1024 weight, about a third of that GEMM's time on this kernel.
 * contig (r runs along memory): rows 2q and 2q+1 widened to 32 bits and interleaved by a shift.
 * Otherwise a pair is one 32-bit word of row r: 16 rows x 16 pairs are loaded and transposed in
 * registers (a gather per panel row ran at a third of the speed on Zen 4); the last pair of an
 * odd k holds one element and is done one by one (a 32-bit read there would reach 2 bytes past
 * op(X)). Rows nv..P-1 and pairs k/2..kp-1 read as zero. */
static void pack_pairs(const uint16_t *src, int ld, bool contig, int nv, int k, int kp, int P, uint32_t *out)
{
    const __m512i zero = _mm512_setzero_si512();
    for (int r0 = 0; r0 < P; r0 += 16) {
        const int lanes = P - r0 < 16 ? P - r0 : 16;
        const int valid = nv - r0 < 0 ? 0 : nv - r0 < lanes ? nv - r0 : lanes;
        const __mmask16 sm = (__mmask16)((1u << lanes) - 1), vm = (__mmask16)((1u << valid) - 1);
        uint32_t *o = out + r0;
        if (contig) {
            for (int q = 0; q < kp; q++) {
                const uint16_t *s0 = src + (int64_t)(2 * q) * ld + r0;
                __m512i w = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(_mm512_maskz_loadu_epi16(vm, s0)));
                if (2 * q + 1 < k)
                    w = _mm512_or_si512(w, _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(
                                                                 _mm512_maskz_loadu_epi16(vm, s0 + ld))), 16));
                _mm512_mask_storeu_epi32(o + (int64_t)q * P, sm, w);
            }
            continue;
        }
        const int kq = k / 2;
        for (int q0 = 0; q0 < kq; q0 += 16) {
            const int nq = kq - q0 < 16 ? kq - q0 : 16;
            const __mmask16 qm = (__mmask16)((1u << nq) - 1);
            __m512i v[16];
            for (int r = 0; r < 16; r++)
                v[r] = r < valid ? _mm512_maskz_loadu_epi32(qm, src + (int64_t)(r0 + r) * ld + 2 * q0) : zero;
            transpose16(v);
            for (int q = 0; q < nq; q++) _mm512_mask_storeu_epi32(o + (int64_t)(q0 + q) * P, sm, v[q]);
        }
        for (int q = kq; q < kp; q++)
            for (int r = 0; r < lanes; r++)
                o[(int64_t)q * P + r] = r < valid ? src[(int64_t)(r0 + r) * ld + 2 * q] : 0;
    }
}

static void micro(int kq, const uint32_t *restrict ap, const uint32_t *restrict bp, float *restrict c,
                  int ldc, int mr, int nr, float alpha, float beta)
{
    __m512 acc[MR][NV];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NV; j++) acc[i][j] = _mm512_setzero_ps();
    for (int q = 0; q < kq; q++, ap += MR, bp += NR) {
        __m512bh bv[NV];
        for (int j = 0; j < NV; j++) bv[j] = (__m512bh)_mm512_load_si512(bp + 16 * j);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)ap[i]);
            for (int j = 0; j < NV; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], av, bv[j]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int i = 0; i < mr; i++)
        for (int h = 0; h < NV; h++) {
            const int left = nr - 16 * h;
            if (left <= 0) break;
            const __mmask16 mk = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            float *cp = c + (int64_t)i * ldc + 16 * h;
            __m512 r = _mm512_mul_ps(va, acc[i][h]);
            if (beta != 0.f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mk, cp), r);
            _mm512_mask_storeu_ps(cp, mk, r);
        }
}

pt_status pt_lowp_dpbf16_avx512(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                                const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta,
                                float *c, int ldc)
{
    if (t != PT_BF16) return PT_ERR(PT_ERR_INTERNAL, "dispatch bug", "avx512bf16 gemm called for fp16");
    const int kp = (k + 1) / 2, mp = (m + MR - 1) / MR, np = (n + NR - 1) / NR;
    uint32_t *ap = pt_lowp_scratch(0, (size_t)mp * MR * kp * 4);
    uint32_t *bp = pt_lowp_scratch(1, (size_t)np * NR * kp * 4);
    if (!ap || !bp) return PT_ERR_NOMEM;
    const int tm = (m + MC - 1) / MC, tn = (n + NC - 1) / NC;
    const bool par = (double)m * n * k >= 32768.0 * 8;
#pragma omp parallel if (par)
    {
#pragma omp for schedule(static) nowait
        for (int ip = 0; ip < mp; ip++) {
            const int i0 = ip * MR;
            pack_pairs(pt_lowp_at(a, lda, ta, i0, 0), lda, ta, m - i0 < MR ? m - i0 : MR,
                               k, kp, MR, ap + (size_t)ip * MR * kp);
        }
#pragma omp for schedule(static)
        for (int jp = 0; jp < np; jp++) {
            const int j0 = jp * NR;
            pack_pairs(pt_lowp_at(b, ldb, !tb, j0, 0), ldb, !tb, n - j0 < NR ? n - j0 : NR,
                               k, kp, NR, bp + (size_t)jp * NR * kp);
        }
#pragma omp for schedule(static)
        for (int tile = 0; tile < tm * tn; tile++) {
            const int i0 = (tile / tn) * MC, j0 = (tile % tn) * NC;
            const int i1 = i0 + MC < m ? i0 + MC : m, j1 = j0 + NC < n ? j0 + NC : n;
            for (int qc = 0; qc < kp; qc += KC / 2) {
                const int kq = kp - qc < KC / 2 ? kp - qc : KC / 2;
                const float be = qc == 0 ? beta : 1.f;
                for (int jr = j0; jr < j1; jr += NR)
                    for (int ir = i0; ir < i1; ir += MR)
                        micro(kq, ap + (size_t)(ir / MR) * MR * kp + (size_t)qc * MR,
                              bp + (size_t)(jr / NR) * NR * kp + (size_t)qc * NR,
                              c + (int64_t)ir * ldc + jr, ldc, m - ir < MR ? m - ir : MR,
                              n - jr < NR ? n - jr : NR, alpha, be);
            }
        }
    }
    return PT_OK;
}
#else
bool pt_lowp_dpbf16_built(void) { return false; }

pt_status pt_lowp_dpbf16_avx512(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                                const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta,
                                float *c, int ldc)
{
    return PT_ERR(PT_ERR_INTERNAL, "dispatch bug", "the avx512bf16 kernel is not in this build");
}
#endif
