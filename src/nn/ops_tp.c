/* Tensor-parallel communication nodes (Megatron-LM, Shoeybi et al. 2019) and the
 * vocabulary-parallel cross-entropy. These are the only places the model talks to its tp group
 * (m->opt.tp), always through the project's collectives; the compute ops never communicate.
 *
 *   tp_f   in -> out, same size. Forward: identity. Backward: dx (+)= allreduce(dy).
 *          Put before a column-parallel layer: each rank's input gradient is only the part
 *          that flows through its own columns.
 *   tp_g   in -> out, same size. Forward: out = allreduce(in). Backward: identity.
 *          Put after a row-parallel layer (or the vocabulary-parallel embedding): each rank
 *          holds a partial sum of the output.
 *
 * A failed allreduce is recorded in m->status (as synchronized batch norm does) and the node
 * goes on with its local data, so every output is defined; the step is invalid. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph.h"
#include "paratrain/comm.h"

static void tp_allreduce(pt_model *m, void *buf, int64_t count, pt_dtype dtype, pt_reduce_op op,
                         const char *what)
{
    const pt_status st = pt_allreduce(m->opt.tp, PT_IN_PLACE, buf, count, dtype, op);
    if (st == PT_OK || m->status != PT_OK) return;
    char why[256]; /* the collective's own message, before this one replaces it */
    snprintf(why, sizeof why, "%s", pt_error_message());
    m->status = PT_ERR(PT_ERR_MPI, "a rank may have died or the network failed; see the "
                                       "other ranks' messages",
                           "tensor parallelism: the allreduce of %s over the tp group failed (%s)",
                           what, why);
}

/* dst = src (beta 0) or dst += src (beta 1) */
static void copy_or_add(float *dst, const float *src, int64_t n, int beta)
{
    if (!beta) {
        memcpy(dst, src, sizeof(float) * (size_t)n);
        return;
    }
#pragma omp parallel for simd schedule(static) if (n >= 16384)
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

static void f_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    memcpy(pt_out(m, n)->a, pt_in(m, n, 0)->a, sizeof(float) * (size_t)rows * pt_out(m, n)->size);
}

static void f_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int beta = pt_in_beta(m, n, 0);
    if (beta < 0) return; /* the data: no gradient wanted, so nothing to reduce */
    const int64_t N = (int64_t)rows * pt_out(m, n)->size;
    float *dy = pt_out(m, n)->g; /* read by this node only: reduced in place */
    tp_allreduce(m, dy, N, PT_F32, PT_SUM, "an input gradient (f)");
    copy_or_add(pt_in(m, n, 0)->g, dy, N, beta);
}

const pt_op pt_op_tp_f = {"tp_f", NULL, f_forward, f_backward};

static void g_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int64_t N = (int64_t)rows * pt_out(m, n)->size;
    float *y = pt_out(m, n)->a;
    memcpy(y, pt_in(m, n, 0)->a, sizeof(float) * (size_t)N);
    tp_allreduce(m, y, N, PT_F32, PT_SUM, "a partial output (g)");
}

static void g_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int beta = pt_in_beta(m, n, 0);
    if (beta >= 0)
        copy_or_add(pt_in(m, n, 0)->g, pt_out(m, n)->g, (int64_t)rows * pt_out(m, n)->size, beta);
}

const pt_op pt_op_tp_g = {"tp_g", NULL, g_forward, g_backward};

/* Softmax cross-entropy over a vocabulary split in contiguous slices over tp: this rank holds
 * columns [vocab_start, vocab_start + Vl) of every row. Per row, the max, the sum of
 * exponentials and the target's logit are reduced over tp (three small allreduces for the whole
 * batch), never the logits themselves. The argmax is the lowest global index holding the global
 * max, as the serial argmax (first maximum) picks. Same results as the backend's softmax_xent
 * on the gathered logits, up to the order of the sum of exponentials. */
double pt_tp_softmax_xent(pt_model *m, const float *logits, const int32_t *labels, int rows,
                          float grad_scale, float *dlogits, int64_t *correct)
{
    const int Vl = m->local_classes;
    const int64_t v0 = m->vocab_start;
    double *zmax = m->tp_xent;         /* rows: the global max */
    double *sums = zmax + rows;        /* rows x {sum of exp(z - max), z[target] - max} */
    double *argmax = sums + 2 * rows;  /* rows: lowest global index of the max */

#pragma omp parallel for schedule(static) if ((int64_t)rows * Vl >= 65536)
    for (int r = 0; r < rows; r++) {
        const float *z = logits + (int64_t)r * Vl;
        float mx = z[0];
        for (int c = 1; c < Vl; c++) mx = z[c] > mx ? z[c] : mx;
        zmax[r] = mx;
    }
    tp_allreduce(m, zmax, rows, PT_F64, PT_MAX, "the logits' maxima");

#pragma omp parallel for schedule(static) if ((int64_t)rows * Vl >= 65536)
    for (int r = 0; r < rows; r++) {
        const float *z = logits + (int64_t)r * Vl;
        const float mx = (float)zmax[r];
        double sum = 0.0;
        int first = -1;
        for (int c = 0; c < Vl; c++) {
            sum += exp((double)(z[c] - mx));
            if (first < 0 && z[c] == mx) first = c;
        }
        const int64_t y = labels[r] - v0;
        sums[2 * r] = sum;
        sums[2 * r + 1] = y >= 0 && y < Vl ? (double)(z[y] - mx) : 0.0; /* from its owner */
        argmax[r] = first >= 0 ? (double)(v0 + first) : INFINITY;
    }
    tp_allreduce(m, sums, 2 * (int64_t)rows, PT_F64, PT_SUM, "the sums of exponentials");
    tp_allreduce(m, argmax, rows, PT_F64, PT_MIN, "the argmax");

    double loss = 0.0;
    int64_t ncorrect = 0;
    for (int r = 0; r < rows; r++) {
        loss += log(sums[2 * r]) - sums[2 * r + 1];
        ncorrect += argmax[r] == (double)labels[r];
    }
    if (dlogits) {
#pragma omp parallel for schedule(static) if ((int64_t)rows * Vl >= 65536)
        for (int r = 0; r < rows; r++) {
            const float *z = logits + (int64_t)r * Vl;
            const float mx = (float)zmax[r];
            const double inv = 1.0 / sums[2 * r];
            float *d = dlogits + (int64_t)r * Vl;
            for (int c = 0; c < Vl; c++) d[c] = (float)(exp((double)(z[c] - mx)) * inv) * grad_scale;
            const int64_t y = labels[r] - v0;
            if (y >= 0 && y < Vl) d[y] -= grad_scale;
        }
    }
    if (correct) *correct = ncorrect;
    return loss;
}
