/* CPU conv2d entries, channels-last (a sample is H x W x C).
 *
 * im2col + one GEMM per chunk of samples: col (Ho*Wo rows per sample, k*k*Cin columns, in
 * (ky, kx, c) order, so each tap copies Cin contiguous floats), y = col W^T. The weight is stored
 * (Cout, kh, kw, Cin): PyTorch's (Cout, Cin, kh, kw) permuted (docs/MODELS.md). The weight
 * gradient recomputes col instead of keeping it for dW += dy^T col; the input gradient computes
 * dcol = dy W into the same scratch, and col2im adds dcol into dx sample by sample (disjoint, so
 * threads never race). Chunks bound the scratch to CONV_SCRATCH floats whatever the batch.
 *
 * With PT_CONV_ALGO_AUTO each phase that the direct implicit-GEMM kernels cover (conv_direct.c:
 * AVX2/FMA; forward and weight gradient for Cout % 8 == 0, input gradient for stride 1 and
 * Cin % 8 == 0) runs them instead, which skip the column matrix; PT_CONV_ALGO_IM2COL
 * (--conv-algo im2col) forces the path above everywhere (tests run both against PyTorch). */
#include <stdint.h>
#include <string.h>

#include "conv_direct.h"
#include "cpu_kernels.h"

#define CONV_SCRATCH (8 << 20) /* floats */

/* the table these entries are part of: its gemm (deterministic tiling under --reproducible) */
static const pt_backend *self;

/* the direct kernels for this phase, unless im2col is forced or the shape is not covered */
static int use_direct(const pt_conv2d_desc *d, int phase)
{
    return d->algo == PT_CONV_ALGO_AUTO && pt_conv_direct_supported(d, phase);
}

static int cpu_conv2d_uses_direct(const pt_conv2d_desc *d, int phase) { return use_direct(d, phase); }

/* phases run per algorithm (conv_direct.h) */
static int64_t phase_runs[2][3];
static void count_phase(int direct, int phase)
{
    __atomic_fetch_add(&phase_runs[direct][phase], 1, __ATOMIC_RELAXED);
}
int64_t pt_conv_phase_count(int direct, int phase)
{
    return __atomic_load_n(&phase_runs[!!direct][phase], __ATOMIC_RELAXED);
}

/* floats of one sample's column matrix */
static int64_t col_per_sample(const pt_conv2d_desc *d)
{
    return (int64_t)d->Ho * d->Ho * d->k * d->k * d->Cin;
}

static int conv_chunk(const pt_conv2d_desc *d, int rows)
{
    int64_t c = CONV_SCRATCH / col_per_sample(d);
    if (c < 1) c = 1;
    return (int)(c < rows ? c : rows);
}

static int64_t cpu_conv2d_scratch(const pt_conv2d_desc *d, int rows)
{
    const int fwd = use_direct(d, PT_CONV_FWD), w = use_direct(d, PT_CONV_BWD_WEIGHT),
              x = use_direct(d, PT_CONV_BWD_INPUT);
    const int64_t direct = fwd || w || x ? pt_conv_direct_scratch(d, rows) : 0;
    const int64_t im2col = fwd && w && x ? 0 : (int64_t)conv_chunk(d, rows) * col_per_sample(d);
    return direct > im2col ? direct : im2col;
}

static void im2col(const float *x, int rows, int H, int C, int k, int s, int pad, int Ho, float *col)
{
    const int64_t K = (int64_t)k * k * C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < rows; b++)
        for (int oy = 0; oy < Ho; oy++) {
            const float *xs = x + (int64_t)b * H * H * C;
            for (int ox = 0; ox < Ho; ox++) {
                float *row = col + (((int64_t)b * Ho + oy) * Ho + ox) * K;
                int kx0, kx1;
                pt_cpu_tap_span(ox, s, pad, k, H, &kx0, &kx1);
                for (int ky = 0; ky < k; ky++) {
                    const int iy = oy * s - pad + ky;
                    float *dst = row + (int64_t)ky * k * C;
                    if (iy < 0 || iy >= H) {
                        memset(dst, 0, sizeof(float) * (size_t)k * C);
                        continue;
                    }
                    memset(dst, 0, sizeof(float) * (size_t)kx0 * C);
                    memcpy(dst + (int64_t)kx0 * C, xs + ((int64_t)iy * H + ox * s - pad + kx0) * C,
                           sizeof(float) * (size_t)(kx1 - kx0) * C);
                    memset(dst + (int64_t)kx1 * C, 0, sizeof(float) * (size_t)(k - kx1) * C);
                }
            }
        }
}

