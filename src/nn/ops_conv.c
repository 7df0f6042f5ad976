/* Convolution and pooling ops, channels-last (a sample is H x W x C).
 *
 *   conv2d   ia = {H (= W), Cin, Cout, k, stride, pad, Ho (= Wo)};
 *            p = {W (Cout x k x k x Cin), b or -1}; act NONE or ReLU
 *     im2col + one GEMM per chunk of samples: col (Ho*Wo rows per sample, k*k*Cin columns, in
 *     (ky, kx, c) order, so each tap copies Cin contiguous floats), y = col W^T. The weight is
 *     stored (Cout, kh, kw, Cin): PyTorch's (Cout, Cin, kh, kw) permuted (docs/MODELS.md).
 *     Backward recomputes col instead of keeping it for dW += dy^T col; then dcol = dy W into the
 *     same scratch, and col2im adds dcol into dx sample by sample (disjoint, so threads never race).
 *     Chunks bound the scratch to CONV_SCRATCH floats whatever the batch.
 *     By default (--conv-algo auto) each phase that conv_direct.c covers (AVX2/FMA; forward and
 *     weight gradient for Cout % 8 == 0, input gradient for stride 1 and Cin % 8 == 0) runs the
 *     direct implicit-GEMM kernels instead, which skip the column matrix; --conv-algo im2col
 *     forces the path above everywhere (tests run both against PyTorch).
 *
 *   maxpool2d / avgpool2d   ia = {H, C, k, stride, Ho}: windows without padding; max pooling
 *     keeps the winner's index per output, the backward routes the gradient to it.
 *
 *   conv1d_max (TextCNN)   in (L x E); ia = {L, E, F, nw, k_1 .. k_nw};
 *            p = {W_1 (F x k_1 x E), b_1, W_2, b_2, ...}; out nw*F
 *     y_i[f] = relu(max_t conv_i(x)[t, f] + b_i[f]) over the L - k_i + 1 full windows. The
 *     convolution of the whole batch is k_i GEMMs over row-shifted views of x (windows that cross
 *     a sample boundary are computed and ignored); the backward scatters each max's gradient to
 *     its winning window and reuses the same shifted GEMMs. Dropout (fused) follows. */
#include <float.h>
#include <stdint.h>
#include <string.h>

#include "conv_direct.h"
#include "graph.h"

#define CONV_SCRATCH (8 << 20) /* floats */

static pt_conv_shape conv_shape(const pt_node *n)
{
    return (pt_conv_shape){.H = n->ia[0], .Cin = n->ia[1], .Cout = n->ia[2], .k = n->ia[3],
                           .s = n->ia[4], .pad = n->ia[5], .Ho = n->ia[6]};
}

/* the direct kernels for this phase, unless --conv-algo im2col or the shape is not covered */
static int use_direct(const pt_model *m, const pt_node *n, int phase)
{
    const pt_conv_shape c = conv_shape(n);
    return m->opt.conv_algo == PT_CONV_ALGO_AUTO && pt_conv_direct_supported(&c, phase);
}

/* Phases run per algorithm, so tests can see which path --conv-algo really took (the results of
 * both agree to rounding, so nothing else tells them apart). */
static int64_t phase_runs[2][3];
static void count_phase(int direct, int phase) { __atomic_fetch_add(&phase_runs[direct][phase], 1, __ATOMIC_RELAXED); }
int64_t pt_conv_phase_count(int direct, int phase) { return __atomic_load_n(&phase_runs[!!direct][phase], __ATOMIC_RELAXED); }

static int conv_chunk(const pt_node *n, int rows)
{
    const int64_t per = (int64_t)n->ia[6] * n->ia[6] * n->ia[3] * n->ia[3] * n->ia[1];
    int64_t c = CONV_SCRATCH / per;
    if (c < 1) c = 1;
    return (int)(c < rows ? c : rows);
}

static int64_t conv_scratch(const pt_model *m, const pt_node *n, int rows)
{
    const pt_conv_shape c = conv_shape(n);
    const int fwd = use_direct(m, n, PT_CONV_FWD), w = use_direct(m, n, PT_CONV_BWD_WEIGHT),
              x = use_direct(m, n, PT_CONV_BWD_INPUT);
    const int64_t direct = fwd || w || x ? pt_conv_direct_scratch(&c, rows) : 0;
    const int64_t im2col = fwd && w && x ? 0
        : (int64_t)conv_chunk(n, rows) * n->ia[6] * n->ia[6] * n->ia[3] * n->ia[3] * n->ia[1];
    return direct > im2col ? direct : im2col;
}

