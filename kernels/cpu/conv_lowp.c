/* CPU conv2d in 16 bits (--precision bf16|fp16; the conv2d_lowp_* entries of paratrain/backend.h),
 * channels-last, weight (Cout, k, k, Cin) as the fp32 entries (conv_kernels.c).
 *
 * im2col + lowp gemm, per chunk of samples: x is converted to 16 bits once per call (1/k^2 of the
 * column matrix's elements), then the column matrix col16 (Ho*Ho rows per sample, k*k*Cin columns
 * in (ky, kx, c) order) is gathered from that copy with one memcpy per kernel row's span, so the
 * conversion is not repeated k^2 times. The three products run through pt_lowp_gemm (16-bit
 * operands, fp32 accumulation, fp32 output; the variant is lowp.h's run-time choice):
 *   forward         y (M x Cout)    = col16 (M x K) W16^T                  then bias, ReLU in fp32
 *   weight grad     dW (Cout x K)   = beta_w dW + dy16^T (Cout x M) col16, chunks add with beta 1
 *   input grad      dcol (M x K)    = dy16 (M x Cout) W16 (Cout x K), fp32; col2im adds it into dx
 * (M = chunk * Ho * Ho, K = k*k*Cin). dy and W arrive in 16 bits (the model converts dy once for
 * both backward products and keeps W16); only x is converted here. Chunks bound the scratch to
 * LOWP_COL elements of the column matrix whatever the batch. */
#include <stdint.h>
#include <string.h>

#include "cpu_kernels.h"
#include "paratrain/lowp.h"

/* column-matrix elements per chunk: 8M (16 MB of col16), the fp32 path's element budget
 * (conv_kernels.c CONV_SCRATCH). Fewer, larger chunks measured faster on the shared 2-core EPYC
 * than 2M or 512K (each chunk is two parallel regions, im2col16 and the gemm with its barriers,
 * which a loaded machine stretches); benchmarks/RESULTS.md, issue 17 */
#define LOWP_COL (8 << 20)

static const pt_backend *self; /* bias_act_forward, relu of the same table */

static int64_t col_per_sample(const pt_conv2d_desc *d)
{
    return (int64_t)d->Ho * d->Ho * d->k * d->k * d->Cin;
}

static int chunk_of(const pt_conv2d_desc *d, int rows)
{
    int64_t c = LOWP_COL / col_per_sample(d);
    if (c < 1) c = 1;
    return (int)(c < rows ? c : rows);
}

static int64_t half_floats(int64_t n16) { return (n16 + 31) / 32 * 16; } /* 64-byte multiples */

/* scratch: x16 (rows*H*H*Cin uint16), then col16 (chunk rows of the column matrix, uint16) for
 * the forward and weight gradient; the fp32 dcol chunk of the input gradient reuses it all */
static int64_t cpu_conv2d_lowp_scratch(pt_dtype t, const pt_conv2d_desc *d, int rows)
{
    (void)t;
    const int64_t col = (int64_t)chunk_of(d, rows) * col_per_sample(d);
    const int64_t fw = half_floats((int64_t)rows * d->H * d->H * d->Cin) + half_floats(col);
    return fw > col ? fw : col;
}

static pt_status check(pt_dtype t, const pt_conv2d_desc *d, int rows, const char *entry)
{
    if (t != PT_BF16 && t != PT_F16)
        return PT_ERR(PT_ERR_ARG, NULL, "%s: dtype %d is not bf16 or fp16", entry, (int)t);
    if (rows < 0 || d->H < 1 || d->Cin < 1 || d->Cout < 1 || d->k < 1 || d->stride < 1 ||
        d->pad < 0 || d->Ho != (d->H + 2 * d->pad - d->k) / d->stride + 1 || d->Ho < 1)
        return PT_ERR(PT_ERR_INTERNAL, "a caller computed a bad shape",
                      "%s: H=%d Cin=%d Cout=%d k=%d stride=%d pad=%d Ho=%d rows=%d", entry, d->H,
                      d->Cin, d->Cout, d->k, d->stride, d->pad, d->Ho, rows);
    return PT_OK;
}

/* n elements: a loop for the short spans of few-channel layers (the cnn's first, Cin 1: 5
 * elements), where a libc call per span costs more than the copy */
static inline void copy16(uint16_t *dst, const uint16_t *src, int64_t n)
{
    if (n > 32) memcpy(dst, src, sizeof(uint16_t) * (size_t)n);
    else for (int64_t i = 0; i < n; i++) dst[i] = src[i];
}
static inline void zero16(uint16_t *dst, int64_t n)
{
    if (n > 32) memset(dst, 0, sizeof(uint16_t) * (size_t)n);
    else for (int64_t i = 0; i < n; i++) dst[i] = 0;
}

/* col16 rows of samples [0, rows) of x16; padding taps are 0 (+0 in both formats) */
static void im2col16(const uint16_t *x, int rows, int H, int C, int k, int s, int pad, int Ho,
                     uint16_t *col)
{
    const int64_t K = (int64_t)k * k * C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < rows; b++)
        for (int oy = 0; oy < Ho; oy++) {
            const uint16_t *xs = x + (int64_t)b * H * H * C;
            for (int ox = 0; ox < Ho; ox++) {
                uint16_t *row = col + (((int64_t)b * Ho + oy) * Ho + ox) * K;
                int kx0, kx1;
                pt_cpu_tap_span(ox, s, pad, k, H, &kx0, &kx1);
                for (int ky = 0; ky < k; ky++) {
                    const int iy = oy * s - pad + ky;
                    uint16_t *dst = row + (int64_t)ky * k * C;
                    if (iy < 0 || iy >= H) {
                        zero16(dst, (int64_t)k * C);
                        continue;
                    }
                    zero16(dst, (int64_t)kx0 * C);
                    copy16(dst + (int64_t)kx0 * C, xs + ((int64_t)iy * H + ox * s - pad + kx0) * C,
                           (int64_t)(kx1 - kx0) * C);
                    zero16(dst + (int64_t)kx1 * C, (int64_t)(k - kx1) * C);
                }
            }
        }
}

