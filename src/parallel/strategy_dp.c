/* The data-parallel step strategy, and with tp > 1 tensor x data parallelism: every rank of a
 * dp group holds the model (with tp > 1 the same tensor-parallel part of it: the ranks of a dp
 * group share their tp coordinate); each computes the gradient of its rows, scaled by 1/global
 * batch, and the sum over dp is the gradient of the global batch. Gradient synchronization
 * (buckets overlapped with backward, ZeRO-1 within the dp group, the exact reduction of
 * --reproducible) is grad_sync.c; compression (--compress) replaces its allreduce. Tensor
 * parallelism adds two things here (the model's own tp communication is in its graph):
 * partial gradients (grad_over_tp) summed over tp, and a gradient norm that counts every
 * parameter once (docs/MODELS.md, "Which parameters are sharded"). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/agree.h"
#include "paratrain/ckpt.h"
#include "paratrain/log.h"
#include "paratrain/strategy.h"
#include "paratrain/watchdog.h"
#include "compress.h"
#include "grad_sync.h"

typedef struct {
    pt_grad_sync gs;
    pt_compressor z;
    float *tp_partial; /* host staging of the grad_over_tp gradients for their sum over tp */
    int64_t tp_partial_n;
} dp_state;

static dp_state *state_of(const pt_train_state *s) { return (dp_state *)s->strategy_state; }

/* --compress: the compressor replaces the gradient allreduce (compress.h). */
static pt_status make_compressor(pt_train_state *s, dp_state *d)
{
    const pt_train_config *c = s->cfg;
    pt_compress_config zc;
    PT_TRY(pt_compress_parse(c->compress, &zc));
    if (zc.kind == PT_COMPRESS_NONE) {
        if (c->dgc) return PT_ERR(PT_ERR_ARG, "add --compress topk:D", "--dgc needs top-k compression");
        return PT_OK;
    }
    if (c->zero == 1 || c->bucket_mb > 0 || c->reproducible)
        return PT_ERR(PT_ERR_ARG, "drop --zero, --bucket-mb and --reproducible, or --compress",
                      "--compress %s replaces the whole-gradient allreduce, so it does not combine "
                      "with ZeRO-1, buckets or the exact reduction", c->compress);
    PT_TRY(pt_sparse_algo_parse(c->sparse_allreduce, &zc.algo));
    if (!(c->sparcml_switch > 0 && c->sparcml_switch <= 0.5))
        return PT_ERR(PT_ERR_ARG, "give a density in (0, 0.5]",
                      "--sparcml-switch %g: past 0.5 a sparse vector is larger than the dense one",
                      c->sparcml_switch);
    if (!(c->density_warmup_epochs >= 0))
        return PT_ERR(PT_ERR_ARG, NULL, "--density-warmup-epochs must be >= 0");
    zc.dense_switch = c->sparcml_switch;
    zc.error_feedback = c->error_feedback;
    zc.dgc = c->dgc;
    zc.momentum = s->dgc_momentum;
    zc.clip_norm = c->clip_norm;
    zc.warmup_epochs = c->density_warmup_epochs;
    PT_TRY(pt_compressor_init(&d->z, &zc, &s->model));
    d->gs.z = &d->z;
    s->wire = zc.kind == PT_COMPRESS_TOPK ? PT_WIRE_TOPK : PT_WIRE_COMPRESSED;
    if (!c->quiet) {
        char what[128] = "";
        if (zc.kind == PT_COMPRESS_TOPK)
            snprintf(what, sizeof what, " (density %g, %s%s%s)", zc.density,
                     pt_sparse_algo_name(zc.algo), zc.error_feedback ? ", error feedback" : "",
                     zc.dgc ? ", DGC" : "");
        else if (zc.kind == PT_COMPRESS_SIGN)
            snprintf(what, sizeof what, "%s", zc.error_feedback ? " (error feedback)" : "");
        pt_log_info("gradient compression: %s%s", pt_compress_kind_name(zc.kind), what);
    }
    return PT_OK;
}