/* The taps kx of one kernel row that fall inside the image, [*kx0, *kx1): their inputs are
 * (kx1 - kx0) * C contiguous floats (channels-last), copied or added as one span. */
static inline void tap_span(int ox, int s, int pad, int k, int H, int *kx0, int *kx1)
{
    const int first = pad - ox * s, last = H + pad - ox * s;
    *kx0 = first > 0 ? first : 0;
    *kx1 = last < k ? last : k;
    if (*kx1 < *kx0) *kx1 = *kx0;
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
                tap_span(ox, s, pad, k, H, &kx0, &kx1);
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

static void col2im_add(const float *col, int rows, int H, int C, int k, int s, int pad, int Ho,
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
                tap_span(ox, s, pad, k, H, &kx0, &kx1);
                const int64_t len = (int64_t)(kx1 - kx0) * C;
                for (int ky = 0; ky < k; ky++) {
                    const int iy = oy * s - pad + ky;
                    if (iy < 0 || iy >= H) continue;
                    float *d = ds + ((int64_t)iy * H + ox * s - pad + kx0) * C;
                    const float *src = row + ((int64_t)ky * k + kx0) * C;
                    for (int64_t j = 0; j < len; j++) d[j] += src[j];
                }
            }
    }
}

static void conv2d_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const int H = n->ia[0], Cin = n->ia[1], Cout = n->ia[2], k = n->ia[3], s = n->ia[4],
              pad = n->ia[5], Ho = n->ia[6];
    const int K = k * k * Cin, chunk = conv_chunk(n, rows);
    const float *x = pt_in(m, n, 0)->a;
    float *y = pt_out(m, n)->a;
    const int direct = use_direct(m, n, PT_CONV_FWD);
    count_phase(direct, PT_CONV_FWD);
    if (direct) {
        const pt_conv_shape c = conv_shape(n);
        pt_conv_direct_forward(&c, rows, x, pt_pw(m, n, 0), n->p[1] >= 0 ? pt_pw(m, n, 1) : NULL,
                               n->act == PT_ACT_RELU, y, m->scratch);
        return;
    }
    for (int b0 = 0; b0 < rows; b0 += chunk) {
        const int cb = rows - b0 < chunk ? rows - b0 : chunk;
        im2col(x + (int64_t)b0 * H * H * Cin, cb, H, Cin, k, s, pad, Ho, m->scratch);
        be->gemm(false, true, cb * Ho * Ho, Cout, K, 1.0f, m->scratch, K, pt_pw(m, n, 0), K, 0.0f,
                 y + (int64_t)b0 * Ho * Ho * Cout, Cout);
    }
    if (n->p[1] >= 0) be->bias_act_forward(y, NULL, pt_pw(m, n, 1), rows * Ho * Ho, Cout, n->act);
    else if (n->act == PT_ACT_RELU) pt_relu_inplace(y, (int64_t)rows * Ho * Ho * Cout);
}

static void conv2d_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const int H = n->ia[0], Cin = n->ia[1], Cout = n->ia[2], k = n->ia[3], s = n->ia[4],
              pad = n->ia[5], Ho = n->ia[6];
    const int K = k * k * Cin, chunk = conv_chunk(n, rows);
    pt_slot *in = pt_in(m, n, 0), *out = pt_out(m, n);
    float *dy = out->g;
    if (n->act == PT_ACT_RELU) m->be->act_backward(dy, dy, out->a, (int64_t)rows * Ho * Ho * Cout, PT_ACT_RELU);
    if (n->p[1] >= 0) {
        pt_param_beta(m, n, 1);
        be->bias_backward(pt_pg(m, n, 1), dy, rows * Ho * Ho, Cout);
    }
    const float beta_w = pt_param_beta(m, n, 0);
    const int beta_x = pt_in_beta(m, n, 0);
    const pt_conv_shape c = conv_shape(n);
    /* weight gradient: dW = beta dW + dy^T col */
    const int direct_w = use_direct(m, n, PT_CONV_BWD_WEIGHT);
    count_phase(direct_w, PT_CONV_BWD_WEIGHT);
    if (direct_w)
        pt_conv_direct_backward_weight(&c, rows, in->a, dy, beta_w, pt_pg(m, n, 0), m->scratch);
    else
        for (int b0 = 0; b0 < rows; b0 += chunk) {
            const int cb = rows - b0 < chunk ? rows - b0 : chunk;
            im2col(in->a + (int64_t)b0 * H * H * Cin, cb, H, Cin, k, s, pad, Ho, m->scratch);
            be->gemm(true, false, Cout, K, cb * Ho * Ho, 1.0f, dy + (int64_t)b0 * Ho * Ho * Cout,
                     Cout, m->scratch, K, b0 ? 1.0f : beta_w, pt_pg(m, n, 0), K);
        }
    if (beta_x < 0) return; /* the input is the data */
    /* input gradient: dx = beta dx + col2im(dy W) */
    const int direct_x = use_direct(m, n, PT_CONV_BWD_INPUT);
    count_phase(direct_x, PT_CONV_BWD_INPUT);
    if (direct_x) {
        pt_conv_direct_backward_input(&c, rows, dy, pt_pw(m, n, 0), (float)beta_x, in->g, m->scratch);
        return;
    }
    if (beta_x == 0) be->zero(in->g, sizeof(float) * (size_t)rows * H * H * Cin);
    for (int b0 = 0; b0 < rows; b0 += chunk) {
        const int cb = rows - b0 < chunk ? rows - b0 : chunk;
        be->gemm(false, false, cb * Ho * Ho, K, Cout, 1.0f, dy + (int64_t)b0 * Ho * Ho * Cout, Cout,
                 pt_pw(m, n, 0), K, 0.0f, m->scratch, K);
        col2im_add(m->scratch, cb, H, Cin, k, s, pad, Ho, in->g + (int64_t)b0 * H * H * Cin);
    }
}

