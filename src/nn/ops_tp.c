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
 * Sequence parallelism (Korthikanti et al. 2022) replaces them along the sequence: outside the
 * tensor-parallel layers a sample's activations are sharded by position (rank r holds positions
 * [r T/tp, (r+1) T/tp) of each sample, (rows, T/tp, D)), so layer norms, residual adds and the
 * row-parallel biases run on T/tp positions. d.seq = {T, D} for both.
 *   tp_seq_gather   shard -> whole sequence. Forward: all-gather. Backward: reduce-scatter.
 *                   (f's place: before a column-parallel layer.)
 *   tp_seq_scatter  whole (partial sums) -> shard. Forward: reduce-scatter. Backward: all-gather.
 *                   (g's place: after a row-parallel layer and the embedding.)
 * The collectives move rank-major blocks (tp, rows, T/tp, D); the nodes permute to and from the
 * sample-major slots through the scratch buffer: rows * tp contiguous runs, each a backend
 * copy or accumulate.
 *
 * A failed allreduce is recorded in m->status (as synchronized batch norm does) and the node
 * goes on with its local data, so every output is defined; the step is invalid. */
#include <stdio.h>

#include "graph.h"
#include "paratrain/comm.h"

/* Records the first failure of a tp collective in m->status (the message names it). */
static void record_failure(pt_model *m, pt_status st, const char *what)
{
    if (st == PT_OK || m->status != PT_OK) return;
    char why[256]; /* the collective's own message, before this one replaces it */
    snprintf(why, sizeof why, "%s", pt_error_message());
    m->status = PT_ERR(PT_ERR_MPI, "a rank may have died or the network failed; see the other "
                                   "ranks' messages",
                       "tensor parallelism: the %s over the tp group failed (%s)", what, why);
}

/* The tp collectives below run on slot memory (activations, gradients, the scratch blocks): host
 * memory on the CPU backend. Open MPI here is not CUDA-aware, so the CUDA backend refuses tp > 1
 * until these stage through the host (only the loss's statistics do so far). */
static void tp_allreduce(pt_model *m, void *buf, int64_t count, pt_dtype dtype, pt_reduce_op op,
                         const char *what)
{
    record_failure(m, pt_allreduce(m->opt.tp, PT_IN_PLACE, buf, count, dtype, op), what);
}

static void f_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const size_t bytes = sizeof(float) * (size_t)rows * (size_t)pt_out(m, n)->size;
    m->be->copy(pt_out(m, n)->a, pt_in(m, n, 0)->a, bytes);
}

static void f_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int beta = pt_in_beta(m, n, 0);
    if (beta < 0) return; /* the data: no gradient wanted, so nothing to reduce */
    const int64_t N = (int64_t)rows * pt_out(m, n)->size;
    float *dy = pt_out(m, n)->g; /* read by this node only: reduced in place */
    tp_allreduce(m, dy, N, PT_F32, PT_SUM, "allreduce of an input gradient (f)"); /* slot memory */
    pt_op_check(m, m->be->accumulate(pt_in(m, n, 0)->g, dy, N, (float)beta));
}

const pt_op pt_op_tp_f = {"tp_f", NULL, f_forward, f_backward};

static void g_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int64_t N = (int64_t)rows * pt_out(m, n)->size;
    float *y = pt_out(m, n)->a;
    m->be->copy(y, pt_in(m, n, 0)->a, sizeof(float) * (size_t)N);
    tp_allreduce(m, y, N, PT_F32, PT_SUM, "allreduce of a partial output (g)"); /* slot memory */
}

static void g_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int beta = pt_in_beta(m, n, 0);
    if (beta >= 0)
        pt_op_check(m, m->be->accumulate(pt_in(m, n, 0)->g, pt_out(m, n)->g,
                                   (int64_t)rows * pt_out(m, n)->size, (float)beta));
}

const pt_op pt_op_tp_g = {"tp_g", NULL, g_forward, g_backward};

/* ------------------------------------------------------------------ sequence parallelism */

/* (rows, T, D) <-> (tp, rows, T/tp, D): to_blocks 1 copies whole into blocks, 0 back (beta 1:
 * adds into whole). One sample's positions of one rank are contiguous on both sides, so the
 * permutation is rows * tp device copies (or adds) of T/tp * D floats. */
static void seq_permute(pt_model *m, float *whole, float *blocks, int rows, int64_t Tl, int64_t D,
                        int to_blocks, int beta)
{
    const pt_backend *be = m->be;
    const int tp = m->tp_size;
    const int64_t run = Tl * D;
    for (int r = 0; r < tp; r++)
        for (int b = 0; b < rows; b++) {
            float *w = whole + ((int64_t)b * tp + r) * run, *k = blocks + ((int64_t)r * rows + b) * run;
            if (to_blocks) be->copy(k, w, sizeof(float) * (size_t)run);
            else pt_op_check(m, be->accumulate(w, k, run, (float)beta));
        }
}

static int64_t seq_scratch(const pt_model *m, const pt_node *n, int rows)
{
    const int64_t whole = (int64_t)rows * n->d.seq.T * n->d.seq.D;
    return whole + whole / m->tp_size; /* the blocks, and a shard */
}

