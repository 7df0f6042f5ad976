/* The pipeline step strategy (pipeline.h): this rank runs the nodes of its stage (its pp
 * coordinate) over the step's micro-batches in the order of a schedule, receiving its input
 * activation from the previous stage and its output gradient from the next over tagged
 * nonblocking point-to-point (comm.h: bounded by PT_COLL_TIMEOUT, the dead stage named).
 *
 *   gpipe  every micro-batch's forward, then every backward: M activation blocks in flight
 *   1f1b   PipeDream-Flush: stage s runs min(pp - s - 1, M) forwards, then alternates one
 *          forward and one backward, then drains: at most pp - s blocks in flight
 *
 * Both run the backwards in micro-batch order, so they accumulate the same sums in the same order
 * and give the same bits. --recompute: one activation block for the whole schedule; a micro-batch
 * in flight keeps only its stage input (the received activation, already in its receive buffer
 * for the step, or the data rows the loop holds) and the stage's forward runs again right before
 * its backward. The forward is a function of the weights, the input and the context (dropout is
 * keyed by seed, step, node and global row), so the recomputed activations, and every gradient,
 * are the same bits. Every receive of the step is posted before any compute (each into a
 * buffer of its own) and every send is nonblocking from a buffer of its own, so no stage ever
 * blocks on a send and transfers overlap compute; the step waits for its sends at the end.
 *
 * Every rank keeps the whole model's flat layout and parameters (checkpoints, the tp layout and
 * evaluation are unchanged), but a stage computes, reduces, counts in the norm and checkpoints
 * only the parameters its nodes own, and allocates gradients, optimizer state and in-flight
 * activations for those only (stage_window; docs/ARCHITECTURE.md, "Ownership"). Gradients
 * accumulate over the micro-batches (model.accumulate), each scaled by 1 / global batch, so the
 * sum over micro-batches and dp is the serial gradient. The tied gpt embedding (owned by stage
 * 0, used by the last stage's output layer) is kept on both: the last stage sends its gradient,
 * stage 0 adds it, updates, and sends the new values back, so both copies stay equal. The dp
 * gradient sync of the data-parallel strategy (grad_sync.c: buckets, ZeRO-1) runs within each
 * stage's dp group over the stage's range. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/agree.h"
#include "paratrain/ckpt.h"
#include "paratrain/log.h"
#include "paratrain/pipeline.h"
#include "paratrain/strategy.h"
#include "paratrain/watchdog.h"
#include "grad_sync.h"

#define MAX_SHARED 8

#define MAX_CHUNKS 16

/* One model chunk of this rank: global stage g = c * pp + stage (interleaved: V chunks per
 * rank; else one, g = stage). */
typedef struct {
    int g;
    int n0, n1;                /* its nodes */
    int in_slot, out_slot;     /* boundary slots (-1: first / last global stage) */
    int64_t in_size, out_size; /* floats per row */
    int prev, next;            /* pp ranks of global stages g - 1 and g + 1 */
    float *recv_act, *send_act, *recv_grad, *send_grad; /* M x mb_max x size each */
    pt_p2p_request *rq_act, *rq_grad, *sq_act, *sq_grad;
} pp_chunk;

typedef struct {
    pt_grad_sync gs;
    pt_comm *pp;
    pt_pipe_schedule sched;
    pt_pipe_partition part;    /* over the pp x V global stages */
    int stage, nstages, V, M, K;
    int inflight;              /* micro-batches in flight at most per chunk (K without recompute) */
    bool recompute;
    int held_ci, held_mb;      /* recompute: whose forward the one block holds (-1: none) */
    /* activation bytes of one micro-batch's block (this rank's nodes of the chunk) and of its
     * stage input, at mb_max rows; live: what the micro-batches in flight hold now */
    double blk_bytes[MAX_CHUNKS], in_bytes[MAX_CHUNKS], live, peak;
    bool peak_reported;
    pp_chunk ch[MAX_CHUNKS];
    int64_t *mb_off, *mb_rows; /* micro-batches within this rank's rows */
    int64_t mb_max;
    int *owner;                /* pp rank owning each parameter */
    /* parameters used by a stage other than their owner: (param, owner, user) */
    int nshared, shared_p[MAX_SHARED], shared_owner[MAX_SHARED], shared_user[MAX_SHARED];
    float *shared_buf;
    int64_t shared_max;
    /* What this rank backs with gradients and optimizer state: the flat range [win_lo, win_hi)
     * of its parameters (one stage's nodes own a contiguous run of the layout; interleaved
     * chunks: from the first chunk's to the last one's), and view, the model as the dp gradient
     * sync sees it: that range alone (its parameters, offsets from win_lo, w at w + win_lo). */
    int64_t win_lo, win_hi;
    pt_model *view;
    /* checkpoints: the optimizer state in the layout they expect (the whole flat layout, or its
     * ZeRO-1 dp shard), only while a save or load needs it */
    pt_optimizer ckpt_opt;
    bool have_ckpt_opt;
    double loss_sum;
    /* --trace: spans of the steps [trace_first, trace_last] */
    struct span { char kind; short chunk; int mb; int64_t step; double t0, t1; } *spans;
    int nspans, cap_spans;
    int64_t trace_first, trace_last;
    bool tracing;
} pp_state;

/* Span kinds: F forward, B backward, R recompute, a / g waiting for an activation / a
 * gradient, s waiting for the sends, e the shared-embedding exchange, r the dp gradient sync, u
 * the update. */
static void span(pp_state *d, char kind, int chunk, int mb, int64_t step, double t0)
{
    if (!d->tracing) return;
    if (d->nspans == d->cap_spans) {
        const int cap = d->cap_spans ? 2 * d->cap_spans : 256;
        struct span *p = realloc(d->spans, sizeof *p * (size_t)cap);
        if (!p) return; /* the timeline loses spans, the step goes on */
        d->spans = p, d->cap_spans = cap;
    }
    d->spans[d->nspans++] = (struct span){kind, (short)chunk, mb, step, t0, pt_now()};
}

static pp_state *state_of(const pt_train_state *s) { return (pp_state *)s->strategy_state; }
static void free_ckpt_opt(pp_state *d);

pt_status pt_pipe_schedule_parse(const char *name, pt_pipe_schedule *s)
{
    if (!strcmp(name, "gpipe")) *s = PT_PIPE_GPIPE;
    else if (!strcmp(name, "1f1b")) *s = PT_PIPE_1F1B;
    else if (!strcmp(name, "interleaved")) *s = PT_PIPE_INTERLEAVED;
    else return PT_ERR(PT_ERR_ARG, "choose gpipe, 1f1b or interleaved", "unknown --pipeline '%s'", name);
    return PT_OK;
}

/* ------------------------------------------------------------------ partition */