const pt_op pt_op_conv2d = {"conv2d", conv_scratch, conv2d_forward, conv2d_backward};

/* ------------------------------------------------------------------ pooling */

static void maxpool_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int H = n->ia[0], C = n->ia[1], k = n->ia[2], s = n->ia[3], Ho = n->ia[4];
    const float *x = pt_in(m, n, 0)->a;
    float *y = pt_out(m, n)->a;
    int32_t *arg = (int32_t *)n->aux;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < rows; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Ho; ox++)
                for (int c = 0; c < C; c++) {
                    float best = -FLT_MAX;
                    int32_t at = 0;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            const int32_t i = ((oy * s + ky) * H + ox * s + kx) * C + c;
                            const float v = x[(int64_t)b * H * H * C + i];
                            if (v > best) best = v, at = i; /* first maximum wins, as PyTorch */
                        }
                    const int64_t o = (((int64_t)b * Ho + oy) * Ho + ox) * C + c;
                    y[o] = best;
                    arg[o] = at;
                }
}

static void maxpool_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int H = n->ia[0], C = n->ia[1], Ho = n->ia[4];
    const int beta = pt_in_beta(m, n, 0);
    if (beta < 0) return;
    float *dx = pt_in(m, n, 0)->g;
    const float *dy = pt_out(m, n)->g;
    const int32_t *arg = (const int32_t *)n->aux;
    const int64_t in_row = (int64_t)H * H * C, out_row = (int64_t)Ho * Ho * C;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < rows; b++) {
        float *d = dx + b * in_row;
        if (beta == 0) memset(d, 0, sizeof(float) * (size_t)in_row);
        for (int64_t o = 0; o < out_row; o++) d[arg[b * out_row + o]] += dy[b * out_row + o];
    }
}

const pt_op pt_op_maxpool2d = {"maxpool2d", NULL, maxpool_forward, maxpool_backward};

static void avgpool_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int H = n->ia[0], C = n->ia[1], k = n->ia[2], s = n->ia[3], Ho = n->ia[4];
    const float *x = pt_in(m, n, 0)->a;
    float *y = pt_out(m, n)->a;
    const float inv = 1.0f / (float)(k * k);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < rows; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Ho; ox++) {
                float *yo = y + (((int64_t)b * Ho + oy) * Ho + ox) * C;
                for (int c = 0; c < C; c++) yo[c] = 0.0f;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        const float *xi =
                            x + (((int64_t)b * H + oy * s + ky) * H + ox * s + kx) * C;
                        for (int c = 0; c < C; c++) yo[c] += xi[c];
                    }
                for (int c = 0; c < C; c++) yo[c] *= inv;
            }
}

static void avgpool_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int H = n->ia[0], C = n->ia[1], k = n->ia[2], s = n->ia[3], Ho = n->ia[4];
    const int beta = pt_in_beta(m, n, 0);
    if (beta < 0) return;
    float *dx = pt_in(m, n, 0)->g;
    const float *dy = pt_out(m, n)->g;
    const float inv = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < rows; b++) {
        if (beta == 0) memset(dx + (int64_t)b * H * H * C, 0, sizeof(float) * (size_t)H * H * C);
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Ho; ox++) {
                const float *g = dy + (((int64_t)b * Ho + oy) * Ho + ox) * C;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        float *d = dx + (((int64_t)b * H + oy * s + ky) * H + ox * s + kx) * C;
                        for (int c = 0; c < C; c++) d[c] += g[c] * inv;
                    }
            }
    }
}