static pt_status dp_setup(pt_train_state *s)
{
    const pt_train_config *c = s->cfg;
    dp_state *d = calloc(1, sizeof *d);
    if (!d) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the data-parallel state");
    s->strategy_state = d;
    pt_model *m = &s->model;
    pt_comm *dp = s->dp;
    pt_status st = PT_OK;
    const bool zero = pt_train_zero_stage(c, dp->size) == 1;
    /* With the node-aware allreduce, gradients live in node shared memory: the allreduce then
     * reads and writes the peers' gradient buffers directly (zero copy). Under ZeRO-1 on one
     * node the parameters go there too: the shards are then reduced and gathered by reading the
     * peers' buffers directly (grad_sync.c). */
    if (dp->size > 1 && !strcmp(m->be->name, "cpu") && dp->uniform &&
        (dp->algo == PT_ALLREDUCE_AUTO || dp->algo == PT_ALLREDUCE_HIERARCHICAL)) {
        void *g = NULL;
        const bool both = zero && dp->nnodes == 1 && !c->reproducible;
        /* --reproducible on one node: the exact accumulator goes in the window too, ahead of
         * the gradient, and the exact sum over ranks reads the peers' accumulators directly */
        const size_t acc = c->reproducible && dp->nnodes == 1 ? pt_grad_sync_acc_bytes(m) : 0;
        st = pt_comm_buffer_alloc(dp, acc + sizeof(float) * (size_t)m->numel * (both ? 2 : 1), &g);
        PT_TRY(pt_agree(s->world, st, NULL));
        g = (char *)g + acc;
        pt_model_use_grad_buffer(m, g);
        if (both) pt_model_use_param_buffer(m, (float *)g + m->numel);
    }
    st = pt_grad_sync_init(&d->gs, dp, m, zero, c->reproducible, c->bucket_mb);
    PT_TRY(pt_agree(s->world, st, NULL));
    if (d->gs.staged && dp->size > 1 && !c->quiet)
        pt_log_info("backend %s: Open MPI is not CUDA-aware here, so the gradients go through "
                    "pinned host memory (each bucket copied down, reduced, copied back)",
                    m->be->name);
    /* ZeRO-1: the optimizer state of this rank's shard only */
    st = pt_train_make_optimizer(s, d->gs.shard_off, d->gs.shard_count);
    PT_TRY(pt_agree(s->world, st, NULL));
    st = make_compressor(s, d);
    PT_TRY(pt_agree(s->world, st, NULL));
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].grad_over_tp) d->tp_partial_n += m->params[i].numel;
    /* host memory for MPI (pinned on a device backend) */
    const size_t tp_bytes = sizeof(float) * (size_t)d->tp_partial_n;
    if (d->tp_partial_n &&
        !(d->tp_partial = pt_host_alloc(m->be, tp_bytes)))
        st = PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the partial gradients of the tp group");
    return pt_agree(s->world, st, NULL);
}

static pt_status dp_forward_backward(pt_train_state *s, bool have_rows, pt_step_report *r)
{
    dp_state *d = state_of(s);
    const pt_train_config *c = s->cfg;
    const pt_train_batch *b = &s->batch;
    const int64_t S = s->train.sample_size, B = c->batch;
    pt_model *m = &s->model;
    pt_fwd_ctx ctx = {.train = 1, .seed = c->seed, .step = s->step, .row_offset = b->row_offset};
    pt_grad_sync_begin(&d->gs);
    r->loss_sum = 0.0;
    if (have_rows && b->rows > 0 && c->reproducible) {
        /* fixed chunks of the global batch, each its own forward/backward: a chunk's gradient
         * is then the same bits whichever rank computes it */
        const int64_t ch = pt_train_repro_chunk(c);
        for (int64_t r0 = 0; r0 < b->rows; r0 += ch) {
            ctx.row_offset = b->row_offset + r0;
            pt_model_forward(m, b->x + r0 * S, (int)ch, &ctx);
            r->loss_sum += pt_model_loss_backward(m, b->y + r0, (int)ch, &ctx, 1.0f / (float)B, NULL);
            pt_grad_sync_exact_add(&d->gs, r0 == 0);
        }
        r->overflow = (double)d->gs.exact_overflow;
    } else if (have_rows && b->rows > 0) {
        pt_model_forward(m, b->x, (int)b->rows, &ctx);
        r->loss_sum = pt_model_loss_backward(m, b->y, (int)b->rows, &ctx, 1.0f / (float)B, NULL);
    } else {
        m->be->zero(m->g, sizeof(float) * (size_t)m->numel);
        if (c->reproducible) pt_grad_sync_exact_add(&d->gs, true);
    }
    r->status = have_rows && b->rows > 0 ? pt_model_status(m) : PT_OK;
    return PT_OK;
}

