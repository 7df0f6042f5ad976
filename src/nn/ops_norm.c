/* Normalization ops; the arithmetic is the backend's (kernels/cpu/norm_kernels.c).
 *
 *   batchnorm   in/out (HW x C), d.bn = {C, momentum, eps, act}; p = {gamma, beta}; b =
 *               {running_mean, running_var}; act NONE or ReLU (fused)
 *     Training normalizes with the batch's statistics over rows*HW values per channel, biased
 *     variance; the running statistics follow PyTorch: r = (1 - momentum) r + momentum s, with the
 *     unbiased variance. With opt.sync_bn the per-channel sums (forward: sum, sum of squares,
 *     count; backward: sum dy, sum dy*xhat) are summed over the data-parallel group through
 *     m->allreduce_sum between the backend's statistics and apply steps, so every rank
 *     normalizes with the global batch's statistics and the result equals one rank training the
 *     whole batch. Without it each rank uses its own share (docs/MODELS.md). Evaluation uses the
 *     running statistics. The sums are doubles in the model's scratch (backend memory, sized at
 *     model build by bn_scratch) and are staged through m->bn_host for the allreduce: no
 *     allocation per call, so nothing can fail half-way but the allreduce. When that fails the
 *     op records the error in m->status (pt_model_status) and normalizes with this rank's own
 *     statistics, so its output is always written; the caller must not use the step.
 *
 *   layernorm   in/out (P x D), d.ln = {D, eps}; p = {gamma, beta}; per position. */
#include <stdint.h>

#include "graph.h"

/* The op's scratch: the 2C + 1 sums (doubles, aligned: one float of slack), then the backend's. */
static int64_t bn_scratch(const pt_model *m, const pt_node *n, int rows)
{
    return 2 * (2 * (int64_t)n->d.bn.C + 1) + 1 + m->be->batchnorm_scratch(&n->d.bn);
}

static double *bn_sums(pt_model *m)
{
    return (double *)(((uintptr_t)m->scratch + 7) & ~(uintptr_t)7);
}

static float *bn_kernel_scratch(pt_model *m, int C)
{
    return (float *)(bn_sums(m) + 2 * C + 1);
}

/* Sums the 2C + 1 totals over the data-parallel group (sync batch norm), through the host. On
 * failure records the error and leaves the backend's sums as they were, this rank's own, so the
 * op still produces a defined output. */
static void sync_sums(pt_model *m, const char *phase, int C, double *sums)
{
    if (!m->opt.sync_bn || !m->allreduce_sum) return;
    const size_t bytes = sizeof(double) * (size_t)(2 * C + 1);
    m->be->to_host(m->bn_host, sums, bytes);
    const int rc = m->allreduce_sum(m->allreduce_arg, m->bn_host, 2 * C + 1);
    if (rc == 0) {
        m->be->to_device(sums, m->bn_host, bytes);
        return;
    }
    if (m->status == PT_OK)
        m->status = PT_ERR(PT_ERR_MPI, "a rank may have died or the network failed; see the "
                                       "other ranks' messages",
                           "synchronized batch norm: the allreduce of the %s channel sums failed "
                           "(error code %d)", phase, rc);
}

static void bn_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const pt_batchnorm_desc *d = &n->d.bn;
    const int C = d->C;
    pt_slot *out = pt_out(m, n);
    const int64_t N = (int64_t)rows * (out->size / C);
    const float *x = pt_in(m, n, 0)->a;
    float *rm = m->buf + m->buffers[n->b[0]].offset, *rv = m->buf + m->buffers[n->b[1]].offset;
    double *sums = NULL; /* eval: the running statistics */
    if (ctx->train) {
        sums = bn_sums(m);
        pt_op_check(m, be->batchnorm_stats(d, N, x, sums, bn_kernel_scratch(m, C)));
        sync_sums(m, "forward", C, sums);
    }
    pt_op_check(m, be->batchnorm_forward_apply(d, N, x, sums, pt_pw(m, n, 0), pt_pw(m, n, 1), rm, rv,
                                        n->aux, n->aux + C, out->a));
}

static void bn_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const pt_batchnorm_desc *d = &n->d.bn;
    const int C = d->C;
    pt_slot *in = pt_in(m, n, 0), *out = pt_out(m, n);
    const int64_t N = (int64_t)rows * (out->size / C);
    const float *mean = n->aux, *rstd = n->aux + C;
    float *dy = out->g;
    if (d->act == PT_ACT_RELU) pt_op_check(m, be->act_backward(dy, dy, out->a, N * C, PT_ACT_RELU));
    double *sums = bn_sums(m);
    pt_param_beta(m, n, 0), pt_param_beta(m, n, 1);
    /* the parameter gradients are this rank's sums: the gradient allreduce adds the ranks' */
    pt_op_check(m, be->batchnorm_backward_stats(d, N, dy, in->a, mean, rstd, sums, pt_pg(m, n, 0),
                                         pt_pg(m, n, 1), bn_kernel_scratch(m, C)));
    sync_sums(m, "backward", C, sums);
    const int beta = pt_in_beta(m, n, 0);
    if (beta >= 0)
        pt_op_check(m, be->batchnorm_backward_apply(d, N, dy, in->a, pt_pw(m, n, 0), mean, rstd, sums,
                                             (float)beta, in->g));
}

const pt_op pt_op_batchnorm = {"batchnorm", bn_scratch, bn_forward, bn_backward};

/* ------------------------------------------------------------------ layer norm */

static void ln_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_layernorm_desc *d = &n->d.ln;
    pt_slot *out = pt_out(m, n);
    const int64_t N = (int64_t)rows * (out->size / d->D);
    pt_op_check(m, m->be->layernorm_forward(d, N, pt_in(m, n, 0)->a, pt_pw(m, n, 0), pt_pw(m, n, 1),
                                     out->a, n->aux));
}

static void ln_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const pt_layernorm_desc *d = &n->d.ln;
    pt_slot *in = pt_in(m, n, 0), *out = pt_out(m, n);
    const int64_t N = (int64_t)rows * (out->size / d->D);
    pt_param_beta(m, n, 0), pt_param_beta(m, n, 1);
    const int beta = pt_in_beta(m, n, 0);
    pt_op_check(m, m->be->layernorm_backward(d, N, in->a, out->g, pt_pw(m, n, 0), n->aux,
                                      pt_pg(m, n, 0), pt_pg(m, n, 1), beta > 0 ? 1.0f : 0.0f,
                                      beta >= 0 ? in->g : NULL));
}

const pt_op pt_op_layernorm = {"layernorm", NULL, ln_forward, ln_backward};