const pt_op pt_op_avgpool2d = {"avgpool2d", NULL, avgpool_forward, avgpool_backward};

/* ------------------------------------------------------------------ TextCNN convolution */

static int64_t conv1d_scratch(const pt_model *m, const pt_node *n, int rows)
{
    return (int64_t)rows * n->ia[0] * n->ia[2];
}

static void conv1d_max_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const int L = n->ia[0], E = n->ia[1], F = n->ia[2], nw = n->ia[3], out_w = nw * F;
    const float *x = pt_in(m, n, 0)->a;
    float *y = pt_out(m, n)->a, *tmp = m->scratch;
    int32_t *arg = (int32_t *)n->aux;
    for (int i = 0; i < nw; i++) {
        const int k = n->ia[4 + i], M = rows * L - k + 1;
        const float *W = pt_pw(m, n, 2 * i), *bias = pt_pw(m, n, 2 * i + 1);
        for (int j = 0; j < k; j++)
            be->gemm(false, true, M, F, E, 1.0f, x + (int64_t)j * E, E, W + (int64_t)j * E, k * E,
                     j ? 1.0f : 0.0f, tmp, F);
#pragma omp parallel for schedule(static)
        for (int b = 0; b < rows; b++)
            for (int f = 0; f < F; f++) {
                float best = -FLT_MAX;
                int32_t at = 0;
                for (int t = 0; t + k <= L; t++) {
                    const float v = tmp[((int64_t)b * L + t) * F + f];
                    if (v > best) best = v, at = t;
                }
                best += bias[f];
                y[(int64_t)b * out_w + i * F + f] = best > 0.0f ? best : 0.0f;
                arg[(int64_t)b * out_w + i * F + f] = at;
            }
    }
    if (ctx->train && n->dropout > 0.0f)
        be->dropout(y, rows, out_w, ctx->row_offset, n->dropout, ctx->seed,
                    pt_dropout_stream(ctx->step, n->id));
}

static void conv1d_max_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const int L = n->ia[0], E = n->ia[1], F = n->ia[2], nw = n->ia[3], out_w = nw * F;
    pt_slot *in = pt_in(m, n, 0), *out = pt_out(m, n);
    float *dy = out->g, *dtmp = m->scratch;
    const int32_t *arg = (const int32_t *)n->aux;
    if (ctx->train && n->dropout > 0.0f)
        be->dropout(dy, rows, out_w, ctx->row_offset, n->dropout, ctx->seed,
                    pt_dropout_stream(ctx->step, n->id));
    m->be->act_backward(dy, dy, out->a, (int64_t)rows * out_w, PT_ACT_RELU);
    const int beta_x = pt_in_beta(m, n, 0);
    if (beta_x == 0) be->zero(in->g, sizeof(float) * (size_t)rows * L * E);
    for (int i = 0; i < nw; i++) {
        const int k = n->ia[4 + i], M = rows * L - k + 1;
        const float *W = pt_pw(m, n, 2 * i);
        float *db = pt_pg(m, n, 2 * i + 1);
        pt_param_beta(m, n, 2 * i + 1);
        const float beta_w = pt_param_beta(m, n, 2 * i);
        be->zero(dtmp, sizeof(float) * (size_t)rows * L * F);
        for (int f = 0; f < F; f++) db[f] = 0.0f;
        for (int b = 0; b < rows; b++)
            for (int f = 0; f < F; f++) {
                const float g = dy[(int64_t)b * out_w + i * F + f];
                dtmp[((int64_t)b * L + arg[(int64_t)b * out_w + i * F + f]) * F + f] = g;
                db[f] += g;
            }
        for (int j = 0; j < k; j++) {
            be->gemm(true, false, F, E, M, 1.0f, dtmp, F, in->a + (int64_t)j * E, E, beta_w,
                     pt_pg(m, n, 2 * i) + (int64_t)j * E, k * E);
            if (beta_x >= 0)
                be->gemm(false, false, M, E, F, 1.0f, dtmp, F, W + (int64_t)j * E, k * E, 1.0f,
                         in->g + (int64_t)j * E, E);
        }
    }
}

const pt_op pt_op_conv1d_max = {"conv1d_max", conv1d_scratch, conv1d_max_forward,
                                conv1d_max_backward};
