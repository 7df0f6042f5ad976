/* Direct (implicit-GEMM) 2-D convolution for the CPU, channels-last.
 *
 * The same products as im2col + GEMM, but the GEMM micro-kernel reads its left operand straight
 * from a zero-padded copy of the input: a tile of 6 output pixels keeps one pointer per pixel and
 * every tap is a common offset from those pointers, so no column matrix is written, re-read and
 * packed (on Fashion-MNIST's 5x5, 32 -> 64 layer that matrix is 80 MB per batch of 128, three times
 * per step). The kernels are register tiles (8 rows x 32 floats with AVX-512, 6 x 16 with AVX2,
 * conv_direct_isa.c compiled once per ISA) picked at run time from CPUID (paratrain/cpu.h); the
 * backend's conv2d entries (conv_kernels.c) fall back to im2col + GEMM for shapes or machines they
 * do not cover (pt_conv_direct_supported), and for PT_CONV_ALGO_IM2COL.
 *
 * Sums run in a fixed order that depends on neither the thread count nor the batch split:
 * forward and input gradient per output element over (ky, kx, c); weight gradient per element
 * over samples, then pixels, in order. */
#ifndef PT_CPU_CONV_DIRECT_H
#define PT_CPU_CONV_DIRECT_H

#include <stdint.h>

#include "paratrain/backend.h" /* pt_conv2d_desc: the shape (algo is the caller's business) */

/* the phases, as the backend's conv2d_uses_direct numbers them */
enum { PT_CONV_FWD = 0, PT_CONV_BWD_WEIGHT = 1, PT_CONV_BWD_INPUT = 2 };

/* conv2d phases the CPU backend has run so far in this process with the direct kernels
 * (direct = 1) or with im2col + GEMM (direct = 0): lets tests see which path --conv-algo took
 * (both agree to rounding, so nothing else tells them apart). Counted in conv_kernels.c. */
int64_t pt_conv_phase_count(int direct, int phase);

/* One ISA level's kernels (conv_direct_isa.c): isa is what the object was really compiled for. */
typedef struct {
    const char *isa; /* "avx2" or "avx512" */
    int vw, mr;      /* floats per vector, rows per register tile */
    void (*forward)(const pt_conv2d_desc *c, int rows, const float *x, const float *w,
                    const float *bias, int relu, float *y, float *scratch);
    void (*backward_input)(const pt_conv2d_desc *c, int rows, const float *dy, const float *w,
                           float beta, float *dx, float *scratch);
    void (*backward_weight)(const pt_conv2d_desc *c, int rows, const float *x, const float *dy,
                            float beta, float *dw, float *scratch);
} pt_conv_kernels;

/* the kernels in use (pt_cpu_isa()), or NULL where there are none (baseline, non-x86) */
const pt_conv_kernels *pt_conv_direct_kernels(void);
/* shared by the kernels: xp (rows x Hp x Hp x C, Hp = H + 2p) = x zero-padded by p */
void pt_conv_pad_images(const float *x, int rows, int H, int C, int p, float *xp);
int64_t pt_conv_align16(int64_t n);

/* 1 if the direct kernels handle this phase of this shape on this machine (ISA in use) */
int pt_conv_direct_supported(const pt_conv2d_desc *c, int phase);
/* floats of scratch the supported phases need for `rows` samples */
int64_t pt_conv_direct_scratch(const pt_conv2d_desc *c, int rows);

/* y = act(conv(x, w) + bias); w is (Cout, k, k, Cin); bias may be NULL; relu 0/1 */
void pt_conv_direct_forward(const pt_conv2d_desc *c, int rows, const float *x, const float *w,
                            const float *bias, int relu, float *y, float *scratch);
/* dw = beta * dw + sum over the batch of dy (x) x, beta 0 or 1 */
void pt_conv_direct_backward_weight(const pt_conv2d_desc *c, int rows, const float *x,
                                    const float *dy, float beta, float *dw, float *scratch);
/* dx = beta * dx + conv_transpose(dy, w), beta 0 or 1 (stride 1 only) */
void pt_conv_direct_backward_input(const pt_conv2d_desc *c, int rows, const float *dy,
                                   const float *w, float beta, float *dx, float *scratch);

#endif