/* The part of the flat gradient this rank holds reduced after the dp sync: the whole buffer,
 * or its ZeRO-1 shard (in grad_sync's shard buffer, element j at flat offset *off + j). The
 * ranks of a tp group share their dp rank, hence their shard. */
static float *reduced_grad(pt_train_state *s, dp_state *d, int64_t *off, int64_t *n)
{
    if (!d->gs.zero || d->gs.exact || d->gs.size == 1) {
        *off = 0, *n = s->model.numel;
        return s->model.g;
    }
    return pt_grad_sync_grad(&d->gs, off, n);
}

/* The intersection of parameter p with the flat range [off, off + n): [*lo, *hi). */
static bool overlap(const pt_param *p, int64_t off, int64_t n, int64_t *lo, int64_t *hi)
{
    *lo = p->offset > off ? p->offset : off;
    *hi = p->offset + p->numel < off + n ? p->offset + p->numel : off + n;
    return *lo < *hi;
}

/* Sequence parallelism leaves partial gradients of the replicated layer norms and biases on
 * each tp rank (grad_over_tp): one allreduce over tp of all of them, on the part this rank
 * updates. Summing after the dp reduction gives the same total as before it (both are sums). */
static pt_status sum_partial_over_tp(pt_train_state *s, dp_state *d)
{
    const pt_model *m = &s->model;
    int64_t off, n, lo, hi, k = 0;
    float *g = reduced_grad(s, d, &off, &n);
    const pt_backend *be = m->be;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].grad_over_tp && overlap(&m->params[i], off, n, &lo, &hi)) {
            be->to_host(d->tp_partial + k, g + (lo - off), sizeof(float) * (size_t)(hi - lo));
            k += hi - lo;
        }
    PT_TRY(pt_allreduce(s->tp, PT_IN_PLACE, d->tp_partial, k, PT_F32, PT_SUM));
    k = 0;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].grad_over_tp && overlap(&m->params[i], off, n, &lo, &hi)) {
            be->to_device(g + (lo - off), d->tp_partial + k, sizeof(float) * (size_t)(hi - lo));
            k += hi - lo;
        }
    return PT_OK;
}

static pt_status dp_sync(pt_train_state *s, pt_step_report *r)
{
    dp_state *d = state_of(s);
    d->gs.epoch = (double)s->step / (double)s->steps_per_epoch; /* the density warm-up's clock */
    const uint64_t sent0 = s->dp->bytes_sent, recv0 = s->dp->bytes_recv;
    PT_TRY(pt_grad_sync_finish(&d->gs, &r->comm_wait_s));
    if (s->cfg->reproducible) PT_TRY(pt_grad_sync_exact_reduce(&d->gs)); /* its bytes count */
    r->bytes_sent = s->dp->bytes_sent - sent0, r->bytes_recv = s->dp->bytes_recv - recv0;
    r->sent_elems = (double)(d->z.cfg.kind == PT_COMPRESS_TOPK ? d->z.k : s->model.numel);
    r->comm_calls_s = d->gs.t_calls;
    r->comm_span_s = s->dp_size > 1 ? d->gs.t_last_done - d->gs.t_first : 0.0;
    r->started_early = d->gs.started_early;
    return d->tp_partial_n ? sum_partial_over_tp(s, d) : PT_OK;
}

/* The squared norm of the global gradient, every parameter counted once: a tp-split tensor's
 * slices are distinct (summed over tp), a replicated one is the same on every tp rank (counted
 * on tp rank 0 only). Under ZeRO-1 the shards are summed over dp too. */
static pt_status dp_grad_sum_squares(pt_train_state *s, double *ss)
{
    dp_state *d = state_of(s);
    if (s->tp->size == 1) return pt_grad_sync_sum_squares(&d->gs, ss);
    const pt_model *m = &s->model;
    int64_t off, n, lo, hi;
    const float *g = reduced_grad(s, d, &off, &n);
    double sum = 0.0;
    for (int i = 0; i < m->nparams; i++) {
        const pt_param *p = &m->params[i];
        if ((p->split_dim >= 0 || s->tp->rank == 0) && overlap(p, off, n, &lo, &hi))
            sum += m->be->sum_squares(g + (lo - off), hi - lo);
    }
    if (d->gs.zero && !d->gs.exact && d->gs.size > 1) /* ZeRO-1: a shard per dp rank */
        PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, s->dp->comm,
                                "the gradient norm of the ZeRO shards"));
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, s->tp->comm,
                            "the gradient norm over the tensor-parallel group"));
    *ss = sum;
    return PT_OK;
}

