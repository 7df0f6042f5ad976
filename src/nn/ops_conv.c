/* Convolution and pooling ops, channels-last (a sample is H x W x C): the wiring only; the
 * arithmetic is the backend's (convolution and pooling entries of paratrain/backend.h; the CPU
 * ones in kernels/cpu/conv_kernels.c and pool_kernels.c).
 *
 *   conv2d   d.conv2d = {H (= W), Cin, Cout, k, stride, pad, Ho (= Wo), algo};
 *            p = {W (Cout x k x k x Cin), b or -1}; act NONE or ReLU
 *     The weight is stored (Cout, kh, kw, Cin): PyTorch's (Cout, Cin, kh, kw) permuted
 *     (docs/MODELS.md). algo is --conv-algo: auto lets the backend pick its fastest kernel per
 *     phase (on the CPU the direct implicit-GEMM kernels where they apply), im2col forces
 *     im2col + GEMM everywhere (tests run both against PyTorch). The fused ReLU's backward uses
 *     the output as pre-activation, so nothing else is kept.
 *
 *   maxpool2d / avgpool2d   d.pool = {H, C, k, stride, Ho}: windows without padding; max pooling
 *     keeps the winner's index per output (aux), the backward routes the gradient to it.
 *
 *   conv1d_max (TextCNN)   in (L x E); d.textcnn = {L, E, F, nw, k[nw]};
 *            p = {W_1 (F x k_1 x E), b_1, W_2, b_2, ...}; out nw*F
 *     y_i[f] = relu(max_t conv_i(x)[t, f] + b_i[f]) over the L - k_i + 1 full windows. The
 *     convolution of the whole batch is k_i GEMMs over row-shifted views of x (windows that cross
 *     a sample boundary are computed and ignored); the backend's maxtime entries take the max,
 *     the bias and the ReLU, and in the backward scatter each max's gradient to its winning
 *     window, which the same shifted GEMMs carry back. aux keeps the winners: window i's
 *     (rows x F) block at i * rows * F. Dropout (fused) follows.
 *
 * Mixed precision (m->precision bf16|fp16, docs/MIXED_PRECISION.md): conv1d_max's GEMMs run
 * through lowp_gemm on 16-bit operands (x saved in the node's lp buffer, W from w16, the
 * scattered gradient converted in scratch). conv2d runs the backend's conv2d_lowp entries: the
 * column matrix is built in 16 bits from x, W is the model's w16, dy is converted once (after
 * the ReLU's derivative and the fp32 bias gradient) for both backward products; fp32
 * accumulation and outputs (the fp32 kernels and --conv-algo are not used). */
#include <stdint.h>

#include "graph.h"
#include "paratrain/lowp.h" /* pt_precision_name */

/* floats of n 16-bit elements, in 64-byte multiples */
static int64_t halves(int64_t n) { return (n + 31) / 32 * 16; }
static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

/* Low precision: the backend's 16-bit conv2d scratch, then dy16 (the output gradient in 16 bits,
 * converted once for both backward products) */
static int64_t conv_scratch(const pt_model *m, const pt_node *n, int rows)
{
    const pt_conv2d_desc *d = &n->d.conv2d;
    if (m->precision == PT_F32) return m->be->conv2d_scratch(d, rows);
    if (!m->be->conv2d_lowp_scratch) return 0; /* refused at the first pass (lowp_missing) */
    return round16(m->be->conv2d_lowp_scratch(m->precision, d, rows)) +
           halves((int64_t)rows * d->Ho * d->Ho * d->Cout);
}
static uint16_t *conv_dy16(pt_model *m, const pt_node *n, int rows)
{
    return (uint16_t *)(m->scratch +
                        round16(m->be->conv2d_lowp_scratch(m->precision, &n->d.conv2d, rows)));
}

/* A backend with lowp_gemm but without the 16-bit conv2d entries (none today: the CUDA backend
 * has neither, and the model refuses --precision bf16|fp16 on it before any work) */
static bool lowp_missing(pt_model *m)
{
    const pt_backend *be = m->be;
    if (be->conv2d_lowp_scratch && be->conv2d_lowp_forward && be->conv2d_lowp_backward_weight &&
        be->conv2d_lowp_backward_input)
        return false;
    pt_op_check(m, PT_ERR(PT_ERR_ARG, "use --precision fp32 on this backend, or --backend cpu",
                          "--precision %s: the %s backend has no 16-bit conv2d entries",
                          pt_precision_name(m->precision), be->name));
    return true;
}