void pt_cpu_col2im_add(const float *col, int rows, int H, int C, int k, int s, int pad, int Ho,
                       float *dx)
{
    const int64_t K = (int64_t)k * k * C;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < rows; b++) {
        float *ds = dx + (int64_t)b * H * H * C;
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Ho; ox++) {
                const float *row = col + (((int64_t)b * Ho + oy) * Ho + ox) * K;
                int kx0, kx1;
                pt_cpu_tap_span(ox, s, pad, k, H, &kx0, &kx1);
                const int64_t len = (int64_t)(kx1 - kx0) * C;
                for (int ky = 0; ky < k; ky++) {
                    const int iy = oy * s - pad + ky;
                    if (iy < 0 || iy >= H) continue;
                    float *dd = ds + ((int64_t)iy * H + ox * s - pad + kx0) * C;
                    const float *src = row + ((int64_t)ky * k + kx0) * C;
                    for (int64_t j = 0; j < len; j++) dd[j] += src[j];
                }
            }
    }
}

static pt_status cpu_conv2d_forward(const pt_conv2d_desc *d, int rows, const float *x,
                                    const float *w, const float *bias, pt_act act, float *y,
                                    float *scratch)
{
    const int H = d->H, Cin = d->Cin, Cout = d->Cout, k = d->k, s = d->stride, pad = d->pad,
              Ho = d->Ho;
    const int K = k * k * Cin, chunk = conv_chunk(d, rows);
    const int direct = use_direct(d, PT_CONV_FWD);
    count_phase(direct, PT_CONV_FWD);
    if (direct) {
        pt_conv_direct_forward(d, rows, x, w, bias, act == PT_ACT_RELU, y, scratch);
        return PT_OK;
    }
    for (int b0 = 0; b0 < rows; b0 += chunk) {
        const int cb = rows - b0 < chunk ? rows - b0 : chunk;
        im2col(x + (int64_t)b0 * H * H * Cin, cb, H, Cin, k, s, pad, Ho, scratch);
        PT_TRY(self->gemm(false, true, cb * Ho * Ho, Cout, K, 1.0f, scratch, K, w, K, 0.0f,
                          y + (int64_t)b0 * Ho * Ho * Cout, Cout));
    }
    if (bias) return self->bias_act_forward(y, NULL, bias, rows * Ho * Ho, Cout, act);
    if (act == PT_ACT_RELU) return self->relu(y, y, (int64_t)rows * Ho * Ho * Cout);
    return PT_OK;
}

static pt_status cpu_conv2d_backward_weight(const pt_conv2d_desc *d, int rows, const float *x,
                                            const float *dy, float beta_w, float *dw,
                                            float *scratch)
{
    const int H = d->H, Cin = d->Cin, Cout = d->Cout, k = d->k, s = d->stride, pad = d->pad,
              Ho = d->Ho;
    const int K = k * k * Cin, chunk = conv_chunk(d, rows);
    const int direct = use_direct(d, PT_CONV_BWD_WEIGHT);
    count_phase(direct, PT_CONV_BWD_WEIGHT);
    if (direct) {
        pt_conv_direct_backward_weight(d, rows, x, dy, beta_w, dw, scratch);
        return PT_OK;
    }
    for (int b0 = 0; b0 < rows; b0 += chunk) {
        const int cb = rows - b0 < chunk ? rows - b0 : chunk;
        im2col(x + (int64_t)b0 * H * H * Cin, cb, H, Cin, k, s, pad, Ho, scratch);
        PT_TRY(self->gemm(true, false, Cout, K, cb * Ho * Ho, 1.0f,
                          dy + (int64_t)b0 * Ho * Ho * Cout, Cout, scratch, K,
                          b0 ? 1.0f : beta_w, dw, K));
    }
    return PT_OK;
}

static pt_status cpu_conv2d_backward_input(const pt_conv2d_desc *d, int rows, const float *dy,
                                           const float *w, float beta_x, float *dx,
                                           float *scratch)
{
    const int H = d->H, Cin = d->Cin, Cout = d->Cout, k = d->k, s = d->stride, pad = d->pad,
              Ho = d->Ho;
    const int K = k * k * Cin, chunk = conv_chunk(d, rows);
    const int direct = use_direct(d, PT_CONV_BWD_INPUT);
    count_phase(direct, PT_CONV_BWD_INPUT);
    if (direct) {
        pt_conv_direct_backward_input(d, rows, dy, w, beta_x, dx, scratch);
        return PT_OK;
    }
    if (beta_x == 0.0f) memset(dx, 0, sizeof(float) * (size_t)rows * H * H * Cin);
    for (int b0 = 0; b0 < rows; b0 += chunk) {
        const int cb = rows - b0 < chunk ? rows - b0 : chunk;
        PT_TRY(self->gemm(false, false, cb * Ho * Ho, K, Cout, 1.0f,
                          dy + (int64_t)b0 * Ho * Ho * Cout, Cout, w, K, 0.0f, scratch, K));
        pt_cpu_col2im_add(scratch, cb, H, Cin, k, s, pad, Ho, dx + (int64_t)b0 * H * H * Cin);
    }
    return PT_OK;
}

void pt_cpu_register_conv(pt_backend *be)
{
    self = be;
    be->conv2d_scratch = cpu_conv2d_scratch;
    be->conv2d_forward = cpu_conv2d_forward;
    be->conv2d_backward_weight = cpu_conv2d_backward_weight;
    be->conv2d_backward_input = cpu_conv2d_backward_input;
    be->conv2d_uses_direct = cpu_conv2d_uses_direct;
}
