/* Dense ops: the linear layer (applied to every position of a sample) with a fused bias,
 * activation and dropout, the bias + activation + dropout alone, and the residual add.
 *
 *   linear   d.linear = {P positions, Din, Dout, col_offset, global Dout or 0}; p = {W (Dout x
 *            Din, as nn.Linear), b or -1}
 *     forward   y = dropout(act(x W^T + b))           over the rows*P positions
 *     backward  dz = act'(.) * dropout(dy);  dW += dz^T x;  db = colsum dz;  dx (+)= dz W
 *   ReLU needs no saved state (its output is the mask); GELU and tanh keep their pre-activation.
 *   A column-parallel layer holds output columns [col_offset, col_offset + Dout) of a layer
 *   global Dout wide: its dropout mask is keyed by the global column, as in the serial run.
 *
 *   bias_act d.linear = {P, D, D}; p = {b}: y = dropout(act(x + b)), the tail of a row-parallel
 *            layer, which adds its bias only after the partial outputs are summed over tp (tp_g).
 *
 *   add      out = act(in0 + in1), act NONE or ReLU (a residual block's closing ReLU).
 *
 * Mixed precision (m->precision bf16|fp16, docs/MIXED_PRECISION.md): the three GEMMs take 16-bit
 * operands with fp32 accumulation and fp32 outputs: x is converted once in forward into the
 * node's lp buffer (what backward reads), W is the model's 16-bit copy w16, and dz is converted
 * into the scratch for dW and dx. Bias, activation, dropout and the bias gradient stay fp32.
 *
 * Everything on activations goes through the backend (no host loops here). */
#include "graph.h"

/* The mask of position (sample row_offset + r, position p, global column) over the rows*P
 * positions, each global_dout wide: the serial mask, whatever slice of columns this rank holds. */
static void linear_dropout(pt_model *m, const pt_node *n, float *y, int rows, const pt_fwd_ctx *ctx)
{
    const pt_linear_desc *d = &n->d.linear;
    const int P = d->P, dout = d->Dout;
    const int64_t width = d->global_dout ? d->global_dout : dout;
    m->be->dropout_cols(y, rows * P, dout, ctx->row_offset * P, d->col_offset, width, n->dropout,
                        ctx->seed, pt_dropout_stream(ctx->step, n->id));
}

/* the 16-bit copy of parameter k of n (w16 has w's layout) */
static const uint16_t *pw16(const pt_model *m, const pt_node *n, int k)
{
    return m->w16 + m->params[n->p[k]].offset;
}

/* low precision: the 16-bit dz of M x dout */
static int64_t linear_scratch(const pt_model *m, const pt_node *n, int rows)
{
    if (m->precision == PT_F32) return 0;
    return ((int64_t)rows * n->d.linear.P * n->d.linear.Dout + 1) / 2;
}

static void linear_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const int din = n->d.linear.Din, dout = n->d.linear.Dout, M = rows * n->d.linear.P;
    float *y = pt_out(m, n)->a;
    if (m->precision != PT_F32) {
        pt_op_check(m, be->lowp_from_f32(m->precision, n->lp, pt_in(m, n, 0)->a, (int64_t)M * din));
        pt_op_check(m, be->lowp_gemm(m->precision, false, true, M, dout, din, 1.0f, n->lp, din,
                                     pw16(m, n, 0), din, 0.0f, y, dout));
    } else
        be->gemm(false, true, M, dout, din, 1.0f, pt_in(m, n, 0)->a, din, pt_pw(m, n, 0), din,
                 0.0f, y, dout);
    if (n->p[1] >= 0)
        be->bias_act_forward(y, n->aux_row ? n->aux : NULL, pt_pw(m, n, 1), M, dout,
                             n->act);
    else if (n->act == PT_ACT_RELU)
        be->relu(y, y, (int64_t)M * dout);
    if (ctx->train && n->dropout > 0.0f) linear_dropout(m, n, y, rows, ctx);
}

