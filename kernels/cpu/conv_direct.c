/* Direct (implicit-GEMM) convolution: see conv_direct.h.
 *
 * Forward, as a GEMM: Y (pixels x Cout) = A (pixels x k*k*Cin) B (k*k*Cin x Cout), where row p of
 * A is the receptive field of pixel p. In channels-last layout, one kernel row ky of that field is
 * k*Cin contiguous floats of the padded input, starting at pixel p's corner plus ky rows: so a
 * register tile of MR pixels x up to 2 vectors of channels (8 x 32 with AVX-512, 6 x 16 with
 * AVX2) needs only MR corner pointers and walks every tap with a shared offset. B is the weight
 * repacked into panels as wide as the tile (k*k*Cin x width each; 8-channel tails get their own).
 *
 * Input gradient (stride 1): the same kernel, run on dy padded by k-1-pad with the weight flipped
 * in space and transposed in channels (a full correlation).
 *
 * Weight gradient: dW^T (k*k*Cin x Cout) = A^T dy. A tile of MR consecutive columns j of one
 * kernel row x a panel of output channels accumulates, over every pixel, MR input values
 * (contiguous) times the pixel's gradients (contiguous). Tiles are split over threads; each thread sweeps the samples
 * in order, so every sum runs in the same order whatever the thread count. */
#include "config.h"

#include "conv_direct.h"

#include <string.h>

#include "paratrain/cpu.h"

/* Only this file decides which kernels run: the table of the ISA level pt_cpu_isa() chose (once,
 * from CPUID or PT_CPU_ISA), or none at the baseline, where conv_kernels.c uses im2col + GEMM. */
#if PT_HAVE_X86_KERNELS
extern const pt_conv_kernels pt_conv_kernels_avx2, pt_conv_kernels_avx512;
#endif

const pt_conv_kernels *pt_conv_direct_kernels(void)
{
#if PT_HAVE_X86_KERNELS
    switch (pt_cpu_isa()) {
    case PT_ISA_AVX512: return &pt_conv_kernels_avx512;
    case PT_ISA_AVX2: return &pt_conv_kernels_avx2;
    default: return NULL;
    }
#else
    return NULL;
#endif
}

int64_t pt_conv_align16(int64_t n) { return (n + 15) & ~(int64_t)15; }

int pt_conv_direct_supported(const pt_conv2d_desc *c, int phase)
{
    if (!pt_conv_direct_kernels()) return 0;
    switch (phase) {
    case PT_CONV_FWD:
    case PT_CONV_BWD_WEIGHT: return c->Cout % 8 == 0 && c->Cout <= 512; /* 64 panels at most */
    case PT_CONV_BWD_INPUT: return c->stride == 1 && c->Cin % 8 == 0 && c->pad <= c->k - 1;
    default: return 0;
    }
}

int64_t pt_conv_direct_scratch(const pt_conv2d_desc *c, int rows)
{
    const int Hp = c->H + 2 * c->pad, Hq = c->Ho + 2 * (c->k - 1 - c->pad);
    int64_t img = (int64_t)rows * Hp * Hp * c->Cin;
    if (pt_conv_direct_supported(c, PT_CONV_BWD_INPUT)) {
        const int64_t dyp = (int64_t)rows * Hq * Hq * c->Cout;
        img = dyp > img ? dyp : img;
    }
    return pt_conv_align16(img) + (int64_t)c->k * c->k * c->Cin * c->Cout + 16;
}

/* xp (rows x Hp x Hp x C, Hp = H + 2p) = x with p zeros around each image */
void pt_conv_pad_images(const float *x, int rows, int H, int C, int p, float *xp)
{
    const int Hp = H + 2 * p;
    const size_t row = sizeof(float) * (size_t)Hp * C;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < rows; b++) {
        float *d = xp + (int64_t)b * Hp * Hp * C;
        const float *s = x + (int64_t)b * H * H * C;
        memset(d, 0, row * (size_t)p);
        for (int y = 0; y < H; y++) {
            float *r = d + (int64_t)(y + p) * Hp * C;
            memset(r, 0, sizeof(float) * (size_t)p * C);
            memcpy(r + (int64_t)p * C, s + (int64_t)y * H * C, sizeof(float) * (size_t)H * C);
            memset(r + (int64_t)(p + H) * C, 0, sizeof(float) * (size_t)p * C);
        }
        memset(d + (int64_t)(p + H) * Hp * C, 0, row * (size_t)p);
    }
}

/* callers check pt_conv_direct_supported first, so the table is there */
void pt_conv_direct_forward(const pt_conv2d_desc *c, int rows, const float *x, const float *w,
                            const float *bias, int relu, float *y, float *scratch)
{
    pt_conv_direct_kernels()->forward(c, rows, x, w, bias, relu, y, scratch);
}

void pt_conv_direct_backward_input(const pt_conv2d_desc *c, int rows, const float *dy,
                                   const float *w, float beta, float *dx, float *scratch)
{
    pt_conv_direct_kernels()->backward_input(c, rows, dy, w, beta, dx, scratch);
}

void pt_conv_direct_backward_weight(const pt_conv2d_desc *c, int rows, const float *x,
                                    const float *dy, float beta, float *dw, float *scratch)
{
    pt_conv_direct_kernels()->backward_weight(c, rows, x, dy, beta, dw, scratch);
}