pt_status pt_pipe_partition_make(const pt_model *m, int pp, const char *split,
                                 pt_pipe_partition *part)
{
    memset(part, 0, sizeof *part);
    const int n = m->nnodes;
    if (pp < 1 || pp > PT_MAX_STAGES)
        return PT_ERR(PT_ERR_ARG, NULL, "--pp %d: between 1 and %d stages", pp, PT_MAX_STAGES);
    int *cut = malloc(sizeof(int) * (size_t)(n + 1)), ncut = 0;
    double *pre = malloc(sizeof(double) * (size_t)(n + 1));
    if (!cut || !pre) {
        free(cut), free(pre);
        return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the stage partition");
    }
    pre[0] = 0.0;
    for (int i = 0; i < n; i++) pre[i + 1] = pre[i] + pt_model_node_flops(m, i);
    cut[ncut++] = 0;
    for (int c = 1; c < n; c++)
        if (pt_model_cut_slot(m, c) >= 0) cut[ncut++] = c;
    cut[ncut++] = n;
    pt_status st = PT_OK;
    part->pp = pp;
    part->first[0] = 0, part->first[pp] = n;
    if (ncut - 2 < pp - 1) {
        st = PT_ERR(PT_ERR_ARG, "lower --pp (or --virtual-stages)",
                    "%d pipeline stages (--pp x --virtual-stages): model '%s' can be cut in only "
                    "%d place%s (between layers, where one activation crosses), so it has at most "
                    "%d stage%s", pp, m->spec, ncut - 2, ncut - 2 == 1 ? "" : "s", ncut - 1,
                    ncut - 1 == 1 ? "" : "s");
    } else if (split && split[0]) {
        const char *p = split;
        for (int k = 1; k < pp && st == PT_OK; k++) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || (k < pp - 1 && *end != ',') || (k == pp - 1 && *end))
                st = PT_ERR(PT_ERR_ARG, "give pp - 1 increasing node indices, e.g. --pp-split 7,14",
                            "--pp-split '%s' for --pp %d", split, pp);
            else if (v <= part->first[k - 1] || v >= n || pt_model_cut_slot(m, (int)v) < 0)
                st = PT_ERR(PT_ERR_ARG, "cut where one activation crosses (between layers; "
                            "the balanced partition lists such nodes)",
                            "--pp-split: node %ld is no place to cut model '%s' after node %d",
                            v, m->spec, part->first[k - 1]);
            else part->first[k] = (int)v;
            p = end + 1;
        }
    } else {
        /* best[k][j]: the smallest largest-stage cost of k stages over nodes [0, cut[j]) */
        const int J = ncut;
        double *best = malloc(sizeof(double) * (size_t)(pp + 1) * (size_t)J);
        int *from = malloc(sizeof(int) * (size_t)(pp + 1) * (size_t)J);
        if (!best || !from) st = PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the stage partition");
        for (int k = 0; st == PT_OK && k <= pp; k++)
            for (int j = 0; j < J; j++) {
                best[k * J + j] = k == 0 && j == 0 ? 0.0 : INFINITY;
                from[k * J + j] = -1;
                for (int i = 0; k > 0 && i < j; i++) {
                    const double c = fmax(best[(k - 1) * J + i], pre[cut[j]] - pre[cut[i]]);
                    if (c < best[k * J + j]) best[k * J + j] = c, from[k * J + j] = i;
                }
            }
        for (int k = pp, j = J - 1; st == PT_OK && k > 0; k--) {
            part->first[k] = cut[j];
            j = from[k * J + j];
        }
        free(best), free(from);
    }
    for (int k = 0; st == PT_OK && k < pp; k++)
        part->share[k] = pre[n] > 0 ? (pre[part->first[k + 1]] - pre[part->first[k]]) / pre[n] : 0;
    free(cut), free(pre);
    return st;
}

/* ------------------------------------------------------------------ set-up */

/* the pp rank that runs node i (global stage k runs on rank k mod pp) */
static int stage_of_node(const pp_state *d, int i)
{
    int k = 0;
    while (k + 1 < d->part.pp && d->part.first[k + 1] <= i) k++;
    return k % d->nstages;
}

static pt_status ownership(pt_train_state *s, pp_state *d)
{
    pt_model *m = &s->model;
    d->owner = malloc(sizeof(int) * (size_t)(m->nparams + 1));
    if (!d->owner) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the parameter owners");
    for (int t = 0; t < m->nparams; t++) d->owner[t] = -1;
    for (int i = 0; i < m->nnodes; i++)
        for (int k = 0; k < m->nodes[i].np; k++)
            if (m->nodes[i].p[k] >= 0 && d->owner[m->nodes[i].p[k]] < 0)
                d->owner[m->nodes[i].p[k]] = stage_of_node(d, i);
    for (int i = 0; i < m->nnodes; i++) {
        const int u = stage_of_node(d, i);
        for (int k = 0; k < 8; k++) {
            const int t = m->nodes[i].p[k];
            if (t < 0 || d->owner[t] == u) continue;
            bool seen = false;
            for (int j = 0; j < d->nshared; j++)
                seen |= d->shared_p[j] == t && d->shared_user[j] == u;
            if (seen) continue;
            if (d->nshared == MAX_SHARED)
                return PT_ERR(PT_ERR_ARG, NULL, "model '%s': more than %d parameters shared "
                              "between stages", m->spec, MAX_SHARED);
            d->shared_p[d->nshared] = t, d->shared_owner[d->nshared] = d->owner[t];
            d->shared_user[d->nshared++] = u;
            if (m->params[t].numel > d->shared_max) d->shared_max = m->params[t].numel;
        }
    }
    if (d->shared_max && !(d->shared_buf = malloc(sizeof(float) * (size_t)(2 * d->shared_max))))
        return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the shared parameters' gradients");
    return PT_OK;
}

/* This rank's gradients shrink to the flat range of the parameters it owns, plus the shared
 * ones it uses outside it (the tied embedding on the last stage), and the view for the dp sync
 * covers that range. Parameters stay whole (evaluation and checkpoints read them all). */
static pt_status stage_window(pt_train_state *s, pp_state *d)
{
    pt_model *m = &s->model;
    int64_t lo = m->numel, hi = 0;
    for (int t = 0; t < m->nparams; t++)
        if (d->owner[t] == d->stage) {
            const pt_param *p = &m->params[t];
            lo = p->offset < lo ? p->offset : lo;
            hi = p->offset + p->numel > hi ? p->offset + p->numel : hi;
        }
    if (lo > hi) lo = hi = 0; /* a stage without parameters */
    unsigned char extra[PT_MAX_PARAMS] = {0};
    for (int j = 0; j < d->nshared; j++) {
        const pt_param *p = &m->params[d->shared_p[j]];
        if (d->shared_user[j] == d->stage && (p->offset < lo || p->offset + p->numel > hi))
            extra[d->shared_p[j]] = 1;
    }
    PT_TRY(pt_model_restrict_grad(m, lo, hi, extra));
    d->win_lo = lo, d->win_hi = hi;
    pt_model *v = malloc(sizeof *v);
    if (!v) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the stage's view of the model");
    *v = *m;
    int first = 0, count = 0; /* offsets grow with the tensor index */
    while (first < m->nparams && m->params[first].offset < lo) first++;
    while (first + count < m->nparams &&
           m->params[first + count].offset + m->params[first + count].numel <= hi)
        count++;
    memmove(v->params, m->params + first, sizeof *v->params * (size_t)count);
    v->nparams = count;
    for (int i = 0; i < count; i++)
        v->params[i].offset -= lo, v->params[i].goff = v->params[i].offset;
    v->numel = hi - lo, v->w = m->w + lo, v->g = m->g;
    v->g_lo = 0, v->g_hi = v->numel;
    v->grad_ready = NULL, v->g_pass = NULL, v->inflight = NULL, v->ninflight = 0;
    d->view = v;
    return PT_OK;
}