/* shard (rows x Tl x D) -> all-gathered whole sequence (rows x T x D), added into whole when
 * beta is 1 */
static void seq_gather(pt_model *m, const pt_node *n, const float *shard, float *whole, int rows,
                       int beta, const char *what)
{
    const int tp = m->tp_size;
    const int64_t D = n->d.seq.D, Tl = n->d.seq.T / tp, cnt = (int64_t)rows * Tl * D;
    int64_t counts[tp];
    for (int r = 0; r < tp; r++) counts[r] = cnt;
    float *blocks = m->scratch;
    record_failure(m, pt_allgather(m->opt.tp, shard, blocks, counts, PT_F32), what); /* slots */
    seq_permute(m, whole, blocks, rows, Tl, D, 0, beta);
}

/* whole sequence of partial sums -> this rank's reduced shard, added into shard when beta is 1 */
static void seq_scatter(pt_model *m, const pt_node *n, float *whole, float *shard, int rows,
                        int beta, const char *what)
{
    const int tp = m->tp_size;
    const int64_t D = n->d.seq.D, Tl = n->d.seq.T / tp, cnt = (int64_t)rows * Tl * D;
    int64_t counts[tp];
    for (int r = 0; r < tp; r++) counts[r] = cnt;
    float *blocks = m->scratch, *mine = blocks + tp * cnt;
    seq_permute(m, whole, blocks, rows, Tl, D, 1, 0);
    record_failure(m, pt_reduce_scatter(m->opt.tp, blocks, beta ? mine : shard, counts, PT_F32,
                                        PT_SUM), what); /* slot memory */
    if (beta) pt_op_check(m, m->be->accumulate(shard, mine, cnt, 1.0f));
}

static void gather_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    seq_gather(m, n, pt_in(m, n, 0)->a, pt_out(m, n)->a, rows, 0, "all-gather of a sequence shard");
}

static void gather_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int beta = pt_in_beta(m, n, 0);
    if (beta >= 0)
        seq_scatter(m, n, pt_out(m, n)->g, pt_in(m, n, 0)->g, rows, beta,
                    "reduce-scatter of a gradient");
}

const pt_op pt_op_tp_seq_gather = {"tp_seq_gather", seq_scratch, gather_forward, gather_backward};

static void scatter_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    seq_scatter(m, n, pt_in(m, n, 0)->a, pt_out(m, n)->a, rows, 0,
                "reduce-scatter of partial outputs");
}

static void scatter_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int beta = pt_in_beta(m, n, 0);
    if (beta >= 0)
        seq_gather(m, n, pt_out(m, n)->g, pt_in(m, n, 0)->g, rows, beta,
                   "all-gather of a gradient shard");
}

const pt_op pt_op_tp_seq_scatter = {"tp_seq_scatter", seq_scratch, scatter_forward, scatter_backward};

/* ------------------------------------------------------------------ vocabulary-parallel loss */

/* Softmax cross-entropy over a vocabulary split in contiguous slices over tp: this rank holds
 * columns [vocab_start, vocab_start + Vl) of every row. Per row, the max, the sum of
 * exponentials and the target's logit are reduced over tp (three small allreduces for the whole
 * batch), never the logits themselves; the backend computes the three steps (vp_xent_*) and the
 * reductions run on the host copy of the statistics (m->tp_xent_host). The argmax is the lowest
 * global index holding the global max, as the serial argmax (first maximum) picks. Same results
 * as the backend's softmax_xent on the gathered logits, up to the order of the sum of
 * exponentials. logits, labels and dlogits are backend memory. */
double pt_tp_softmax_xent(pt_model *m, const float *logits, const int32_t *labels, int rows,
                          float grad_scale, float *dlogits, int64_t *correct)
{
    const pt_backend *be = m->be;
    const int Vl = m->local_classes;
    const int64_t v0 = m->vocab_start;
    double *stat = m->tp_xent, *host = m->tp_xent_host; /* 4 doubles per row (backend.h) */
    const size_t row_bytes = sizeof(double) * (size_t)rows;

    pt_op_check(m, be->vp_xent_max(logits, rows, Vl, stat));
    be->to_host(host, stat, row_bytes);
    tp_allreduce(m, host, rows, PT_F64, PT_MAX, "allreduce of the logits' maxima");
    be->to_device(stat, host, row_bytes);

    pt_op_check(m, be->vp_xent_sums(logits, labels, rows, Vl, v0, stat));
    be->to_host(host + rows, stat + rows, 3 * row_bytes);
    tp_allreduce(m, host + rows, 2 * (int64_t)rows, PT_F64, PT_SUM,
                 "allreduce of the sums of exponentials");
    tp_allreduce(m, host + 3 * (int64_t)rows, rows, PT_F64, PT_MIN, "allreduce of the argmax");
    be->to_device(stat + rows, host + rows, 3 * row_bytes);

    return be->vp_xent_finish(logits, labels, rows, Vl, v0, stat, grad_scale, dlogits, correct);
}
