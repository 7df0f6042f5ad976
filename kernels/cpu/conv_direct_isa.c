/* The direct convolution's register-tile kernels (see conv_direct.h for the algorithm), compiled
 * once per x86 ISA level with that level's flags (Makefile.am: libconv_avx2.la with -mavx2 -mfma
 * -mno-avx512f, libconv_avx512.la with -mavx512f -mavx2 -mfma) and chosen at run time by
 * conv_direct.c from pt_cpu_isa(). PT_CONV_SUFFIX names the table this object exports
 * (pt_conv_kernels_avx2 / _avx512).
 *
 * The kernels are written with GCC vector types, so the compiler emits AVX-512 (16 floats per
 * register) or AVX2 (8) from the same source; `acc += t * b` becomes an FMA under GNU C's default
 * -ffp-contract=fast. No intrinsics: the file is portable C, but it is only built on x86. */
#include "conv_direct.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef PT_CONV_SUFFIX
#error "conv_direct_isa.c is compiled per ISA: define PT_CONV_SUFFIX (avx2 or avx512), see Makefile.am"
#endif
#if !defined(__AVX2__) || !defined(__FMA__)
#error "conv_direct_isa.c needs at least -mavx2 -mfma"
#endif
#define PT_CAT2(a, b) a##b
#define PT_CAT(a, b) PT_CAT2(a, b)

#ifdef __AVX512F__
#define VW 16 /* floats per vector register */
#define MR 8  /* pixels (forward) or weight columns (weight gradient) per register tile */
#else
#define VW 8
#define MR 6
#endif
/* unaligned vector types: a tile is 2 x VW, VW or 8 channels wide */
typedef float vmain __attribute__((vector_size(4 * VW), aligned(4)));
typedef float v8 __attribute__((vector_size(32), aligned(4)));

/* channel panel width at a position with `left` channels to go (a multiple of 8) */
static inline int panel_width(int left) { return left >= 2 * VW ? 2 * VW : left >= VW ? VW : 8; }

/* the ISA these kernels were really compiled for (what the flags gave, not what was asked) */
#ifdef __AVX512F__
#define PT_CONV_COMPILED_ISA "avx512"
#else
#define PT_CONV_COMPILED_ISA "avx2"
#endif

/* y[i][0 .. NV * width of VT) = act(sum over ky < k, j < span of a[i][ky * rowstride + j] * b[row]
 * + bias) + beta * y[i], for the first mr of the MR rows (the rest repeat row 0 and are dropped).
 * b is a panel: one row of NV vectors per (ky, j). VT and NV are constants after inlining, so acc
 * lives in registers (MR x NV of them). */