static pt_status check_options(pt_train_state *s, pp_state *d)
{
    const pt_train_config *c = s->cfg;
    PT_TRY(pt_pipe_schedule_parse(c->pipeline, &d->sched));
    if (c->virtual_stages != 1 && d->sched != PT_PIPE_INTERLEAVED)
        return PT_ERR(PT_ERR_ARG, "add --pipeline interleaved, or drop --virtual-stages",
                      "--virtual-stages %lld applies to --pipeline interleaved only",
                      (long long)c->virtual_stages);
    d->V = d->sched == PT_PIPE_INTERLEAVED ? (int)c->virtual_stages : 1;
    if (d->V > MAX_CHUNKS || (int64_t)d->V * c->pp > PT_MAX_STAGES)
        return PT_ERR(PT_ERR_ARG, "lower --virtual-stages", "--virtual-stages %d x --pp %lld: at "
                      "most %d chunks per rank and %d stages in all", d->V, (long long)c->pp,
                      MAX_CHUNKS, PT_MAX_STAGES);
    if (c->reproducible || strcmp(c->compress, "none"))
        return PT_ERR(PT_ERR_ARG, "drop --reproducible and --compress, or use --pp 1",
                      "--pp %lld does not combine with --reproducible or --compress",
                      (long long)c->pp);
    if (pt_model_has_batchnorm(&s->model))
        return PT_ERR(PT_ERR_ARG, "train batch-norm models with --pp 1",
                      "batch norm over micro-batches would normalize over fewer samples than the "
                      "serial run; '%s' has batch norm", c->model);
    const int64_t M = c->micro_batches > 0 ? c->micro_batches : c->pp;
    if (M > s->batch.rows)
        return PT_ERR(PT_ERR_ARG, "lower --micro-batches or raise --batch",
                      "--micro-batches %lld: each data-parallel rank has only %lld rows per step",
                      (long long)M, (long long)s->batch.rows);
    if (d->sched == PT_PIPE_INTERLEAVED && M % c->pp)
        return PT_ERR(PT_ERR_ARG, "choose --micro-batches a multiple of --pp",
                      "--pipeline interleaved runs micro-batches in groups of pp: --micro-batches "
                      "%lld is not a multiple of --pp %lld", (long long)M, (long long)c->pp);
    d->M = (int)M;
    return PT_OK;
}

static pt_status pp_setup(pt_train_state *s)
{
    const pt_train_config *c = s->cfg;
    pp_state *d = calloc(1, sizeof *d);
    if (!d) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the pipeline state");
    s->strategy_state = d;
    d->trace_first = -1;
    pt_model *m = &s->model;
    d->pp = &s->grid.group[PT_AXIS_PP];
    d->stage = s->grid.coord[PT_AXIS_PP], d->nstages = s->grid.size[PT_AXIS_PP];
    pt_status st = check_options(s, d);
    if (st == PT_OK) st = pt_pipe_partition_make(m, d->nstages * d->V, c->pp_split, &d->part);
    PT_TRY(pt_agree(s->world, st, NULL));
    const int G = d->part.pp;
    if (!c->quiet && s->world_rank == 0) {
        char line[2048];
        int o = 0;
        for (int k = 0; k < G && o < (int)sizeof line - 64; k++)
            o += snprintf(line + o, sizeof line - (size_t)o, "%s%d: nodes %d-%d (%.1f%%)",
                          k ? ", " : "", k, d->part.first[k], d->part.first[k + 1] - 1,
                          100.0 * d->part.share[k]);
        pt_log_info("pipeline %s, %d micro-batches, %d stage%s%s: %s", c->pipeline, d->M, G,
                    G == 1 ? "" : "s", d->V > 1 ? " (stage k on pp rank k mod pp)" : "", line);
    }
    /* micro-batches: this rank's rows split as evenly as the data-parallel share is */
    const int M = d->M;
    d->mb_off = malloc(sizeof(int64_t) * (size_t)M);
    d->mb_rows = malloc(sizeof(int64_t) * (size_t)M);
    st = d->mb_off && d->mb_rows ? PT_OK : PT_ERR(PT_ERR_NOMEM, NULL, "no memory");
    for (int i = 0; st == PT_OK && i < M; i++) {
        pt_batch_share(s->batch.rows, i, M, &d->mb_off[i], &d->mb_rows[i]);
        if (d->mb_rows[i] > d->mb_max) d->mb_max = d->mb_rows[i];
    }
    /* micro-batches in flight per chunk: 1F1B holds at most pp - stage; GPipe all M;
     * interleaved all M of each chunk. A block each, unless --recompute */
    const int p1 = d->nstages - d->stage < M ? d->nstages - d->stage : M;
    d->inflight = d->sched == PT_PIPE_1F1B ? p1 : M;
    /* --recompute: one block (the model's own); the inputs live in the receive buffers */
    d->recompute = c->recompute;
    d->held_ci = d->held_mb = -1;
    d->K = d->recompute ? 1 : d->V * d->inflight;
    if (st == PT_OK) st = ownership(s, d);
    if (st == PT_OK) st = stage_window(s, d); /* before the in-flight gradient buffer */
    unsigned char mine[PT_MAX_NODES] = {0}; /* this rank's nodes, over its chunks */
    for (int i = 0; i < m->nnodes; i++) mine[i] = stage_of_node(d, i) == d->stage;
    if (st == PT_OK) st = pt_model_alloc_inflight(m, d->K, (int)d->mb_max, mine);
    for (int ci = 0; ci < d->V && st == PT_OK; ci++) {
        pp_chunk *h = &d->ch[ci];
        h->g = ci * d->nstages + d->stage;
        h->n0 = d->part.first[h->g], h->n1 = d->part.first[h->g + 1];
        h->in_slot = h->g > 0 ? pt_model_cut_slot(m, h->n0) : -1;
        h->out_slot = h->g < G - 1 ? m->nodes[h->n1 - 1].out : -1;
        h->in_size = h->in_slot >= 0 ? m->slots[h->in_slot].size : 0;
        h->out_size = h->out_slot >= 0 ? m->slots[h->out_slot].size : 0;
        h->prev = (h->g + G - 1) % G % d->nstages, h->next = (h->g + 1) % G % d->nstages;
        const size_t na = sizeof(float) * (size_t)(M * d->mb_max * h->in_size + 1);
        const size_t nb = sizeof(float) * (size_t)(M * d->mb_max * h->out_size + 1);
        h->recv_act = malloc(na), h->send_grad = malloc(na);
        h->send_act = malloc(nb), h->recv_grad = malloc(nb);
        h->rq_act = calloc((size_t)M, sizeof *h->rq_act);
        h->rq_grad = calloc((size_t)M, sizeof *h->rq_grad);
        h->sq_act = calloc((size_t)M, sizeof *h->sq_act);
        h->sq_grad = calloc((size_t)M, sizeof *h->sq_grad);
        if (!h->recv_act || !h->send_grad || !h->send_act || !h->recv_grad || !h->rq_act ||
            !h->rq_grad || !h->sq_act || !h->sq_grad)
            st = PT_ERR(PT_ERR_NOMEM, "lower --micro-batches", "no memory for the stage buffers");
        for (int i = 0; st == PT_OK && i < M; i++)
            h->rq_act[i].req = h->rq_grad[i].req = h->sq_act[i].req = h->sq_grad[i].req =
                MPI_REQUEST_NULL;
        /* the memory record's accounting: a block holds the output (and its gradient) and the
         * saved state of each node of the chunk; the first stage's input is the loop's batch */
        double act = 0.0;
        for (int i = h->n0; i < h->n1; i++)
            act += (double)d->mb_max * (2.0 * (double)m->slots[m->nodes[i].out].size +
                                        (double)m->nodes[i].aux_row) +
                   (double)m->nodes[i].aux_fixed;
        d->blk_bytes[ci] = 4.0 * act;
        d->in_bytes[ci] = 4.0 * (double)d->mb_max * (double)h->in_size;
    }
    PT_TRY(pt_agree(s->world, st, NULL));
    st = pt_grad_sync_init(&d->gs, s->dp, d->view, pt_train_zero_stage(c, s->dp_size) == 1, false,
                           c->bucket_mb);
    PT_TRY(pt_agree(s->world, st, NULL));
    st = pt_train_make_optimizer(s, d->gs.shard_off, d->gs.shard_count);
    return pt_agree(s->world, st, NULL);
}