static void dp_clip(pt_train_state *s, double norm, double max_norm)
{
    int64_t off, n;
    float *g = pt_grad_sync_grad(&state_of(s)->gs, &off, &n);
    pt_clip_grad_scale(s->model.be, g, n, norm, max_norm);
}

static pt_status dp_update(pt_train_state *s, float lr)
{
    return pt_grad_sync_update(&state_of(s)->gs, &s->opt, lr);
}

static void dp_memory(const pt_train_state *s, pt_memory_bytes *mb)
{
    const dp_state *d = state_of(s);
    memset(mb, 0, sizeof *mb);
    const pt_model *m = &s->model;
    mb->param = pt_model_param_bytes(m) * (double)m->numel;
    mb->grad = 4.0 * (double)m->numel + (d->gs.gshard ? 4.0 * (double)d->gs.shard_count : 0);
    mb->optim = 4.0 * (double)s->opt.n * s->opt.nstates;
    mb->exact_acc = d->gs.acc ? 16.0 * (double)m->numel : 0.0;
    mb->activation = (double)pt_model_block_bytes(m, m->max_batch);
    mb->sharded_optim = d->gs.zero;
}

static int dp_buckets(const pt_train_state *s) { return state_of(s)->gs.nbuckets; }

static int dp_rank_states(pt_train_state *s, const char **names, float **data, int max)
{
    return pt_compressor_states(&state_of(s)->z, names, data, max);
}

static void dp_reset_rank_states(pt_train_state *s) { pt_compressor_reset(&state_of(s)->z); }

/* Do the replicas agree? max |w - w of dp rank 0| over ranks and elements: data parallelism
 * keeps them bitwise equal; a checkpoint cannot show it (each rank writes only its slice). */
static pt_status dp_replica_spread(pt_train_state *s, double *spread_out)
{
    double spread = 0.0;
    if (s->dp_size > 1) {
        const int64_t n = s->model.numel;
        float *w = malloc(sizeof(float) * (size_t)(2 * n + 1));
        if (!w) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory to compare the replicas");
        s->model.be->to_host(w, s->model.w, sizeof(float) * (size_t)n);
        memcpy(w + n, w, sizeof(float) * (size_t)n);
        /* numel < 2^31 (a float count) */
        pt_status st = pt_mpi_bcast(w + n, (int)n, MPI_FLOAT, 0, s->dp->comm,
                                    "dp rank 0's parameters, to compare the replicas");
        for (int64_t i = 0; i < n && st == PT_OK; i++) {
            const double dd = fabs((double)w[i] - (double)w[n + i]);
            if (!(dd <= spread)) spread = dd == dd ? dd : INFINITY;
        }
        free(w);
        PT_TRY(st);
    }
    if (s->world_size > 1)
        PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, &spread, 1, MPI_DOUBLE, MPI_MAX, s->world,
                                "the largest difference between the replicas"));
    *spread_out = spread;
    return PT_OK;
}

static void dp_teardown(pt_train_state *s)
{
    dp_state *d = state_of(s);
    if (!d) return;
    pt_grad_sync_free(&d->gs);
    pt_compressor_free(&d->z);
    /* teardown runs before the model is destroyed (loop.c); without a backend nothing was staged */
    if (s->model.be) pt_host_free(s->model.be, d->tp_partial);
    free(d);
    s->strategy_state = NULL;
}

const pt_step_strategy pt_strategy_data_parallel = {
    .name = "data parallel",
    .setup = dp_setup,
    .forward_backward = dp_forward_backward,
    .sync = dp_sync,
    .grad_sum_squares = dp_grad_sum_squares,
    .clip = dp_clip,
    .update = dp_update,
    .memory = dp_memory,
    .buckets = dp_buckets,
    .rank_states = dp_rank_states,
    .reset_rank_states = dp_reset_rank_states,
    .replica_spread = dp_replica_spread,
    .teardown = dp_teardown,
};
