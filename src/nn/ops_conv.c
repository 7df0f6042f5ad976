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
 * scattered gradient converted in scratch). conv2d has two routes per phase (forward, weight
 * gradient, input gradient), both products of 16-bit values accumulated in fp32:
 *   gemm     the backend's conv2d_lowp entries: the column matrix built in 16 bits from x, W the
 *            model's w16, dy converted once (after the ReLU's derivative and the fp32 bias
 *            gradient) for both backward products;
 *   rounded  x, W and dy rounded to 16 bits (lowp_round, into scratch) and the fp32 kernels run
 *            on them: the fp32 direct kernels write no column matrix, and on the Zen 4 measured
 *            they beat the 16-bit im2col even with vdpbf16ps (benchmarks/RESULTS.md, 16-bit conv2d).
 * PT_CONV_LOWP=auto (default: rounded where the backend's AUTO conv2d takes its direct kernel for
 * the phase, gemm where it would take im2col), gemm or rounded chooses. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "paratrain/log.h"
#include "paratrain/lowp.h" /* pt_precision_name */

/* floats of n 16-bit elements, in 64-byte multiples */
static int64_t halves(int64_t n) { return (n + 31) / 32 * 16; }
static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

/* PT_CONV_LOWP, read once: 0 auto, 1 gemm, 2 rounded (anything else: auto, with a warning) */
static int conv_lowp_env(void)
{
    static int mode = -1;
    if (mode < 0) {
        const char *e = getenv("PT_CONV_LOWP");
        mode = !e || !*e || !strcmp(e, "auto") ? 0 : !strcmp(e, "gemm") ? 1 : !strcmp(e, "rounded") ? 2 : 3;
        if (mode == 3) {
            pt_log_warn("PT_CONV_LOWP='%s' is not auto, gemm or rounded: auto", e);
            mode = 0;
        }
    }
    return mode;
}

/* the route of a phase (0 forward, 1 weight, 2 input): true for rounded */
static bool conv_rounded(const pt_model *m, const pt_node *n, int phase)
{
    const pt_backend *be = m->be;
    const bool have_gemm = be->conv2d_lowp_scratch && be->conv2d_lowp_forward &&
                           be->conv2d_lowp_backward_weight && be->conv2d_lowp_backward_input;
    const int mode = conv_lowp_env();
    if (!have_gemm || mode == 2) return true;
    if (mode == 1) return false;
    return be->conv2d_uses_direct && be->conv2d_uses_direct(&n->d.conv2d, phase) == 1;
}

/* Low precision, both routes' layouts from m->scratch: gemm [16-bit conv scratch][dy16];
 * rounded [fp32 conv scratch][x][dy][W] rounded copies (16-float aligned) */
typedef struct {
    float *x, *dy, *w;
    int64_t x_n, dy_n, w_n;
} conv_round_bufs;
static int64_t rounded_floats(const pt_model *m, const pt_node *n, int rows, conv_round_bufs *b)
{
    const pt_conv2d_desc *d = &n->d.conv2d;
    conv_round_bufs t;
    if (!b) b = &t;
    b->x_n = (int64_t)rows * d->H * d->H * d->Cin;
    b->dy_n = (int64_t)rows * d->Ho * d->Ho * d->Cout;
    b->w_n = (int64_t)d->Cout * d->k * d->k * d->Cin;
    const int64_t k = round16(m->be->conv2d_scratch(d, rows));
    b->x = m->scratch ? m->scratch + k : NULL;
    b->dy = b->x ? b->x + round16(b->x_n) : NULL;
    b->w = b->dy ? b->dy + round16(b->dy_n) : NULL;
    return k + round16(b->x_n) + round16(b->dy_n) + round16(b->w_n);
}
static int64_t gemm_floats(const pt_model *m, const pt_node *n, int rows)
{
    const pt_conv2d_desc *d = &n->d.conv2d;
    const pt_backend *be = m->be;
    if (!be->conv2d_lowp_scratch) return 0;
    return round16(be->conv2d_lowp_scratch(m->precision, d, rows)) + halves((int64_t)rows * d->Ho * d->Ho * d->Cout);
}