/* ------------------------------------------------------------------ the schedule */

static pt_fwd_ctx ctx_of(const pt_train_state *s, const pp_state *d, int mb)
{
    return (pt_fwd_ctx){.train = 1, .seed = s->cfg->seed, .step = s->step,
                        .row_offset = s->batch.row_offset + d->mb_off[mb]};
}

static int block_of(const pp_state *d, int ci, int mb) { return (ci * d->M + mb) % d->K; }

/* tags: kind (0 activation, 1 gradient) of micro-batch mb entering global stage g's boundary */
static int tag_of(const pp_state *d, int g, int mb, int kind) { return 2 * (g * d->M + mb) + kind; }

/* What the micro-batches in flight hold, as forward adds one and backward retires it: its block
 * or, with recompute, its stage input (the one block counted once, in pp_memory's way). */
static void hold(pp_state *d, int ci, int sign)
{
    d->live += sign * (d->recompute ? d->in_bytes[ci] : d->blk_bytes[ci]);
    if (d->live > d->peak) d->peak = d->live;
}

/* The chunk's forward of micro-batch mb in the selected block, from its input (received, already
 * waited for, or the data) to its output; on the last stage also the loss and its gradient. */
static double stage_forward(pt_train_state *s, pp_state *d, int ci, int mb)
{
    pt_model *m = &s->model;
    const pp_chunk *h = &d->ch[ci];
    const int64_t rows = d->mb_rows[mb], S = s->train.sample_size;
    if (h->in_slot >= 0)
        memcpy(m->slots[h->in_slot].a, h->recv_act + mb * d->mb_max * h->in_size,
               sizeof(float) * (size_t)(rows * h->in_size));
    const pt_fwd_ctx ctx = ctx_of(s, d, mb);
    pt_model_forward_range(m, s->batch.x + d->mb_off[mb] * S, (int)rows, &ctx, h->n0, h->n1);
    if (h->out_slot >= 0) return 0.0;
    return pt_model_loss(m, s->batch.y + d->mb_off[mb], (int)rows, 1.0f / (float)s->cfg->batch,
                         NULL);
}

static pt_status forward(pt_train_state *s, pp_state *d, int ci, int mb)
{
    pt_model *m = &s->model;
    pp_chunk *h = &d->ch[ci];
    const int64_t rows = d->mb_rows[mb];
    pt_model_select_inflight(m, block_of(d, ci, mb));
    double t0 = pt_now();
    if (h->in_slot >= 0) {
        PT_TRY(pt_p2p_wait(&h->rq_act[mb], 1, "a micro-batch's activations from the previous stage"));
        span(d, 'a', ci, mb, s->step, t0);
        t0 = pt_now();
    }
    hold(d, ci, +1);
    const double loss = stage_forward(s, d, ci, mb);
    d->held_ci = ci, d->held_mb = mb;
    if (h->out_slot < 0) { /* last stage: the loss, and its gradient for the backward */
        d->loss_sum += loss;
        span(d, 'F', ci, mb, s->step, t0);
        return PT_OK;
    }
    float *buf = h->send_act + mb * d->mb_max * h->out_size;
    memcpy(buf, m->slots[h->out_slot].a, sizeof(float) * (size_t)(rows * h->out_size));
    pt_status st = pt_isend(d->pp, buf, rows * h->out_size, PT_F32, h->next,
                            tag_of(d, h->g + 1, mb, 0), &h->sq_act[mb]);
    span(d, 'F', ci, mb, s->step, t0);
    return st;
}

static pt_status backward(pt_train_state *s, pp_state *d, int ci, int mb)
{
    pt_model *m = &s->model;
    pp_chunk *h = &d->ch[ci];
    const int64_t rows = d->mb_rows[mb];
    pt_model_select_inflight(m, block_of(d, ci, mb));
    double t0 = pt_now();
    /* recompute, unless the block still holds this forward (1F1B's last stage runs a backward
     * right after its forward); before the gradient's wait, so the transfer overlaps it. The
     * last stage's loss gradient comes again with it (the loss was counted in the forward). */
    if (d->recompute && (d->held_ci != ci || d->held_mb != mb)) {
        (void)stage_forward(s, d, ci, mb);
        span(d, 'R', ci, mb, s->step, t0);
        t0 = pt_now();
    }
    d->held_ci = d->held_mb = -1; /* backward leaves the block to the next forward */
    if (h->out_slot >= 0) {
        PT_TRY(pt_p2p_wait(&h->rq_grad[mb], 1, "a micro-batch's gradient from the next stage"));
        span(d, 'g', ci, mb, s->step, t0);
        t0 = pt_now();
        memcpy(m->slots[h->out_slot].g, h->recv_grad + mb * d->mb_max * h->out_size,
               sizeof(float) * (size_t)(rows * h->out_size));
    }
    const pt_fwd_ctx ctx = ctx_of(s, d, mb);
    pt_model_backward_range(m, (int)rows, &ctx, h->n0, h->n1);
    hold(d, ci, -1);
    if (h->in_slot < 0) {
        span(d, 'B', ci, mb, s->step, t0);
        return PT_OK;
    }
    float *buf = h->send_grad + mb * d->mb_max * h->in_size;
    memcpy(buf, m->slots[h->in_slot].g, sizeof(float) * (size_t)(rows * h->in_size));
    pt_status st = pt_isend(d->pp, buf, rows * h->in_size, PT_F32, h->prev,
                            tag_of(d, h->g, mb, 1), &h->sq_grad[mb]);
    span(d, 'B', ci, mb, s->step, t0);
    return st;
}

/* Interleaved 1F1B (Narayanan et al. 2021, Megatron's order): virtual micro-batch k runs on
 * chunk (k mod pp V) / pp (reversed for backwards) with micro-batch (k / (pp V)) pp + k mod pp. */
static void virtual_of(const pp_state *d, int k, bool fwd, int *ci, int *mb)
{
    const int P = d->nstages, c = (k % (P * d->V)) / P;
    *ci = fwd ? c : d->V - 1 - c;
    *mb = (k / (P * d->V)) * P + k % P;
}