static void linear_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const int din = n->d.linear.Din, dout = n->d.linear.Dout, M = rows * n->d.linear.P;
    pt_slot *out = pt_out(m, n), *in = pt_in(m, n, 0);
    float *dz = out->g; /* only this node reads it: overwritten in place */
    if (ctx->train && n->dropout > 0.0f) linear_dropout(m, n, dz, rows, ctx);
    if (n->act == PT_ACT_RELU) m->be->act_backward(dz, dz, out->a, (int64_t)M * dout, PT_ACT_RELU);
    else if (n->act != PT_ACT_NONE) be->act_backward(dz, dz, n->aux, (int64_t)M * dout, n->act);
    const pt_dtype t = m->precision;
    uint16_t *dz16 = (uint16_t *)m->scratch;
    if (t != PT_F32) {
        pt_op_check(m, be->lowp_from_f32(t, dz16, dz, (int64_t)M * dout));
        if (m->lowp_stats) pt_op_check(m, pt_model_count_grad16(m, dz, dz16, (int64_t)M * dout));
        pt_op_check(m, be->lowp_gemm(t, true, false, dout, din, M, 1.0f, dz16, dout, n->lp, din,
                                     pt_param_beta(m, n, 0), pt_pg(m, n, 0), din));
    } else
        be->gemm(true, false, dout, din, M, 1.0f, dz, dout, in->a, din, pt_param_beta(m, n, 0),
                 pt_pg(m, n, 0), din);
    if (n->p[1] >= 0) {
        pt_param_beta(m, n, 1); /* a bias is never shared */
        be->bias_backward(pt_pg(m, n, 1), dz, M, dout);
    }
    int beta = pt_in_beta(m, n, 0);
    if (beta >= 0 && t != PT_F32)
        pt_op_check(m, be->lowp_gemm(t, false, false, M, din, dout, 1.0f, dz16, dout,
                                     pw16(m, n, 0), din, (float)beta, in->g, din));
    else if (beta >= 0)
        be->gemm(false, false, M, din, dout, 1.0f, dz, dout, pt_pw(m, n, 0), din, (float)beta,
                 in->g, din);
}

const pt_op pt_op_linear = {"linear", linear_scratch, linear_forward, linear_backward};

static void bias_act_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int P = n->d.linear.P, D = n->d.linear.Dout, M = rows * P;
    float *y = pt_out(m, n)->a;
    m->be->copy(y, pt_in(m, n, 0)->a, sizeof(float) * (size_t)M * D);
    m->be->bias_act_forward(y, n->aux_row ? n->aux : NULL, pt_pw(m, n, 0), M, D, n->act);
    if (ctx->train && n->dropout > 0.0f)
        m->be->dropout(y, rows, P * D, ctx->row_offset, n->dropout, ctx->seed,
                       pt_dropout_stream(ctx->step, n->id));
}

static void bias_act_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const int P = n->d.linear.P, D = n->d.linear.Dout, M = rows * P;
    pt_slot *out = pt_out(m, n);
    float *dz = out->g; /* only this node reads it: overwritten in place */
    if (ctx->train && n->dropout > 0.0f)
        be->dropout(dz, rows, P * D, ctx->row_offset, n->dropout, ctx->seed,
                    pt_dropout_stream(ctx->step, n->id));
    if (n->act == PT_ACT_RELU) be->act_backward(dz, dz, out->a, (int64_t)M * D, PT_ACT_RELU);
    else if (n->act != PT_ACT_NONE) be->act_backward(dz, dz, n->aux, (int64_t)M * D, n->act);
    pt_param_beta(m, n, 0);
    be->bias_backward(pt_pg(m, n, 0), dz, M, D);
    const int beta = pt_in_beta(m, n, 0);
    if (beta >= 0) be->accumulate(pt_in(m, n, 0)->g, dz, (int64_t)M * D, (float)beta);
}

const pt_op pt_op_bias_act = {"bias_act", NULL, bias_act_forward, bias_act_backward};

static void add_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int64_t N = (int64_t)rows * pt_out(m, n)->size;
    m->be->add(pt_out(m, n)->a, pt_in(m, n, 0)->a, pt_in(m, n, 1)->a, N, n->act == PT_ACT_RELU);
}

static void add_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int64_t N = (int64_t)rows * pt_out(m, n)->size;
    pt_slot *out = pt_out(m, n);
    if (n->act == PT_ACT_RELU) m->be->act_backward(out->g, out->g, out->a, N, PT_ACT_RELU);
    for (int k = 0; k < 2; k++) {
        const int beta = pt_in_beta(m, n, k);
        if (beta >= 0) m->be->accumulate(pt_in(m, n, k)->g, out->g, N, (float)beta);
    }
}

const pt_op pt_op_add = {"add", NULL, add_forward, add_backward};