static int64_t conv_scratch(const pt_model *m, const pt_node *n, int rows)
{
    const pt_conv2d_desc *d = &n->d.conv2d;
    if (m->precision == PT_F32) return m->be->conv2d_scratch(d, rows);
    const int64_t a = gemm_floats(m, n, rows), b = rounded_floats(m, n, rows, NULL);
    return a > b ? a : b;
}
static uint16_t *conv_dy16(pt_model *m, const pt_node *n, int rows)
{
    return (uint16_t *)(m->scratch +
                        round16(m->be->conv2d_lowp_scratch(m->precision, &n->d.conv2d, rows)));
}

static void conv2d_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const pt_conv2d_desc *d = &n->d.conv2d;
    const float *x = pt_in(m, n, 0)->a, *w = pt_pw(m, n, 0), *bias = n->p[1] >= 0 ? pt_pw(m, n, 1) : NULL;
    float *y = pt_out(m, n)->a;
    if (m->precision != PT_F32 && !conv_rounded(m, n, 0)) {
        pt_op_check(m, be->conv2d_lowp_forward(m->precision, d, rows, x,
                                               m->w16 + m->params[n->p[0]].offset, bias, n->act, y,
                                               m->scratch));
        return;
    }
    if (m->precision != PT_F32) {
        conv_round_bufs b;
        rounded_floats(m, n, rows, &b);
        pt_op_check(m, be->lowp_round(m->precision, b.x, x, b.x_n));
        pt_op_check(m, be->lowp_round(m->precision, b.w, w, b.w_n));
        x = b.x, w = b.w;
    }
    pt_op_check(m, be->conv2d_forward(d, rows, x, w, bias, n->act, y, m->scratch));
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
    const pt_dtype t = m->precision;
    if (t == PT_F32) {
        pt_op_check(m, be->conv2d_backward_weight(d, rows, in->a, dy, beta_w, dw, m->scratch));
        if (beta_x < 0) return; /* the input is the data */
        pt_op_check(m, be->conv2d_backward_input(d, rows, dy, pt_pw(m, n, 0), (float)beta_x, in->g,
                                                 m->scratch));
        return;
    }
    /* the bias gradient above took dy in fp32; each phase takes its route's 16-bit dy */
    const bool rw = conv_rounded(m, n, 1), rx = beta_x >= 0 && conv_rounded(m, n, 2);
    const bool gx = beta_x >= 0 && !rx;
    if (!rw || gx) { /* the gemm route: dy16 after the 16-bit scratch (x is converted inside) */
        uint16_t *dy16 = conv_dy16(m, n, rows);
        pt_op_check(m, be->lowp_from_f32(t, dy16, dy, ny));
        if (m->lowp_stats) pt_op_check(m, pt_model_count_grad16(m, dy, dy16, ny));
        if (!rw) pt_op_check(m, be->conv2d_lowp_backward_weight(t, d, rows, in->a, dy16, beta_w, dw, m->scratch));
        if (gx)
            pt_op_check(m, be->conv2d_lowp_backward_input(t, d, rows, dy16, m->w16 + m->params[n->p[0]].offset,
                                                          (float)beta_x, in->g, m->scratch));
    }
    if (!rw && !rx) return;
    /* the rounded route (after the gemm route's products: the two layouts overlap in scratch) */
    conv_round_bufs b;
    rounded_floats(m, n, rows, &b);
    pt_op_check(m, be->lowp_round(t, b.dy, dy, b.dy_n));
    if (rw) {
        pt_op_check(m, be->lowp_round(t, b.x, in->a, b.x_n));
        pt_op_check(m, be->conv2d_backward_weight(d, rows, b.x, b.dy, beta_w, dw, m->scratch));
    }
    if (rx) {
        pt_op_check(m, be->lowp_round(t, b.w, pt_pw(m, n, 0), b.w_n));
        pt_op_check(m, be->conv2d_backward_input(d, rows, b.dy, b.w, (float)beta_x, in->g, m->scratch));
    }
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
            if (m->lowp_stats) pt_op_check(m, pt_model_count_grad16(m, dtmp, d16, (int64_t)M * F));
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