static pt_status run_schedule(pt_train_state *s, pp_state *d)
{
    const int M = d->M;
    /* every receive first, each into its own buffer: no send ever waits for a receiver */
    for (int ci = 0; ci < d->V; ci++) {
        pp_chunk *h = &d->ch[ci];
        for (int mb = 0; mb < M; mb++) {
            if (h->in_slot >= 0)
                PT_TRY(pt_irecv(d->pp, h->recv_act + mb * d->mb_max * h->in_size,
                                d->mb_rows[mb] * h->in_size, PT_F32, h->prev,
                                tag_of(d, h->g, mb, 0), &h->rq_act[mb]));
            if (h->out_slot >= 0)
                PT_TRY(pt_irecv(d->pp, h->recv_grad + mb * d->mb_max * h->out_size,
                                d->mb_rows[mb] * h->out_size, PT_F32, h->next,
                                tag_of(d, h->g + 1, mb, 1), &h->rq_grad[mb]));
        }
    }
    if (d->sched == PT_PIPE_GPIPE) {
        for (int mb = 0; mb < M; mb++) PT_TRY(forward(s, d, 0, mb));
        for (int mb = 0; mb < M; mb++) PT_TRY(backward(s, d, 0, mb));
    } else if (d->sched == PT_PIPE_1F1B) { /* PipeDream-Flush */
        const int warm = d->nstages - d->stage - 1 < M ? d->nstages - d->stage - 1 : M;
        int f = 0, b = 0;
        for (; f < warm; f++) PT_TRY(forward(s, d, 0, f));
        for (; f < M; f++, b++) {
            PT_TRY(forward(s, d, 0, f));
            PT_TRY(backward(s, d, 0, b));
        }
        for (; b < M; b++) PT_TRY(backward(s, d, 0, b));
    } else { /* interleaved: Megatron's warm-up, then one forward, one backward */
        const int total = M * d->V, P = d->nstages;
        int warm = M == P ? total : (P - d->stage - 1) * 2 + (d->V - 1) * P;
        if (warm > total) warm = total;
        int ci, mb, f = 0, b = 0;
        for (; f < warm; f++) {
            virtual_of(d, f, true, &ci, &mb);
            PT_TRY(forward(s, d, ci, mb));
        }
        for (; f < total; f++, b++) {
            virtual_of(d, f, true, &ci, &mb);
            PT_TRY(forward(s, d, ci, mb));
            virtual_of(d, b, false, &ci, &mb);
            PT_TRY(backward(s, d, ci, mb));
        }
        for (; b < total; b++) {
            virtual_of(d, b, false, &ci, &mb);
            PT_TRY(backward(s, d, ci, mb));
        }
    }
    const double t0 = pt_now();
    for (int ci = 0; ci < d->V; ci++) {
        PT_TRY(pt_p2p_wait(d->ch[ci].sq_act, M, "a micro-batch's activations to the next stage"));
        PT_TRY(pt_p2p_wait(d->ch[ci].sq_grad, M, "a micro-batch's gradient to the previous stage"));
    }
    span(d, 's', -1, -1, s->step, t0);
    return PT_OK;
}

/* The shared parameters' gradients, from each user stage to the owner, which adds them (the
 * same dp and tp coordinates: the pp group's ranks are the stages). Only the owner holds their
 * optimizer state; after its update it sends the users the new values (share_updated). */
static pt_status sync_shared(pt_train_state *s, pp_state *d)
{
    pt_model *m = &s->model;
    for (int j = 0; j < d->nshared; j++) {
        const int o = d->shared_owner[j], u = d->shared_user[j];
        if (d->stage != o && d->stage != u) continue;
        const pt_param *p = &m->params[d->shared_p[j]];
        float *g = m->g + p->goff, *theirs = d->shared_buf;
        pt_p2p_request rq;
        if (d->stage == u) {
            PT_TRY(pt_isend(d->pp, g, p->numel, PT_F32, o, 1 << 20 | j, &rq));
            PT_TRY(pt_p2p_wait(&rq, 1, "the gradient of a parameter shared between stages"));
            continue;
        }
        PT_TRY(pt_irecv(d->pp, theirs, p->numel, PT_F32, u, 1 << 20 | j, &rq));
        PT_TRY(pt_p2p_wait(&rq, 1, "the gradient of a parameter shared between stages"));
        for (int64_t i = 0; i < p->numel; i++) g[i] += theirs[i];
    }
    return PT_OK;
}

/* The shared parameters' new values, from the owner to each user stage. */
static pt_status share_updated(pt_train_state *s, pp_state *d)
{
    pt_model *m = &s->model;
    for (int j = 0; j < d->nshared; j++) {
        const int o = d->shared_owner[j], u = d->shared_user[j];
        if (d->stage != o && d->stage != u) continue;
        const pt_param *p = &m->params[d->shared_p[j]];
        pt_p2p_request rq;
        const int tag = 1 << 20 | (MAX_SHARED + j); /* after sync_shared's tags */
        if (d->stage == o)
            PT_TRY(pt_isend(d->pp, m->w + p->offset, p->numel, PT_F32, u, tag, &rq));
        else
            PT_TRY(pt_irecv(d->pp, m->w + p->offset, p->numel, PT_F32, o, tag, &rq));
        PT_TRY(pt_p2p_wait(&rq, 1, "the new value of a parameter shared between stages"));
    }
    return PT_OK;
}

/* The peak of what the micro-batches in flight held during this process's first step, per
 * stage (the largest over its dp and tp ranks): a "pipeline_memory" metrics record and, unless
 * --quiet, a log line. With recompute the one block counts too. Collective over the world. */
static pt_status report_peak(pt_train_state *s, pp_state *d)
{
    double mine[2] = {(double)d->stage, d->peak}, *all = malloc(sizeof(double) * 2 *
                                                                 (size_t)s->world_size);
    pt_status st = all ? PT_OK : PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the stages' peaks");
    PT_TRY(pt_agree(s->world, st, NULL));
    for (int ci = 0; d->recompute && ci < d->V; ci++) mine[1] += d->blk_bytes[ci];
    st = pt_mpi_allgather(mine, 2, MPI_DOUBLE, all, s->world, "the stages' activation peaks");
    if (st == PT_OK && s->world_rank == 0) {
        double peak[PT_MAX_STAGES] = {0};
        for (int r = 0; r < s->world_size; r++)
            if (all[2 * r + 1] > peak[(int)all[2 * r]]) peak[(int)all[2 * r]] = all[2 * r + 1];
        char list[PT_MAX_STAGES * 24], line[PT_MAX_STAGES * 40];
        int o = 0, ol = 0;
        for (int k = 0; k < d->nstages; k++) {
            o += snprintf(list + o, sizeof list - (size_t)o, "%s%.0f", k ? ", " : "", peak[k]);
            ol += snprintf(line + ol, sizeof line - (size_t)ol, "%sstage %d %.2f MiB",
                           k ? ", " : "", k, peak[k] / 1048576.0);
        }
        pt_metrics_write(&s->metrics, "pipeline_memory",
                         "\"step\": %lld, \"schedule\": \"%s\", \"micro_batches\": %d, "
                         "\"recompute\": %s, \"peak_activation_bytes\": [%s]",
                         (long long)s->step, s->cfg->pipeline, d->M,
                         d->recompute ? "true" : "false", list);
        if (!s->cfg->quiet)
            pt_log_info("pipeline activations at their peak (step %lld%s): %s", (long long)s->step,
                        d->recompute ? ", recompute" : "", line);
    }
    free(all);
    return pt_agree(s->world, st, NULL);
}

static void pp_memory(const pt_train_state *s, pt_memory_bytes *mb);

/* The parameter, gradient and optimizer-state bytes every rank allocated (pp_memory's), as a
 * "pipeline_state" metrics record of per-world-rank lists and, unless --quiet, a log line per
 * stage (the largest over its dp and tp ranks). Collective over the world. */