static void conv2d_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const pt_conv2d_desc *d = &n->d.conv2d;
    const float *x = pt_in(m, n, 0)->a, *bias = n->p[1] >= 0 ? pt_pw(m, n, 1) : NULL;
    float *y = pt_out(m, n)->a;
    if (m->precision == PT_F32) {
        pt_op_check(m, be->conv2d_forward(d, rows, x, pt_pw(m, n, 0), bias, n->act, y, m->scratch));
        return;
    }
    if (lowp_missing(m)) {
        be->zero(y, sizeof(float) * (size_t)rows * d->Ho * d->Ho * d->Cout);
        return;
    }
    pt_op_check(m, be->conv2d_lowp_forward(m->precision, d, rows, x,
                                           m->w16 + m->params[n->p[0]].offset, bias, n->act, y,
                                           m->scratch));
}

static void conv2d_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const pt_conv2d_desc *d = &n->d.conv2d;
    const int Ho = d->Ho, Cout = d->Cout;
    pt_slot *in = pt_in(m, n, 0), *out = pt_out(m, n);
    float *dy = out->g;
    const int64_t ny = (int64_t)rows * Ho * Ho * Cout;
    if (n->act == PT_ACT_RELU) be->act_backward(dy, dy, out->a, ny, PT_ACT_RELU);
    if (n->p[1] >= 0) {
        pt_param_beta(m, n, 1);
        be->bias_backward(pt_pg(m, n, 1), dy, rows * Ho * Ho, Cout);
    }
    const float beta_w = pt_param_beta(m, n, 0);
    const int beta_x = pt_in_beta(m, n, 0);
    float *dw = pt_pg(m, n, 0);
    if (m->precision == PT_F32) {
        pt_op_check(m, be->conv2d_backward_weight(d, rows, in->a, dy, beta_w, dw, m->scratch));
        if (beta_x < 0) return; /* the input is the data */
        pt_op_check(m, be->conv2d_backward_input(d, rows, dy, pt_pw(m, n, 0), (float)beta_x, in->g,
                                                 m->scratch));
        return;
    }
    if (lowp_missing(m)) return; /* the error stops the run; gradients are not used */
    const pt_dtype t = m->precision;
    uint16_t *dy16 = conv_dy16(m, n, rows); /* the bias gradient above took dy in fp32 */
    pt_op_check(m, be->lowp_from_f32(t, dy16, dy, ny));
    pt_op_check(m, be->conv2d_lowp_backward_weight(t, d, rows, in->a, dy16, beta_w, dw,
                                                   m->scratch));
    if (beta_x < 0) return;
    pt_op_check(m, be->conv2d_lowp_backward_input(t, d, rows, dy16,
                                                  m->w16 + m->params[n->p[0]].offset,
                                                  (float)beta_x, in->g, m->scratch));
}

const pt_op pt_op_conv2d = {"conv2d", conv_scratch, conv2d_forward, conv2d_backward};

/* ------------------------------------------------------------------ pooling */

static void maxpool_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    m->be->maxpool2d_forward(&n->d.pool, rows, pt_in(m, n, 0)->a, pt_out(m, n)->a,
                             (int32_t *)n->aux);
}

static void maxpool_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int beta = pt_in_beta(m, n, 0);
    if (beta < 0) return;
    m->be->maxpool2d_backward(&n->d.pool, rows, pt_out(m, n)->g, (const int32_t *)n->aux,
                              (float)beta, pt_in(m, n, 0)->g);
}

const pt_op pt_op_maxpool2d = {"maxpool2d", NULL, maxpool_forward, maxpool_backward};

static void avgpool_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    m->be->avgpool2d_forward(&n->d.pool, rows, pt_in(m, n, 0)->a, pt_out(m, n)->a);
}

static void avgpool_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int beta = pt_in_beta(m, n, 0);
    if (beta < 0) return;
    m->be->avgpool2d_backward(&n->d.pool, rows, pt_out(m, n)->g, (float)beta, pt_in(m, n, 0)->g);
}

const pt_op pt_op_avgpool2d = {"avgpool2d", NULL, avgpool_forward, avgpool_backward};

/* ------------------------------------------------------------------ TextCNN convolution */

static int64_t conv1d_scratch(const pt_model *m, const pt_node *n, int rows)
{
    const int64_t f = (int64_t)rows * n->d.textcnn.L * n->d.textcnn.F;
    return m->precision == PT_F32 ? f : round16(f) + (f + 1) / 2; /* + its 16-bit copy */
}