static pt_status cpu_conv2d_lowp_forward(pt_dtype t, const pt_conv2d_desc *d, int rows,
                                         const float *x, const uint16_t *w16, const float *bias,
                                         pt_act act, float *y, float *scratch)
{
    PT_TRY(check(t, d, rows, "conv2d_lowp_forward"));
    const int H = d->H, Cin = d->Cin, Cout = d->Cout, k = d->k, s = d->stride, pad = d->pad,
              Ho = d->Ho;
    const int K = k * k * Cin, chunk = chunk_of(d, rows);
    uint16_t *x16 = (uint16_t *)scratch;
    uint16_t *col = (uint16_t *)(scratch + half_floats((int64_t)rows * H * H * Cin));
    pt_lowp_from_f32(t, x16, x, (int64_t)rows * H * H * Cin);
    for (int b0 = 0; b0 < rows; b0 += chunk) {
        const int cb = rows - b0 < chunk ? rows - b0 : chunk;
        im2col16(x16 + (int64_t)b0 * H * H * Cin, cb, H, Cin, k, s, pad, Ho, col);
        PT_TRY(pt_lowp_gemm(t, false, true, cb * Ho * Ho, Cout, K, 1.0f, col, K, w16, K, 0.0f,
                            y + (int64_t)b0 * Ho * Ho * Cout, Cout));
    }
    if (bias) return self->bias_act_forward(y, NULL, bias, rows * Ho * Ho, Cout, act);
    if (act == PT_ACT_RELU) return self->relu(y, y, (int64_t)rows * Ho * Ho * Cout);
    return PT_OK;
}

static pt_status cpu_conv2d_lowp_backward_weight(pt_dtype t, const pt_conv2d_desc *d, int rows,
                                                 const float *x, const uint16_t *dy16,
                                                 float beta_w, float *dw, float *scratch)
{
    PT_TRY(check(t, d, rows, "conv2d_lowp_backward_weight"));
    const int H = d->H, Cin = d->Cin, Cout = d->Cout, k = d->k, s = d->stride, pad = d->pad,
              Ho = d->Ho;
    const int K = k * k * Cin, chunk = chunk_of(d, rows);
    uint16_t *x16 = (uint16_t *)scratch;
    uint16_t *col = (uint16_t *)(scratch + half_floats((int64_t)rows * H * H * Cin));
    pt_lowp_from_f32(t, x16, x, (int64_t)rows * H * H * Cin);
    for (int b0 = 0; b0 < rows; b0 += chunk) {
        const int cb = rows - b0 < chunk ? rows - b0 : chunk;
        im2col16(x16 + (int64_t)b0 * H * H * Cin, cb, H, Cin, k, s, pad, Ho, col);
        PT_TRY(pt_lowp_gemm(t, true, false, Cout, K, cb * Ho * Ho, 1.0f,
                            dy16 + (int64_t)b0 * Ho * Ho * Cout, Cout, col, K, b0 ? 1.0f : beta_w,
                            dw, K));
    }
    if (rows == 0 && beta_w == 0.0f) memset(dw, 0, sizeof(float) * (size_t)Cout * K);
    return PT_OK;
}

static pt_status cpu_conv2d_lowp_backward_input(pt_dtype t, const pt_conv2d_desc *d, int rows,
                                                const uint16_t *dy16, const uint16_t *w16,
                                                float beta_x, float *dx, float *scratch)
{
    PT_TRY(check(t, d, rows, "conv2d_lowp_backward_input"));
    const int H = d->H, Cin = d->Cin, Cout = d->Cout, k = d->k, s = d->stride, pad = d->pad,
              Ho = d->Ho;
    const int K = k * k * Cin, chunk = chunk_of(d, rows);
    if (beta_x == 0.0f) memset(dx, 0, sizeof(float) * (size_t)rows * H * H * Cin);
    for (int b0 = 0; b0 < rows; b0 += chunk) {
        const int cb = rows - b0 < chunk ? rows - b0 : chunk;
        PT_TRY(pt_lowp_gemm(t, false, false, cb * Ho * Ho, K, Cout, 1.0f,
                            dy16 + (int64_t)b0 * Ho * Ho * Cout, Cout, w16, K, 0.0f, scratch, K));
        pt_cpu_col2im_add(scratch, cb, H, Cin, k, s, pad, Ho, dx + (int64_t)b0 * H * H * Cin);
    }
    return PT_OK;
}

void pt_cpu_register_conv_lowp(pt_backend *be)
{
    self = be;
    be->conv2d_lowp_scratch = cpu_conv2d_lowp_scratch;
    be->conv2d_lowp_forward = cpu_conv2d_lowp_forward;
    be->conv2d_lowp_backward_weight = cpu_conv2d_lowp_backward_weight;
    be->conv2d_lowp_backward_input = cpu_conv2d_lowp_backward_input;
}