#define TILE_FWD(NAME, VT)                                                                         \
    static inline __attribute__((always_inline)) void NAME(                                        \
        const int NV, const float *const a[MR], int k, int span, int64_t rowstride,                \
        const float *b, float *y, int ldy, int mr, const float *bias, int relu, float beta)        \
    {                                                                                              \
        enum { W = sizeof(VT) / sizeof(float) };                                                   \
        VT acc[MR][2];                                                                             \
        for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = (VT){0};                              \
        for (int ky = 0; ky < k; ky++) {                                                           \
            const float *ar[MR];                                                                   \
            for (int i = 0; i < MR; i++) ar[i] = a[i] + ky * rowstride;                            \
            for (int j = 0; j < span; j++, b += W * NV) {                                          \
                const VT b0 = *(const VT *)b;                                                      \
                const VT b1 = NV == 2 ? *(const VT *)(b + W) : b0;                                 \
                _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++)                               \
                {                                                                                  \
                    const float t = ar[i][j];                                                      \
                    acc[i][0] += t * b0;                                                           \
                    if (NV == 2) acc[i][1] += t * b1;                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (int i = 0; i < mr; i++)                                                               \
            for (int v = 0; v < NV; v++) {                                                         \
                float *out = y + (int64_t)i * ldy + W * v;                                         \
                VT r = acc[i][v];                                                                  \
                if (bias) r += *(const VT *)(bias + W * v);                                        \
                if (beta != 0.0f) r += *(const VT *)out;                                           \
                *(VT *)out = r;                                                                    \
                if (relu)                                                                          \
                    for (int q = 0; q < W; q++) out[q] = out[q] > 0.0f ? out[q] : 0.0f;            \
            }                                                                                      \
    }
TILE_FWD(tile_fwd_main, vmain)
TILE_FWD(tile_fwd_8, v8)

/* acc[i][..] += sum over the Ho x Ho pixels of one sample of x[corner + xo[i]] * g[pixel], for
 * the first mr of MR rows ldacc apart; x points at the sample's padded image plus the kernel-row
 * offset, consecutive pixels step_x apart and rows step_y. */
#define TILE_WGRAD(NAME, VT)                                                                       \
    static inline __attribute__((always_inline)) void NAME(                                        \
        const int NV, const float *x, const int xo[MR], int Ho, int64_t step_x, int64_t step_y,    \
        const float *g, int ldg, float *accp, int ldacc, int mr)                                   \
    {                                                                                              \
        enum { W = sizeof(VT) / sizeof(float) };                                                   \
        VT acc[MR][2];                                                                             \
        for (int i = 0; i < MR; i++)                                                               \
            for (int v = 0; v < 2; v++)                                                            \
                acc[i][v] = i < mr && v < NV ? *(const VT *)(accp + (int64_t)i * ldacc + W * v)    \
                                             : (VT){0};                                            \
        for (int oy = 0; oy < Ho; oy++) {                                                          \
            const float *xr = x + oy * step_y;                                                     \
            for (int ox = 0; ox < Ho; ox++, xr += step_x, g += ldg) {                              \
                const VT b0 = *(const VT *)g;                                                      \
                const VT b1 = NV == 2 ? *(const VT *)(g + W) : b0;                                 \
                _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++)                               \
                {                                                                                  \
                    const float t = xr[xo[i]];                                                     \
                    acc[i][0] += t * b0;                                                           \
                    if (NV == 2) acc[i][1] += t * b1;                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (int i = 0; i < mr; i++)                                                               \
            for (int v = 0; v < NV; v++)                                                           \
                *(VT *)(accp + (int64_t)i * ldacc + W * v) = acc[i][v];                            \
    }
TILE_WGRAD(tile_wgrad_main, vmain)
TILE_WGRAD(tile_wgrad_8, v8)

/* y (rows x Ho x Ho x N) = act(conv(src, panels) + bias) + beta y, src padded (Hp x Hp x C) */
static void implicit_gemm(const float *src, int rows, int Hp, int C, int k, int s, int Ho,
                          const float *panels, int N, const float *bias, int relu, float beta,
                          float *y)
{
    const int64_t P = (int64_t)rows * Ho * Ho, ntiles = (P + MR - 1) / MR, K = (int64_t)k * k * C;
    const int span = k * C;
    const int64_t rowstride = (int64_t)Hp * C;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < ntiles; t++) {
        const int64_t p0 = t * MR;
        const int mr = P - p0 < MR ? (int)(P - p0) : MR;
        const float *a[MR];
        for (int i = 0; i < MR; i++) {
            const int64_t p = p0 + (i < mr ? i : 0);
            const int64_t b = p / (Ho * Ho);
            const int r = (int)(p % (Ho * Ho)), oy = r / Ho, ox = r % Ho;
            a[i] = src + ((b * Hp + (int64_t)oy * s) * Hp + (int64_t)ox * s) * C;
        }
        for (int n0 = 0; n0 < N;) {
            const int nb = panel_width(N - n0);
            const float *bp = panels + n0 * K, *bs = bias ? bias + n0 : NULL;
            float *yt = y + p0 * N + n0;
            if (nb == 2 * VW) tile_fwd_main(2, a, k, span, rowstride, bp, yt, N, mr, bs, relu, beta);
            else if (nb == VW) tile_fwd_main(1, a, k, span, rowstride, bp, yt, N, mr, bs, relu, beta);
            else tile_fwd_8(1, a, k, span, rowstride, bp, yt, N, mr, bs, relu, beta);
            n0 += nb;
        }
    }
}

/* panels[n0 * K + kk * nb + (n - n0)] = B[kk][n] for blocks of nb = panel_width(N - n0) channels,
 * where B[kk][n] = w[n * K + kk] (forward: kk = (ky, kx, ci), n = co) */
static void pack_panels(const float *w, int64_t K, int N, float *panels)
{
    for (int n0 = 0, nb; n0 < N; n0 += nb) {
        nb = panel_width(N - n0);
        float *p = panels + n0 * K;
        for (int64_t kk = 0; kk < K; kk++)
            for (int n = 0; n < nb; n++) p[kk * nb + n] = w[(n0 + n) * K + kk];
    }
}

/* the same for the input gradient: B[(ky', kx', co)][ci] = w[co][k-1-ky'][k-1-kx'][ci] */
static void pack_panels_flipped(const float *w, int k, int Cin, int Cout, float *panels)
{
    const int64_t K = (int64_t)k * k * Cout;
    for (int n0 = 0, nb; n0 < Cin; n0 += nb) {
        nb = panel_width(Cin - n0);
        float *p = panels + n0 * K;
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
                for (int co = 0; co < Cout; co++) {
                    const float *src =
                        w + (((int64_t)co * k + (k - 1 - ky)) * k + (k - 1 - kx)) * Cin + n0;
                    float *dst = p + (((int64_t)ky * k + kx) * Cout + co) * nb;
                    memcpy(dst, src, sizeof(float) * (size_t)nb);
                }
    }
}

static void conv_forward(const pt_conv2d_desc *c, int rows, const float *x, const float *w,
                            const float *bias, int relu, float *y, float *scratch)
{
    const int Hp = c->H + 2 * c->pad;
    float *xp = scratch, *panels = scratch + pt_conv_align16((int64_t)rows * Hp * Hp * c->Cin);
    pt_conv_pad_images(x, rows, c->H, c->Cin, c->pad, xp);
    pack_panels(w, (int64_t)c->k * c->k * c->Cin, c->Cout, panels);
    implicit_gemm(xp, rows, Hp, c->Cin, c->k, c->stride, c->Ho, panels, c->Cout, bias, relu, 0.0f, y);
}

static void conv_backward_input(const pt_conv2d_desc *c, int rows, const float *dy,
                                   const float *w, float beta, float *dx, float *scratch)
{
    const int q = c->k - 1 - c->pad, Hq = c->Ho + 2 * q;
    float *dyp = scratch, *panels = scratch + pt_conv_align16((int64_t)rows * Hq * Hq * c->Cout);
    pt_conv_pad_images(dy, rows, c->Ho, c->Cout, q, dyp);
    pack_panels_flipped(w, c->k, c->Cin, c->Cout, panels);
    implicit_gemm(dyp, rows, Hq, c->Cout, c->k, 1, c->H, panels, c->Cin, NULL, 0, beta, dx);
}

static void conv_backward_weight(const pt_conv2d_desc *c, int rows, const float *x,
                                    const float *dy, float beta, float *dw, float *scratch)
{
    const int Hp = c->H + 2 * c->pad, Cin = c->Cin, Cout = c->Cout, k = c->k, Ho = c->Ho;
    const int span = k * Cin, jt = (span + MR - 1) / MR;
    const int64_t K = (int64_t)k * span, img = (int64_t)Hp * Hp * Cin;
    const int64_t step_x = (int64_t)c->stride * Cin, step_y = (int64_t)c->stride * Hp * Cin;
    int cb0[64], cbw[64], ct = 0; /* channel blocks: first channel and width (Cout <= 512) */
    for (int n0 = 0; n0 < Cout && ct < 64; n0 += cbw[ct++]) cb0[ct] = n0, cbw[ct] = panel_width(Cout - n0);
    const int ntiles = k * jt * ct;
    float *xp = scratch, *acc = scratch + pt_conv_align16((int64_t)rows * img); /* K x Cout */
    pt_conv_pad_images(x, rows, c->H, Cin, c->pad, xp);
#pragma omp parallel
    {
#ifdef _OPENMP
        const int nth = omp_get_num_threads(), id = omp_get_thread_num();
#else
        const int nth = 1, id = 0;
#endif
        const int t0 = (int)((int64_t)ntiles * id / nth), t1 = (int)((int64_t)ntiles * (id + 1) / nth);
        for (int t = t0; t < t1; t++) {
            const int ky = t / (jt * ct), j0 = (t / ct) % jt * MR, cb = t % ct;
            const int mr = span - j0 < MR ? span - j0 : MR;
            for (int i = 0; i < mr; i++)
                memset(acc + ((int64_t)ky * span + j0 + i) * Cout + cb0[cb], 0,
                       sizeof(float) * (size_t)cbw[cb]);
        }
        for (int b = 0; b < rows; b++) {
            const float *xs = xp + b * img, *gs = dy + (int64_t)b * Ho * Ho * Cout;
            for (int t = t0; t < t1; t++) {
                const int ky = t / (jt * ct), j0 = (t / ct) % jt * MR, cb = t % ct;
                const int mr = span - j0 < MR ? span - j0 : MR, co0 = cb0[cb];
                int xo[MR];
                for (int i = 0; i < MR; i++) xo[i] = i < mr ? i : 0;
                const float *xr = xs + (int64_t)ky * Hp * Cin + j0;
                float *ap = acc + ((int64_t)ky * span + j0) * Cout + co0;
                if (cbw[cb] == 2 * VW)
                    tile_wgrad_main(2, xr, xo, Ho, step_x, step_y, gs + co0, Cout, ap, Cout, mr);
                else if (cbw[cb] == VW)
                    tile_wgrad_main(1, xr, xo, Ho, step_x, step_y, gs + co0, Cout, ap, Cout, mr);
                else tile_wgrad_8(1, xr, xo, Ho, step_x, step_y, gs + co0, Cout, ap, Cout, mr);
            }
        }
#pragma omp barrier
#pragma omp for schedule(static)
        for (int co = 0; co < Cout; co++) {
            float *d = dw + (int64_t)co * K;
            if (beta == 0.0f)
                for (int64_t kk = 0; kk < K; kk++) d[kk] = acc[kk * Cout + co];
            else
                for (int64_t kk = 0; kk < K; kk++) d[kk] += acc[kk * Cout + co];
        }
    }
}


const pt_conv_kernels PT_CAT(pt_conv_kernels_, PT_CONV_SUFFIX) = {
    PT_CONV_COMPILED_ISA, VW, MR, conv_forward, conv_backward_input, conv_backward_weight};