static pt_status report_state(pt_train_state *s, pp_state *d)
{
    pt_memory_bytes mb;
    pp_memory(s, &mb);
    double mine[4] = {(double)d->stage, mb.param, mb.grad, mb.optim};
    double *all = malloc(sizeof(double) * 4 * (size_t)s->world_size);
    pt_status st = all ? PT_OK
                       : PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the stages' state bytes");
    PT_TRY(pt_agree(s->world, st, NULL));
    st = pt_mpi_allgather(mine, 4, MPI_DOUBLE, all, s->world, "the stages' state bytes");
    if (st == PT_OK && s->world_rank == 0) {
        char list[3][PT_MAX_STAGES * 8 * 24], line[PT_MAX_STAGES * 96];
        int o[3] = {0, 0, 0}, ol = 0;
        for (int r = 0; r < s->world_size; r++)
            for (int k = 0; k < 3; k++)
                o[k] += snprintf(list[k] + o[k], sizeof list[k] - (size_t)o[k], "%s%.0f",
                                 r ? ", " : "", all[4 * r + 1 + k]);
        for (int k = 0; k < d->nstages; k++) {
            double most[3] = {0, 0, 0};
            for (int r = 0; r < s->world_size; r++)
                for (int j = 0; j < 3 && (int)all[4 * r] == k; j++)
                    most[j] = all[4 * r + 1 + j] > most[j] ? all[4 * r + 1 + j] : most[j];
            ol += snprintf(line + ol, sizeof line - (size_t)ol,
                           "%sstage %d %.0f + %.0f + %.0f", k ? ", " : "", k, most[0], most[1],
                           most[2]);
        }
        pt_metrics_write(&s->metrics, "pipeline_state",
                         "\"step\": %lld, \"param_bytes\": [%s], \"grad_bytes\": [%s], "
                         "\"optim_bytes\": [%s]", (long long)s->step, list[0], list[1], list[2]);
        if (!s->cfg->quiet)
            pt_log_info("pipeline state allocated (parameters + gradients + optimizer bytes, "
                        "per rank): %s", line);
    }
    free(all);
    return pt_agree(s->world, st, NULL);
}

static pt_status pp_forward_backward(pt_train_state *s, bool have_rows, pt_step_report *r)
{
    pp_state *d = state_of(s);
    pt_model *m = &s->model;
    /* a rank that could not read its rows still runs the schedule (its neighbours wait for
     * it) on zeros; the loop stops every rank after the step */
    if (!have_rows) {
        memset(s->batch.x, 0, sizeof(float) * (size_t)(s->batch.rows * s->train.sample_size));
        memset(s->batch.y, 0, sizeof(int32_t) * (size_t)s->batch.rows);
    }
    if (s->cfg->trace[0] && d->trace_first < 0) { /* the window: after the first step */
        const pt_train_config *c = s->cfg;
        const int64_t end = c->stop_at > 0 && c->stop_at < s->total_steps ? c->stop_at
                                                                           : s->total_steps;
        d->trace_first = s->step + (end - s->step > c->trace_steps ? 1 : 0);
        d->trace_last = d->trace_first + c->trace_steps - 1;
        if (d->trace_last > end - 1) d->trace_last = end - 1;
    }
    d->tracing = s->cfg->trace[0] && s->step >= d->trace_first && s->step <= d->trace_last;
    free_ckpt_opt(d); /* a save's stand-in, no longer needed */
    m->be->zero(m->g, sizeof(float) * (size_t)m->g_n);
    m->grad_ready = NULL; /* gradients are final only after the last micro-batch */
    m->accumulate = 1;
    d->loss_sum = 0.0;
    d->live = d->peak = 0.0;
    d->held_ci = d->held_mb = -1;
    pt_status st = run_schedule(s, d);
    m->accumulate = 0;
    pt_model_select_inflight(m, 0); /* evaluation uses the model's own block */
    d->held_ci = d->held_mb = -1;   /* and may overwrite it */
    PT_TRY(st);
    if (!d->peak_reported) {
        d->peak_reported = true;
        PT_TRY(report_peak(s, d));
        PT_TRY(report_state(s, d));
    }
    r->status = pt_model_status(m);
    const double t0 = pt_now();
    PT_TRY(sync_shared(s, d));
    if (d->nshared) span(d, 'e', -1, -1, s->step, t0);
    r->loss_sum = d->ch[d->V - 1].out_slot < 0 ? d->loss_sum : 0.0;
    return PT_OK;
}

static pt_status pp_sync(pt_train_state *s, pt_step_report *r)
{
    pp_state *d = state_of(s);
    pt_grad_sync_begin(&d->gs);
    s->model.grad_ready = NULL;
    const uint64_t sent0 = s->dp->bytes_sent, recv0 = s->dp->bytes_recv;
    const double t0 = pt_now();
    PT_TRY(pt_grad_sync_finish(&d->gs, &r->comm_wait_s));
    if (s->dp_size > 1) span(d, 'r', -1, -1, s->step, t0);
    r->bytes_sent = s->dp->bytes_sent - sent0, r->bytes_recv = s->dp->bytes_recv - recv0;
    r->sent_elems = (double)d->view->numel;
    r->comm_calls_s = d->gs.t_calls;
    r->comm_span_s = s->dp_size > 1 ? d->gs.t_last_done - d->gs.t_first : 0.0;
    return PT_OK;
}

/* ------------------------------------------------------------------ norm, clip, update */

static bool overlap(const pt_param *p, int64_t off, int64_t n, int64_t *lo, int64_t *hi)
{
    *lo = p->offset > off ? p->offset : off;
    *hi = p->offset + p->numel < off + n ? p->offset + p->numel : off + n;
    return *lo < *hi;
}

/* Each parameter once: on its owner stage only (a shared copy is not counted again), a
 * tp-split one on every tp rank, a replicated one on tp rank 0; summed over ZeRO shards (dp),
 * tp and pp. */
static pt_status pp_grad_sum_squares(pt_train_state *s, double *ss)
{
    pp_state *d = state_of(s);
    const pt_model *m = &s->model;
    int64_t off, n, lo, hi;
    const float *g = pt_grad_sync_grad(&d->gs, &off, &n);
    off += d->win_lo; /* the view's offsets, in the model's */
    double sum = 0.0;
    for (int i = 0; i < m->nparams; i++) {
        const pt_param *p = &m->params[i];
        if (d->owner[i] == d->stage && (p->split_dim >= 0 || s->tp->rank == 0) &&
            overlap(p, off, n, &lo, &hi))
            sum += m->be->sum_squares(g + (lo - off), hi - lo);
    }
    if (d->gs.zero && d->gs.size > 1)
        PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, s->dp->comm,
                                "the gradient norm of the ZeRO shards"));
    if (s->tp->size > 1)
        PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, s->tp->comm,
                                "the gradient norm over the tensor-parallel group"));
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, d->pp->comm,
                            "the gradient norm over the pipeline stages"));
    *ss = sum;
    return PT_OK;
}

static void pp_clip(pt_train_state *s, double norm, double max_norm)
{
    int64_t off, n;
    float *g = pt_grad_sync_grad(&state_of(s)->gs, &off, &n);
    pt_clip_grad_scale(s->model.be, g, n, norm, max_norm);
}

static const char *span_name(char k)
{
    switch (k) {
    case 'F': return "forward";
    case 'B': return "backward";
    case 'R': return "recompute";
    case 'a': return "wait activation";
    case 'g': return "wait gradient";
    case 's': return "wait sends";
    case 'e': return "embedding allreduce";
    case 'r': return "dp allreduce";
    default: return "update";
    }
}

