/* bf16 GEMM on AMX-BF16 tiles (the "amx" variant of include/paratrain/lowp.h). Compiled with
 * -mamx-tile -mamx-bf16 (Makefile.am liblowp_amx.la): lowp_gemm.c calls it only where CPUID reports
 * AMX-TILE and AMX-BF16, XCR0 enables the tile state and Linux granted this process the tile data
 * (arch_prctl ARCH_REQ_XCOMP_PERM, done once there).
 *
 * tdpbf16ps C, A, B: C is 16 x 16 fp32; A is 16 rows x 32 bf16 (row-major, one 64-byte row per
 * row of op(A)); B is 16 rows x 16 columns of bf16 pairs ("VNNI" layout: row q holds k = 2q, 2q+1
 * of each column), and C[i][j] += sum over the 16 pairs of A[i][2q] B[2q][j] + A[i][2q+1] B[2q+1][j].
 * op(A) is packed into 16 x 32 tiles, op(B) into 16-column panels of pairs (pt_lowp_pack_pairs),
 * both zero-padded to whole tiles (M, N to 32, K to 32): the zeros add nothing, so no remainder
 * code is needed. Each thread takes 32 x 32 blocks of C: four C tiles accumulate over all of K in
 * the tile registers (fp32), then go through a small buffer into C with alpha and beta.
 * Like vdpbf16ps, the tile unit treats bf16 subnormals as zero (DAZ/FTZ). */
#include <immintrin.h>
#include <string.h>

#include "lowp_kernels.h"

#define TK 32 /* k per tile */

/* the LDTILECFG block: palette 1, tiles 0..7 all 16 rows x 64 bytes */
struct tilecfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

pt_status pt_lowp_amx(pt_dtype t, bool ta, bool tb, int m, int n, int k, float alpha,
                      const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta, float *c,
                      int ldc)
{
    if (t != PT_BF16) return PT_ERR(PT_ERR_INTERNAL, "dispatch bug", "amx gemm called for fp16");
    const int kt = (k + TK - 1) / TK, kp = kt * TK / 2;
    const int mb = (m + 31) / 32 * 2, nb = (n + 31) / 32 * 2; /* 16-row / 16-column tiles, even */
    /* A: tile (i, kb) at ((i * kt + kb) * 16 rows) * 16 words; B: panel j at j * kp * 16 words */
    uint32_t *ap = pt_lowp_scratch(0, (size_t)mb * kt * 256 * 4);
    uint32_t *bp = pt_lowp_scratch(1, (size_t)nb * kp * 16 * 4);
    if (!ap || !bp) return PT_ERR_NOMEM;
    const int blocks = (mb / 2) * (nb / 2);
    const bool par = (double)m * n * k >= 32768.0 * 8;
#pragma omp parallel if (par)
    {
#pragma omp for schedule(static) nowait
        for (int i = 0; i < mb; i++) { /* 16 rows of op(A): each row's pairs, one tile per 32 k */
            uint32_t row[16];
            for (int r = 0; r < 16; r++) {
                const int gi = i * 16 + r;
                for (int kb = 0; kb < kt; kb++) {
                    for (int q = 0; q < 16; q++) {
                        const int p0 = kb * TK + 2 * q, p1 = p0 + 1;
                        const uint32_t lo = gi < m && p0 < k ? *pt_lowp_at(a, lda, ta, gi, p0) : 0;
                        const uint32_t hi = gi < m && p1 < k ? *pt_lowp_at(a, lda, ta, gi, p1) : 0;
                        row[q] = lo | hi << 16;
                    }
                    memcpy(ap + ((size_t)(i * kt + kb) * 16 + r) * 16, row, sizeof row);
                }
            }
        }
#pragma omp for schedule(static)
        for (int j = 0; j < nb; j++) {
            const int j0 = j * 16, nv = n - j0 < 0 ? 0 : n - j0 < 16 ? n - j0 : 16;
            pt_lowp_pack_pairs(nv ? pt_lowp_at(b, ldb, !tb, j0, 0) : b, ldb, !tb, nv, k, kp, 16,
                               bp + (size_t)j * kp * 16);
        }
        struct tilecfg cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.palette = 1;
        for (int r = 0; r < 8; r++) cfg.colsb[r] = 64, cfg.rows[r] = 16;
        _tile_loadconfig(&cfg);
        float buf[32][32] __attribute__((aligned(64)));
#pragma omp for schedule(static)
        for (int blk = 0; blk < blocks; blk++) {
            const int i = (blk / (nb / 2)) * 2, j = (blk % (nb / 2)) * 2;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int kb = 0; kb < kt; kb++) {
                _tile_loadd(4, ap + (size_t)(i * kt + kb) * 256, 64);
                _tile_loadd(5, ap + (size_t)((i + 1) * kt + kb) * 256, 64);
                _tile_loadd(6, bp + ((size_t)j * kp + (size_t)kb * 16) * 16, 64);
                _tile_loadd(7, bp + ((size_t)(j + 1) * kp + (size_t)kb * 16) * 16, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, &buf[0][0], 128);
            _tile_stored(1, &buf[0][16], 128);
            _tile_stored(2, &buf[16][0], 128);
            _tile_stored(3, &buf[16][16], 128);
            const int i0 = i * 16, j0 = j * 16;
            const int mr = m - i0 < 32 ? m - i0 : 32, nr = n - j0 < 32 ? n - j0 : 32;
            for (int r = 0; r < mr; r++)
                for (int q = 0; q < nr; q++) {
                    float *cp = c + (int64_t)(i0 + r) * ldc + j0 + q;
                    *cp = beta == 0.f ? alpha * buf[r][q] : alpha * buf[r][q] + beta * *cp;
                }
        }
        _tile_release();
    }
    return PT_OK;
}
