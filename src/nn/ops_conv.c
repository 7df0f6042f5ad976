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
 * scattered gradient converted in scratch). conv2d is emulated: its input, weight and output
 * gradient are rounded to 16 bits (lowp_round, into the scratch after the kernel's own) and
 * the fp32 kernels (direct or im2col) run on the rounded values, so every product is of two
 * 16-bit numbers and accumulates in fp32, as a 16-bit GEMM would; only the speed is fp32's. */
#include <stdint.h>

#include "graph.h"

/* floats of the rounded copies (low precision): x, then dy, then W, each 16-float aligned */
static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }
static int64_t conv_lowp_floats(const pt_node *n, int rows, int64_t *x_n, int64_t *dy_n,
                                int64_t *w_n)
{
    const pt_conv2d_desc *d = &n->d.conv2d;
    *x_n = (int64_t)rows * d->H * d->H * d->Cin;
    *dy_n = (int64_t)rows * d->Ho * d->Ho * d->Cout;
    *w_n = (int64_t)d->Cout * d->k * d->k * d->Cin;
    return round16(*x_n) + round16(*dy_n) + round16(*w_n);
}

static int64_t conv_scratch(const pt_model *m, const pt_node *n, int rows)
{
    int64_t x_n, dy_n, w_n;
    return round16(m->be->conv2d_scratch(&n->d.conv2d, rows)) +
           (m->precision == PT_F32 ? 0 : conv_lowp_floats(n, rows, &x_n, &dy_n, &w_n));
}

/* Low precision: where the rounded x, dy and W go (after the kernel's scratch). */
typedef struct {
    float *x, *dy, *w;
    int64_t x_n, dy_n, w_n;
} conv_lowp;
static conv_lowp conv_lowp_bufs(pt_model *m, const pt_node *n, int rows)
{
    conv_lowp b;
    conv_lowp_floats(n, rows, &b.x_n, &b.dy_n, &b.w_n);
    b.x = m->scratch + round16(m->be->conv2d_scratch(&n->d.conv2d, rows));
    b.dy = b.x + round16(b.x_n);
    b.w = b.dy + round16(b.dy_n);
    return b;
}

static void conv2d_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const float *x = pt_in(m, n, 0)->a, *w = pt_pw(m, n, 0);
    if (m->precision != PT_F32) {
        const conv_lowp b = conv_lowp_bufs(m, n, rows);
        pt_op_check(m, be->lowp_round(m->precision, b.x, x, b.x_n));
        pt_op_check(m, be->lowp_round(m->precision, b.w, w, b.w_n));
        x = b.x, w = b.w;
    }
    be->conv2d_forward(&n->d.conv2d, rows, x, w, n->p[1] >= 0 ? pt_pw(m, n, 1) : NULL, n->act,
                       pt_out(m, n)->a, m->scratch);
}

static void conv2d_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const pt_conv2d_desc *d = &n->d.conv2d;
    const int Ho = d->Ho, Cout = d->Cout;
    pt_slot *in = pt_in(m, n, 0), *out = pt_out(m, n);
    float *dy = out->g;
    if (n->act == PT_ACT_RELU)
        be->act_backward(dy, dy, out->a, (int64_t)rows * Ho * Ho * Cout, PT_ACT_RELU);
    if (n->p[1] >= 0) {
        pt_param_beta(m, n, 1);
        be->bias_backward(pt_pg(m, n, 1), dy, rows * Ho * Ho, Cout);
    }
    const float beta_w = pt_param_beta(m, n, 0);
    const int beta_x = pt_in_beta(m, n, 0);
    const float *x = in->a, *w = pt_pw(m, n, 0), *dyc = dy;
    if (m->precision != PT_F32) { /* the bias gradient above took dy in fp32 */
        const conv_lowp b = conv_lowp_bufs(m, n, rows);
        pt_op_check(m, be->lowp_round(m->precision, b.x, x, b.x_n));
        pt_op_check(m, be->lowp_round(m->precision, b.dy, dy, b.dy_n));
        if (beta_x >= 0) pt_op_check(m, be->lowp_round(m->precision, b.w, w, b.w_n));
        x = b.x, w = b.w, dyc = b.dy;
    }
    be->conv2d_backward_weight(d, rows, x, dyc, beta_w, pt_pg(m, n, 0), m->scratch);
    if (beta_x < 0) return; /* the input is the data */
    be->conv2d_backward_input(d, rows, dyc, w, (float)beta_x, in->g, m->scratch);
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