/* Every rank's spans, as Chrome-trace "X" events (pid: world rank), to world rank 0, which
 * writes one JSON file (chrome://tracing, ui.perfetto.dev). Collective over the world. */
static pt_status write_trace(pt_train_state *s, pp_state *d)
{
    double tmin = d->nspans ? d->spans[0].t0 : 1e300;
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, &tmin, 1, MPI_DOUBLE, MPI_MIN, s->world,
                            "the start of the trace"));
    const size_t cap = 256 + 200 * (size_t)d->nspans;
    char *text = malloc(cap);
    size_t o = 0;
    pt_status st = text ? PT_OK : PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the trace");
    if (text) {
        o += (size_t)snprintf(text + o, cap - o,
                              "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, "
                              "\"args\": {\"name\": \"rank %d: stage %d, dp %d, tp %d\"}}",
                              s->world_rank, s->world_rank, d->stage, s->dp_rank,
                              s->grid.coord[PT_AXIS_TP]);
        for (int i = 0; i < d->nspans; i++) {
            const struct span *p = &d->spans[i];
            const bool compute = p->kind == 'F' || p->kind == 'B' || p->kind == 'R';
            char nm[48];
            if (compute && d->V > 1) snprintf(nm, sizeof nm, "%c%d.%d", p->kind, p->mb, p->chunk);
            else if (compute) snprintf(nm, sizeof nm, "%c%d", p->kind, p->mb);
            else if (p->mb >= 0) snprintf(nm, sizeof nm, "%s %d", span_name(p->kind), p->mb);
            else snprintf(nm, sizeof nm, "%s", span_name(p->kind));
            o += (size_t)snprintf(text + o, cap - o,
                                  ",\n{\"name\": \"%s\", \"cat\": \"%s\", \"ph\": \"X\", "
                                  "\"pid\": %d, \"tid\": 0, \"ts\": %.3f, \"dur\": %.3f, "
                                  "\"args\": {\"step\": %lld, \"mb\": %d, \"chunk\": %d}}",
                                  nm, compute ? "compute" : "comm", s->world_rank,
                                  1e6 * (p->t0 - tmin), 1e6 * (p->t1 - p->t0),
                                  (long long)p->step, p->mb, p->chunk);
        }
    }
    PT_TRY(pt_agree(s->world, st, NULL));
    int len = (int)o, *lens = malloc(sizeof(int) * (size_t)s->world_size);
    if (!lens) st = PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the trace");
    PT_TRY(pt_agree(s->world, st, NULL));
    st = pt_mpi_allgather(&len, 1, MPI_INT, lens, s->world, "the trace lengths");
    if (st == PT_OK && s->world_rank != 0)
        st = pt_mpi_send(text, len, MPI_CHAR, 0, 7, s->world, "this rank's trace");
    if (st == PT_OK && s->world_rank == 0) {
        FILE *fp = fopen(s->cfg->trace, "w");
        if (!fp) st = PT_ERR(PT_ERR_IO, "check the path", "cannot write --trace '%s'", s->cfg->trace);
        if (fp) fprintf(fp, "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n%.*s", len, text);
        for (int r = 1; r < s->world_size && st == PT_OK; r++) {
            char *t = malloc((size_t)lens[r] + 1);
            if (!t) st = PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the trace");
            if (st == PT_OK) st = pt_mpi_recv(t, lens[r], MPI_CHAR, r, 7, s->world, "a rank's trace");
            if (st == PT_OK) fprintf(fp, ",\n%.*s", lens[r], t);
            free(t);
        }
        if (fp) {
            fprintf(fp, "\n]}\n");
            if (fclose(fp) && st == PT_OK) st = PT_ERR(PT_ERR_IO, NULL, "cannot write --trace '%s'", s->cfg->trace);
        }
        if (st == PT_OK && !s->cfg->quiet)
            pt_log_info("trace of steps %lld-%lld: %s", (long long)d->trace_first,
                        (long long)d->trace_last, s->cfg->trace);
    }
    free(text), free(lens);
    return pt_agree(s->world, st, NULL);
}

static pt_status pp_update(pt_train_state *s, float lr)
{
    pp_state *d = state_of(s);
    const double t0 = pt_now();
    PT_TRY(pt_grad_sync_update(&d->gs, &s->opt, lr));
    PT_TRY(share_updated(s, d));
    span(d, 'u', -1, -1, s->step, t0);
    if (d->tracing && s->step == d->trace_last) PT_TRY(write_trace(s, d));
    return PT_OK;
}

/* Stage k's parameters from stage k to every stage, so every rank holds the whole current
 * model: what evaluation runs. (The optimizer state stays with its stage.) */
static pt_status pp_gather(pt_train_state *s)
{
    pp_state *d = state_of(s);
    pt_model *m = &s->model;
    for (int t = 0; t < m->nparams; t++) {
        const pt_param *p = &m->params[t];
        PT_TRY(pt_bcast(d->pp, m->w + p->offset, p->numel, PT_F32, d->owner[t]));
    }
    return PT_OK;
}

static void free_ckpt_opt(pp_state *d)
{
    if (d->have_ckpt_opt) pt_optim_destroy(&d->ckpt_opt);
    d->have_ckpt_opt = false;
}

/* Moves the optimizer state between this rank's range (s->opt over the view's [offset, offset
 * + n), i.e. flat [win_lo + offset, ...)) and the stand-in's part of the flat layout. Under
 * ZeRO-1 the two are different dp shards (of the stage's range, of the whole layout): the
 * stage's range is assembled on every dp rank with an allgather of the ones it holds (this
 * rank's shard to save, its part of the checkpoint's to load), then each takes its own. */
static pt_status move_ckpt_state(pt_train_state *s, pp_state *d, bool to_ckpt)
{
    const pt_backend *be = s->model.be;
    pt_optimizer *o = &s->opt, *c = &d->ckpt_opt;
    const int64_t olo = d->win_lo + o->offset, ohi = olo + o->n;
    const int64_t lo = olo > c->offset ? olo : c->offset;
    const int64_t hi = ohi < c->offset + c->n ? ohi : c->offset + c->n;
    if (!d->gs.zero || d->gs.size < 2) {
        for (int k = 0; k < o->nstates && lo < hi; k++) {
            float *cs = c->state[k] + (lo - c->offset), *os = o->state[k] + (lo - olo);
            const size_t bytes = sizeof(float) * (size_t)(hi - lo);
            if (to_ckpt) be->copy(cs, os, bytes);
            else be->copy(os, cs, bytes);
        }
        return PT_OK;
    }
    const int P = d->gs.size, me = d->gs.rank;
    const int64_t W = d->win_hi - d->win_lo;
    /* the checkpoint shards' parts of the stage's range: contiguous, in dp rank order */
    int64_t *cnt = malloc(sizeof(int64_t) * (size_t)P);
    float *tmp = malloc(sizeof(float) * (size_t)(W ? W : 1));
    pt_status st = cnt && tmp ? PT_OK : PT_ERR(PT_ERR_NOMEM, NULL, "no memory to move the "
                                               "optimizer state to the checkpoint layout");
    int64_t clo = 0, ccnt = 0;
    for (int r = 0; st == PT_OK && r < P; r++) {
        int64_t off, n;
        pt_shard_range(s->model.numel, P, r, &off, &n);
        const int64_t a = off > d->win_lo ? off : d->win_lo;
        const int64_t b = off + n < d->win_hi ? off + n : d->win_hi;
        cnt[r] = b > a ? b - a : 0;
        if (r == me) clo = a, ccnt = cnt[r];
    }
    st = pt_agree(s->world, st, NULL);
    for (int k = 0; st == PT_OK && k < o->nstates; k++) {
        if (to_ckpt) {
            be->to_host(tmp + o->offset, o->state[k], sizeof(float) * (size_t)o->n);
            st = pt_allgather(d->gs.pc, tmp + o->offset, tmp, d->gs.shard_counts, PT_F32);
            if (st == PT_OK && ccnt)
                be->to_device(c->state[k] + (clo - c->offset), tmp + (clo - d->win_lo),
                              sizeof(float) * (size_t)ccnt);
        } else {
            if (ccnt)
                be->to_host(tmp + (clo - d->win_lo), c->state[k] + (clo - c->offset),
                            sizeof(float) * (size_t)ccnt);
            st = pt_allgather(d->gs.pc, tmp + (clo - d->win_lo), tmp, cnt, PT_F32);
            if (st == PT_OK)
                be->to_device(o->state[k], tmp + o->offset, sizeof(float) * (size_t)o->n);
        }
    }
    free(cnt), free(tmp);
    return st;
}