/* window i's max-over-time descriptor: its columns of the output */
static pt_maxtime_desc maxtime_desc(const pt_node *n, int i)
{
    const int F = n->d.textcnn.F;
    return (pt_maxtime_desc){.L = n->d.textcnn.L, .F = F, .k = n->d.textcnn.k[i], .y_col = i * F,
                             .y_width = n->d.textcnn.nw * F};
}

static void conv1d_max_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const int L = n->d.textcnn.L, E = n->d.textcnn.E, F = n->d.textcnn.F, nw = n->d.textcnn.nw;
    const float *x = pt_in(m, n, 0)->a;
    float *y = pt_out(m, n)->a, *tmp = m->scratch;
    const pt_dtype t = m->precision;
    if (t != PT_F32) pt_op_check(m, be->lowp_from_f32(t, n->lp, x, (int64_t)rows * L * E));
    for (int i = 0; i < nw; i++) {
        const int k = n->d.textcnn.k[i], M = rows * L - k + 1;
        const float *W = pt_pw(m, n, 2 * i);
        const uint16_t *W16 = t != PT_F32 ? m->w16 + m->params[n->p[2 * i]].offset : NULL;
        for (int j = 0; j < k; j++)
            if (t != PT_F32)
                pt_op_check(m, be->lowp_gemm(t, false, true, M, F, E, 1.0f, n->lp + (int64_t)j * E,
                                             E, W16 + (int64_t)j * E, k * E, j ? 1.0f : 0.0f, tmp,
                                             F));
            else
                be->gemm(false, true, M, F, E, 1.0f, x + (int64_t)j * E, E, W + (int64_t)j * E,
                         k * E, j ? 1.0f : 0.0f, tmp, F);
        const pt_maxtime_desc d = maxtime_desc(n, i);
        be->maxtime_forward(&d, rows, tmp, pt_pw(m, n, 2 * i + 1), y,
                            (int32_t *)n->aux + (int64_t)i * rows * F);
    }
    if (ctx->train && n->dropout > 0.0f)
        be->dropout(y, rows, nw * F, ctx->row_offset, n->dropout, ctx->seed,
                    pt_dropout_stream(ctx->step, n->id));
}

static void conv1d_max_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const int L = n->d.textcnn.L, E = n->d.textcnn.E, F = n->d.textcnn.F, nw = n->d.textcnn.nw,
              out_w = nw * F;
    pt_slot *in = pt_in(m, n, 0), *out = pt_out(m, n);
    float *dy = out->g, *dtmp = m->scratch;
    if (ctx->train && n->dropout > 0.0f)
        be->dropout(dy, rows, out_w, ctx->row_offset, n->dropout, ctx->seed,
                    pt_dropout_stream(ctx->step, n->id));
    be->act_backward(dy, dy, out->a, (int64_t)rows * out_w, PT_ACT_RELU);
    const int beta_x = pt_in_beta(m, n, 0);
    if (beta_x == 0) be->zero(in->g, sizeof(float) * (size_t)rows * L * E);
    for (int i = 0; i < nw; i++) {
        const int k = n->d.textcnn.k[i], M = rows * L - k + 1;
        const float *W = pt_pw(m, n, 2 * i);
        pt_param_beta(m, n, 2 * i + 1);
        const float beta_w = pt_param_beta(m, n, 2 * i);
        const pt_maxtime_desc d = maxtime_desc(n, i);
        be->maxtime_backward(&d, rows, dy, (const int32_t *)n->aux + (int64_t)i * rows * F, dtmp,
                             pt_pg(m, n, 2 * i + 1));
        if (m->precision != PT_F32) {
            const pt_dtype t = m->precision;
            const int64_t f = (int64_t)rows * L * F;
            uint16_t *d16 = (uint16_t *)(dtmp + round16(f));
            const uint16_t *W16 = m->w16 + m->params[n->p[2 * i]].offset;
            pt_op_check(m, be->lowp_from_f32(t, d16, dtmp, (int64_t)M * F));
            for (int j = 0; j < k; j++) {
                pt_op_check(m, be->lowp_gemm(t, true, false, F, E, M, 1.0f, d16, F,
                                             n->lp + (int64_t)j * E, E, beta_w,
                                             pt_pg(m, n, 2 * i) + (int64_t)j * E, k * E));
                if (beta_x >= 0)
                    pt_op_check(m, be->lowp_gemm(t, false, false, M, E, F, 1.0f, d16, F,
                                                 W16 + (int64_t)j * E, k * E, 1.0f,
                                                 in->g + (int64_t)j * E, E));
            }
            continue;
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