/* Checkpoints expect the optimizer state over the whole flat layout (ZeRO-1: this dp rank's
 * pt_shard_range of it): a stand-in in that layout, holding this stage's part (the others'
 * stay zero: this stage writes and reads only the tensors it owns). It costs the whole model's
 * optimizer state (or its dp shard) while it lives: from here to the end of the save (freed at
 * the next step) or of the load (ckpt_loaded). */
static pt_status pp_ckpt_state(pt_train_state *s, bool save, pt_optimizer **opt)
{
    pp_state *d = state_of(s);
    free_ckpt_opt(d);
    const bool zero = pt_train_zero_stage(s->cfg, s->dp_size) == 1;
    int64_t off, n;
    pt_shard_range(s->model.numel, zero ? s->dp_size : 1, zero ? s->dp_rank : 0, &off, &n);
    pt_status st = pt_optim_create(&d->ckpt_opt, &s->opt.cfg, s->model.be, n);
    d->have_ckpt_opt = st == PT_OK;
    PT_TRY(pt_agree(s->world, st, NULL));
    d->ckpt_opt.offset = off;
    d->ckpt_opt.t = s->opt.t;
    if (save) PT_TRY(move_ckpt_state(s, d, true));
    *opt = &d->ckpt_opt;
    return PT_OK;
}

static pt_status pp_ckpt_loaded(pt_train_state *s)
{
    pp_state *d = state_of(s);
    PT_TRY(move_ckpt_state(s, d, false));
    s->opt.t = d->ckpt_opt.t;
    free_ckpt_opt(d);
    return PT_OK;
}

static int pp_owns(const pt_train_state *s, int param)
{
    const pp_state *d = state_of(s);
    return d->owner[param] == d->stage;
}

static void pp_memory(const pt_train_state *s, pt_memory_bytes *mb)
{
    const pp_state *d = state_of(s);
    const pt_model *m = &s->model;
    memset(mb, 0, sizeof *mb);
    /* what this rank allocated: every parameter (evaluation and checkpoints read them all), the
     * gradients of its range and the micro-batches' accumulation buffer, the optimizer state of
     * its range (of its dp shard under ZeRO-1); at bf16/fp16 the 16-bit copy of every weight too */
    mb->param = pt_model_param_bytes(m) * (double)m->numel;
    mb->grad = 4.0 * (double)m->g_n * (m->g_pass ? 2.0 : 1.0) +
               (d->gs.gshard ? 4.0 * (double)d->gs.shard_count : 0.0);
    mb->optim = 4.0 * (double)s->opt.n * s->opt.nstates;
    /* the in-flight micro-batches' activations of this rank's nodes: a block each, or with
     * recompute one block and each one's stage input */
    for (int ci = 0; ci < d->V; ci++)
        mb->activation += d->recompute ? d->blk_bytes[ci] + d->in_bytes[ci] * d->inflight
                                       : d->blk_bytes[ci] * d->inflight;
    mb->sharded_optim = pt_train_zero_stage(s->cfg, s->dp_size) == 1;
}

static int pp_buckets(const pt_train_state *s) { return state_of(s)->gs.nbuckets; }

static int pp_rank_states(pt_train_state *s, const char **names, float **data, int max)
{
    (void)s, (void)names, (void)data, (void)max;
    return 0;
}

static void pp_reset_rank_states(pt_train_state *s) { (void)s; }

/* max |w - w of dp rank 0| over the parameters this stage owns, over the world */
static pt_status pp_replica_spread(pt_train_state *s, double *spread_out)
{
    pp_state *d = state_of(s);
    double spread = 0.0;
    if (s->dp_size > 1) {
        const int64_t n = s->model.numel;
        float *w = malloc(sizeof(float) * (size_t)(2 * n + 1));
        if (!w) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory to compare the replicas");
        s->model.be->to_host(w, s->model.w, sizeof(float) * (size_t)n);
        memcpy(w + n, w, sizeof(float) * (size_t)n);
        pt_status st = pt_mpi_bcast(w + n, (int)n, MPI_FLOAT, 0, s->dp->comm,
                                    "dp rank 0's parameters, to compare the replicas");
        for (int t = 0; t < s->model.nparams && st == PT_OK; t++) {
            if (d->owner[t] != d->stage) continue;
            const pt_param *p = &s->model.params[t];
            for (int64_t i = p->offset; i < p->offset + p->numel; i++) {
                const double dd = fabs((double)w[i] - (double)w[n + i]);
                if (!(dd <= spread)) spread = dd == dd ? dd : INFINITY;
            }
        }
        free(w);
        PT_TRY(st);
    }
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, &spread, 1, MPI_DOUBLE, MPI_MAX, s->world,
                            "the largest difference between the replicas"));
    *spread_out = spread;
    return PT_OK;
}

static void pp_teardown(pt_train_state *s)
{
    pp_state *d = state_of(s);
    if (!d) return;
    pt_grad_sync_free(&d->gs);
    free(d->mb_off), free(d->mb_rows);
    for (int ci = 0; ci < d->V; ci++) {
        pp_chunk *h = &d->ch[ci];
        free(h->recv_act), free(h->send_act), free(h->recv_grad), free(h->send_grad);
        free(h->rq_act), free(h->rq_grad), free(h->sq_act), free(h->sq_grad);
    }
    free(d->owner), free(d->shared_buf), free(d->spans);
    free_ckpt_opt(d);
    free(d->view);
    free(d);
    s->strategy_state = NULL;
}

const pt_step_strategy pt_strategy_pipeline = {
    .name = "pipeline",
    .setup = pp_setup,
    .forward_backward = pp_forward_backward,
    .sync = pp_sync,
    .grad_sum_squares = pp_grad_sum_squares,
    .clip = pp_clip,
    .update = pp_update,
    .memory = pp_memory,
    .buckets = pp_buckets,
    .rank_states = pp_rank_states,
    .reset_rank_states = pp_reset_rank_states,
    .replica_spread = pp_replica_spread,
    .teardown = pp_teardown,
    .gather = pp_gather,
    .owns = pp_owns,
    .ckpt_state = pp_ckpt_state,
    .ckpt_loaded = pp_ckpt_loaded,
};
