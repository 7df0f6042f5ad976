/* The parameter-server step strategy (issue 15; docs/ARCHITECTURE.md, "Parameter server").
 *
 * Roles: S server ranks (paratrain/ps.h: placement) own the key ranges of pt_ps_shard_keys and
 * hold the optimizer state of their range only; W = world - S workers split the global batch
 * as W data-parallel ranks would (pt_batch_share over the worker index). Every rank keeps a whole
 * copy of the parameters, which the servers refresh after each update, so evaluation, the loop's
 * end record and checkpoints see the authoritative parameters on every rank.
 *
 * Transport (--ps-transport): p2p, MPI_Isend / MPI_Irecv on a duplicate of the world, completed
 * by pt_wait_bounded (watchdog.h), which names a dead peer within PT_COLL_TIMEOUT; or rma,
 * one-sided: each server exposes a window of W push slots of its range (one per worker) and
 * then, under BSP, two copies of its range, under ASP/SSP W reply slots of its range; the
 * workers MPI_Put their gradient slices into their push slots and MPI_Get the updated range,
 * in one passive-target epoch (MPI_Win_lock_all) for the whole run. Who may read what, when, is
 * still said by messages through pt_wait_bounded, so a dead peer is named as on p2p and no
 * fence can hang: under BSP zero-byte notes ("my puts are flushed", "the range is ready"), under
 * ASP/SSP the p2p headers themselves (the push header is sent only after the puts are flushed,
 * the reply header only after the server copied the range into that worker's reply slot).
 * BSP's range is double-buffered by step parity: a server writes step t + 1's copy while a slow
 * reader may still get step t's, and it cannot reach step t + 2 before every worker has pushed
 * step t + 2, which each does only after its gets of step t + 1 completed. Under ASP/SSP a
 * worker's slots are rewritten only after that worker's next header: its push slot by itself
 * once its previous reply (and so the server's read of the slot) is in, its reply slot by the
 * server once the worker's gets of the previous reply are flushed (it sends no header before).
 *
 * BSP (this file's step): sync = every worker pushes its gradient slice to each server; each
 * server receives all W pushes of the step and sums them in worker order (the gradient of the
 * global batch: each worker's gradient is already scaled by 1/global batch); the gradient norm is
 * summed over the servers' ranges; update = each server steps its optimizer on its range and sends
 * the range to every other rank (the workers' pull, and the other servers' copy). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/agree.h"
#include "paratrain/ckpt.h"
#include "paratrain/fault.h"
#include "paratrain/log.h"
#include "paratrain/ps.h"
#include "paratrain/strategy.h"
#include "paratrain/watchdog.h"

enum { TAG_PUSH = 4101, TAG_PULL = 4102, TAG_STATE = 4103, TAG_HDR = 4104, TAG_RHDR = 4105 };

/* ASP/SSP message headers (int64): a worker's push or its end, and a server's reply */
enum { H_KIND, H_WORKER, H_CLOCK, H_VERSION, H_LR, H_LAST /* unused, 0 */, H_LEN };
enum { K_PUSH = 1, K_DONE = 2 };
enum { R_VERSION, R_MIN_CLOCK, R_STOP, R_LEN };
#define PS_HIST 64 /* staleness histogram bins; the last one counts everything beyond */

typedef struct {
    pt_ps_sync sync;
    int bound;
    int S, W;
    MPI_Comm comm;          /* a duplicate of the world: the PS messages' own context */
    int *server;            /* world rank of server k */
    int *worker;            /* world rank of worker w */
    int me_server, me_worker; /* this rank's index in its role, -1 in the other */
    int64_t *bounds;        /* S + 1: server k owns [bounds[k], bounds[k+1]) */
    float *stage;           /* server: W pushes of its range */
    MPI_Request *req;
    int *peer;
    pt_ps_transport transport;
    MPI_Win win;            /* rma: the servers' windows (workers expose none) */
    float *win_base;        /* rma, server: W * n pushes, then (BSP) 2 copies of its range of n,
                             * or (ASP/SSP) W reply slots of n (rma_slot) */
    int64_t rounds;         /* rma: updates so far in this run (the parity of the range copy) */
    uint64_t bytes_sent, bytes_recv;
    pt_optimizer ckpt_opt;  /* checkpoint stand-in: pt_shard_range(numel, world, rank) layout */
    bool have_ckpt_opt;
    /* ASP / SSP (ps_async.c) */
    int64_t version;        /* server: updates applied to its range in this run */
    int64_t (*hdr)[H_LEN];  /* worker: one push header per server */
    int64_t (*rhdr)[R_LEN]; /* worker: one reply header per server; server: one per worker */
    int64_t *seen_version;  /* worker: the version of each server's range it computes on */
    int64_t *clock, *want;  /* server: pushes received per worker; the clock a worker waits for */
    float *reply;           /* server: per worker, the range as sent (sends stay in flight) */
    MPI_Request *reply_req; /* server: 2 per worker */
    uint64_t hist[PS_HIST]; /* server: staleness of the pushes it applied */
    int64_t max_stale, pushes, target; /* server: pushes applied; the run's total */
    double busy_s, serve_s;
    /* BSP, worker with --metrics PATH: one ps_step record per step in PATH.worker<w> */
    FILE *wlog;
    double t_push, push_s;  /* this step's push: its start, its wall time */
} ps_state;

static ps_state *state_of(const pt_train_state *s) { return (ps_state *)s->strategy_state; }

static int64_t range_off(const ps_state *p, int k) { return p->bounds[k]; }
static int64_t range_n(const ps_state *p, int k) { return p->bounds[k + 1] - p->bounds[k]; }

/* rma: slot i of server k's window (n = range_n(p, k) floats each): 0..W-1 the workers' pushes,
 * then W + parity (BSP: the range, double-buffered) or W + w (ASP/SSP: worker w's reply) */
static MPI_Aint rma_slot(const ps_state *p, int k, int64_t i) { return (MPI_Aint)(i * range_n(p, k)); }

/* Roles and the batch share; before the model is built (the share sizes its batch). The same
 * answer on every rank. */
pt_status pt_ps_batch_share(pt_train_state *s)
{
    const pt_train_config *c = s->cfg;
    const int S = (int)c->ps_servers, world = s->world_size;
    pt_ps_sync sync;
    int bound;
    pt_ps_placement pl;
    PT_TRY(pt_ps_parse_sync(c->ps_sync, &sync, &bound));
    PT_TRY(pt_ps_parse_placement(c->ps_placement, &pl));
    if (S >= world)
        return PT_ERR(PT_ERR_ARG, "run more ranks than servers (mpirun -np > S)",
                      "--ps-servers %d leaves no worker among %d rank%s", S, world,
                      world == 1 ? "" : "s");
    const int W = world - S;
    if (c->batch < W)
        return PT_ERR(PT_ERR_ARG, "every worker needs at least one sample per step",
                      "--batch %lld is smaller than the %d workers", (long long)c->batch, W);
    int w = 0, me = -1;
    for (int r = 0, k = 0; r < world; r++) {
        if (k < S && pt_ps_server_rank(k, S, world, pl) == r) {
            k++;
            continue;
        }
        if (r == s->world_rank) me = w;
        w++;
    }
    if (me >= 0) pt_batch_share(c->batch, me, W, &s->batch.row_offset, &s->batch.rows);
    else s->batch.row_offset = 0, s->batch.rows = 0;
    return PT_OK;
}

/* rma: the windows, and one passive-target epoch on every target for the whole run */
static pt_status rma_open(ps_state *p)
{
    const int64_t n = p->me_server >= 0 ? range_n(p, p->me_server) : 0;
    const int slots = p->W + (p->sync == PT_PS_BSP ? 2 : p->W);
    const MPI_Aint bytes = (MPI_Aint)(sizeof(float) * (size_t)(n * slots));
    pt_watchdog_arm("MPI_Win_allocate", "the parameter server's RMA windows", -1);
    int rc = MPI_Win_allocate(bytes, (int)sizeof(float), MPI_INFO_NULL, p->comm, &p->win_base, &p->win);
    if (rc == MPI_SUCCESS) rc = MPI_Win_lock_all(MPI_MODE_NOCHECK, p->win);
    pt_watchdog_disarm();
    if (rc != MPI_SUCCESS)
        return PT_ERR(PT_ERR_MPI, "use --ps-transport p2p", "MPI_Win_allocate / MPI_Win_lock_all of %lld bytes failed",
                      (long long)bytes);
    if (p->me_server >= 0) free(p->stage), p->stage = p->win_base; /* the pushes land in the window */
    return PT_OK;
}

/* rma: completes this rank's puts and gets at every target. A flush waits on the targets (an
 * MPI implementation may need their progress), so it runs under the armed watchdog. */
static pt_status rma_flush(ps_state *p, const char *what)
{
    pt_watchdog_arm("MPI_Win_flush_all", what, p->S == 1 && p->me_server < 0 ? p->server[0] : -1);
    const int rc = MPI_Win_flush_all(p->win);
    pt_watchdog_disarm();
    PT_MPI_CHECK(rc);
    return PT_OK;
}

static void rma_close(ps_state *p)
{
    if (p->win == MPI_WIN_NULL) return;
    if (p->stage == p->win_base) p->stage = NULL;
    pt_watchdog_arm("MPI_Win_free", "the parameter server's RMA windows", -1);
    if (MPI_Win_unlock_all(p->win) != MPI_SUCCESS || MPI_Win_free(&p->win) != MPI_SUCCESS)
        pt_log_warn("MPI_Win_unlock_all / MPI_Win_free of the parameter server's windows failed");
    pt_watchdog_disarm();
}

/* zero-byte notes to (send) or from (recv) the given world ranks, completed through the watchdog */
static pt_status notes(ps_state *p, bool send, const int *ranks, int n, int tag, const char *what)
{
    for (int i = 0; i < n; i++) {
        if (send) PT_MPI_CHECK(MPI_Isend(NULL, 0, MPI_BYTE, ranks[i], tag, p->comm, &p->req[i]));
        else PT_MPI_CHECK(MPI_Irecv(NULL, 0, MPI_BYTE, ranks[i], tag, p->comm, &p->req[i]));
        p->peer[i] = ranks[i];
    }
    return pt_wait_bounded(n, p->req, p->peer, p->comm, send ? "MPI_Isend" : "MPI_Irecv", what);
}

static pt_status ps_setup(pt_train_state *s)
{
    const pt_train_config *c = s->cfg;
    pt_model *m = &s->model;
    ps_state *p = calloc(1, sizeof *p);
    if (!p) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the parameter-server state");
    s->strategy_state = p;
    p->comm = MPI_COMM_NULL;
    pt_ps_placement pl;
    pt_status st = pt_ps_parse_sync(c->ps_sync, &p->sync, &p->bound);
    if (st == PT_OK) st = pt_ps_parse_placement(c->ps_placement, &pl);
    if (st == PT_OK) st = pt_ps_parse_transport(c->ps_transport, &p->transport);
    p->win = MPI_WIN_NULL;
    if (st == PT_OK && strcmp(m->be->name, "cpu"))
        st = PT_ERR(PT_ERR_ARG, "train the parameter server with --backend cpu",
                    "--ps-servers moves host buffers; backend '%s' is not supported", m->be->name);
    if (st == PT_OK && pt_model_has_batchnorm(m))
        st = PT_ERR(PT_ERR_ARG, "train models without batch norm with --ps-servers",
                    "batch-norm running statistics live on the workers, not on the servers that "
                    "hold the parameters; '%s' has batch norm", c->model);
    if (st == PT_OK && p->sync != PT_PS_BSP && c->clip_norm > 0)
        st = PT_ERR(PT_ERR_ARG, "drop --clip-norm, or use --ps-sync bsp",
                    "--ps-sync %s applies each worker's gradient on its own: there is no global "
                    "gradient to clip", c->ps_sync);
    PT_TRY(pt_agree(s->world, st, NULL));
    p->S = (int)c->ps_servers, p->W = s->world_size - p->S;
    p->me_server = p->me_worker = -1;
    p->server = malloc(sizeof(int) * (size_t)p->S);
    p->worker = malloc(sizeof(int) * (size_t)p->W);
    p->bounds = malloc(sizeof(int64_t) * (size_t)(p->S + 1));
    /* requests in flight at once: a server's sends to every rank (world), a p2p ASP/SSP worker's
     * 4 per server (reply header and range, header and gradient) */
    const int npeer = s->world_size + 1 > 4 * p->S ? s->world_size + 1 : 4 * p->S;
    p->req = malloc(sizeof(MPI_Request) * (size_t)npeer);
    p->peer = malloc(sizeof(int) * (size_t)npeer);
    int64_t *toff = malloc(sizeof(int64_t) * (size_t)(m->nparams + 1));
    int64_t *tnum = malloc(sizeof(int64_t) * (size_t)(m->nparams + 1));
    if (!p->server || !p->worker || !p->bounds || !p->req || !p->peer || !toff || !tnum)
        st = PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the parameter-server tables");
    if (st == PT_OK) {
        for (int r = 0, k = 0, w = 0; r < s->world_size; r++) {
            if (k < p->S && pt_ps_server_rank(k, p->S, s->world_size, pl) == r) {
                if (r == s->world_rank) p->me_server = k;
                p->server[k++] = r;
            } else {
                if (r == s->world_rank) p->me_worker = w;
                p->worker[w++] = r;
            }
        }
        for (int i = 0; i < m->nparams; i++) toff[i] = m->params[i].offset, tnum[i] = m->params[i].numel;
        st = pt_ps_shard_keys(toff, tnum, m->nparams, m->numel, p->S, p->bounds);
    }
    free(toff), free(tnum);
    if (st == PT_OK && p->me_server >= 0) {
        const int64_t n = range_n(p, p->me_server);
        if (!(p->stage = malloc(sizeof(float) * (size_t)(n * p->W + 1))))
            st = PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the pushes of a server");
    }
    /* the optimizer state of the server's range only; a worker keeps none */
    if (st == PT_OK)
        st = p->me_server >= 0
                 ? pt_train_make_optimizer(s, range_off(p, p->me_server), range_n(p, p->me_server))
                 : pt_train_make_optimizer(s, 0, 0);
    PT_TRY(pt_agree(s->world, st, NULL));
    pt_watchdog_arm("MPI_Comm_dup", "the parameter server's communicator", -1);
    const int rc = MPI_Comm_dup(s->world, &p->comm);
    pt_watchdog_disarm();
    if (rc != MPI_SUCCESS) p->comm = MPI_COMM_NULL;
    st = rc == MPI_SUCCESS ? PT_OK : PT_ERR(PT_ERR_MPI, NULL, "MPI_Comm_dup failed for the parameter server");
    PT_TRY(pt_agree(s->world, st, NULL));
    if (p->transport == PT_PS_RMA) PT_TRY(pt_agree(s->world, rma_open(p), NULL));
    /* BSP: each worker's push and pull wall time per step (--metrics PATH: PATH.worker<w>; the
     * ASP/SSP steps write their own records there) */
    st = PT_OK;
    if (p->sync == PT_PS_BSP && p->me_worker >= 0 && c->metrics[0]) {
        char path[PT_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s.worker%d", c->metrics, p->me_worker);
        if (!(p->wlog = fopen(path, c->resume[0] ? "a" : "w")))
            st = PT_ERR(PT_ERR_IO, "check --metrics", "cannot write the worker log '%s'", path);
    }
    PT_TRY(pt_agree(s->world, st, NULL));
    if (!c->quiet && s->world_rank == 0) {
        char sync[32];
        snprintf(sync, sizeof sync, p->sync == PT_PS_BSP ? "bsp" : p->sync == PT_PS_ASP ? "asp" : "ssp:%d",
                 p->bound);
        pt_log_info("parameter server: %d server%s (%s), %d worker%s, %s; server 0 owns %lld of %lld "
                    "parameters",
                    p->S, p->S == 1 ? "" : "s", pl == PT_PS_SPREAD ? "spread" : "first", p->W,
                    p->W == 1 ? "" : "s", sync, (long long)range_n(p, 0), (long long)m->numel);
    }
    s->wire = PT_WIRE_DENSE;
    return PT_OK;
}

static pt_status ps_forward_backward(pt_train_state *s, bool have_rows, pt_step_report *r)
{
    const pt_train_config *c = s->cfg;
    const pt_train_batch *b = &s->batch;
    pt_model *m = &s->model;
    r->loss_sum = 0.0;
    r->status = PT_OK;
    if (state_of(s)->me_worker < 0) return PT_OK; /* a server computes nothing */
    pt_fwd_ctx ctx = {.train = 1, .seed = c->seed, .step = s->step, .row_offset = b->row_offset};
    if (have_rows && b->rows > 0) {
        pt_model_forward(m, b->x, (int)b->rows, &ctx);
        r->loss_sum = pt_model_loss_backward(m, b->y, (int)b->rows, &ctx, 1.0f / (float)c->batch, NULL);
        r->status = pt_model_status(m);
    } else {
        m->be->zero(m->g, sizeof(float) * (size_t)m->numel);
    }
    return PT_OK;
}

/* rma push: a worker puts its slice of each server's range into that server's window at its
 * worker slot, flushes (the data is at the target), then says so; a server waits for the W notes
 * and syncs its window's memory before reading. */
static pt_status rma_push(ps_state *p, pt_model *m, pt_step_report *r)
{
    if (p->me_worker >= 0) {
        for (int k = 0; k < p->S; k++) {
            const int64_t cnt = range_n(p, k);
            PT_MPI_CHECK(MPI_Put(m->g + range_off(p, k), (int)cnt, MPI_FLOAT, p->server[k],
                                 rma_slot(p, k, p->me_worker), (int)cnt, MPI_FLOAT, p->win));
            r->bytes_sent += sizeof(float) * (uint64_t)cnt;
        }
        PT_TRY(rma_flush(p, "a worker's gradient puts (BSP, rma)"));
        return notes(p, true, p->server, p->S, TAG_PUSH, "a worker's note that its gradient puts are flushed");
    }
    PT_TRY(notes(p, false, p->worker, p->W, TAG_PUSH, "the workers' gradient puts of a step (BSP, rma)"));
    r->bytes_recv += sizeof(float) * (uint64_t)(range_n(p, p->me_server) * p->W);
    PT_MPI_CHECK(MPI_Win_sync(p->win));
    return PT_OK;
}

/* rma pull: each server copies its updated range into its window (parity slot), syncs and tells
 * every other rank; each rank gets the other servers' ranges once told. */
static pt_status rma_pull(pt_train_state *s, ps_state *p)
{
    float *w = s->model.w;
    const int64_t par = p->rounds++ & 1;
    int n = 0;
    for (int k = 0; k < p->S; k++) /* the other servers' notes */
        if (k != p->me_server) {
            PT_MPI_CHECK(MPI_Irecv(NULL, 0, MPI_BYTE, p->server[k], TAG_PULL, p->comm, &p->req[n]));
            p->peer[n++] = p->server[k];
        }
    if (p->me_server >= 0) {
        const int k = p->me_server;
        const int64_t cnt = range_n(p, k);
        memcpy(p->win_base + rma_slot(p, k, p->W + par), w + range_off(p, k), sizeof(float) * (size_t)cnt);
        PT_MPI_CHECK(MPI_Win_sync(p->win));
        for (int r = 0; r < s->world_size; r++) {
            if (r == s->world_rank) continue;
            PT_MPI_CHECK(MPI_Isend(NULL, 0, MPI_BYTE, r, TAG_PULL, p->comm, &p->req[n]));
            p->peer[n++] = r;
        }
    }
    PT_TRY(pt_wait_bounded(n, p->req, p->peer, p->comm, "MPI_Isend/MPI_Irecv",
                           "the servers' notes that their updated ranges are ready (BSP, rma)"));
    for (int k = 0; k < p->S; k++) {
        if (k == p->me_server) continue;
        const int64_t cnt = range_n(p, k);
        PT_MPI_CHECK(MPI_Get(w + range_off(p, k), (int)cnt, MPI_FLOAT, p->server[k],
                             rma_slot(p, k, p->W + par), (int)cnt, MPI_FLOAT, p->win));
        p->bytes_recv += sizeof(float) * (uint64_t)cnt;
    }
    return rma_flush(p, "a rank's gets of the updated ranges (BSP, rma)");
}

/* Push (BSP): workers send each server its slice; a server sums the W pushes in worker order. */
static pt_status ps_sync(pt_train_state *s, pt_step_report *r)
{
    ps_state *p = state_of(s);
    pt_model *m = &s->model;
    const double t0 = pt_now();
    p->t_push = t0;
    int n = 0;
    if (p->transport == PT_PS_RMA) {
        PT_TRY(rma_push(p, m, r));
    } else if (p->me_worker >= 0) {
        for (int k = 0; k < p->S; k++) {
            PT_MPI_CHECK(MPI_Isend(m->g + range_off(p, k), (int)range_n(p, k), MPI_FLOAT,
                                   p->server[k], TAG_PUSH, p->comm, &p->req[n]));
            p->peer[n++] = p->server[k];
            r->bytes_sent += sizeof(float) * (uint64_t)range_n(p, k);
        }
        PT_TRY(pt_wait_bounded(n, p->req, p->peer, p->comm, "MPI_Isend",
                               "a worker's gradient push to the servers"));
    } else {
        const int k = p->me_server;
        const int64_t cnt = range_n(p, k);
        for (int w = 0; w < p->W; w++) {
            PT_MPI_CHECK(MPI_Irecv(p->stage + (int64_t)w * cnt, (int)cnt, MPI_FLOAT, p->worker[w],
                                   TAG_PUSH, p->comm, &p->req[n]));
            p->peer[n++] = p->worker[w];
            r->bytes_recv += sizeof(float) * (uint64_t)cnt;
        }
        PT_TRY(pt_wait_bounded(n, p->req, p->peer, p->comm, "MPI_Irecv",
                               "the workers' gradient pushes of a step (BSP)"));
    }
    if (p->me_server >= 0) {
        const int k = p->me_server;
        const int64_t cnt = range_n(p, k);
        /* the gradient of the global batch, summed in worker order */
        float *g = m->g + range_off(p, k);
        memcpy(g, p->stage, sizeof(float) * (size_t)cnt);
        for (int w = 1; w < p->W; w++) {
            const float *x = p->stage + (int64_t)w * cnt;
            for (int64_t i = 0; i < cnt; i++) g[i] += x[i];
        }
    }
    r->comm_wait_s = p->push_s = pt_now() - t0;
    r->sent_elems = (double)m->numel;
    p->bytes_sent += r->bytes_sent, p->bytes_recv += r->bytes_recv;
    return PT_OK;
}

static pt_status ps_grad_sum_squares(pt_train_state *s, double *ss)
{
    ps_state *p = state_of(s);
    double sum = 0.0;
    if (p->me_server >= 0)
        sum = s->model.be->sum_squares(s->model.g + range_off(p, p->me_server), range_n(p, p->me_server));
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, s->world,
                            "the gradient norm over the servers' ranges"));
    *ss = sum;
    return PT_OK;
}

static void ps_clip(pt_train_state *s, double norm, double max_norm)
{
    ps_state *p = state_of(s);
    if (p->me_server < 0) return;
    pt_clip_grad_scale(s->model.be, s->model.g + range_off(p, p->me_server), range_n(p, p->me_server),
                       norm, max_norm);
}

/* The servers' ranges to every other rank: each rank's copy of the parameters whole again. */
static pt_status broadcast_ranges(pt_train_state *s, const char *what)
{
    ps_state *p = state_of(s);
    float *w = s->model.w;
    int n = 0;
    for (int k = 0; k < p->S; k++) {
        if (k == p->me_server) continue;
        PT_MPI_CHECK(MPI_Irecv(w + range_off(p, k), (int)range_n(p, k), MPI_FLOAT, p->server[k],
                               TAG_PULL, p->comm, &p->req[n]));
        p->peer[n++] = p->server[k];
        p->bytes_recv += sizeof(float) * (uint64_t)range_n(p, k);
    }
    if (p->me_server >= 0) {
        const int k = p->me_server;
        for (int r = 0; r < s->world_size; r++) {
            if (r == s->world_rank) continue;
            PT_MPI_CHECK(MPI_Isend(w + range_off(p, k), (int)range_n(p, k), MPI_FLOAT, r, TAG_PULL,
                                   p->comm, &p->req[n]));
            p->peer[n++] = r;
        }
    }
    return pt_wait_bounded(n, p->req, p->peer, p->comm, "MPI_Isend/MPI_Irecv", what);
}

static pt_status ps_update(pt_train_state *s, float lr)
{
    ps_state *p = state_of(s);
    const double t0 = pt_now();
    if (p->me_server >= 0) {
        const int64_t off = range_off(p, p->me_server);
        pt_optim_step(&s->opt, s->model.w + off, s->model.g + off, lr);
    } else {
        s->opt.t++; /* the update count, alike on every rank (a checkpoint attribute) */
    }
    PT_TRY(p->transport == PT_PS_RMA
               ? rma_pull(s, p)
               : broadcast_ranges(s, "the parameters the servers updated (the workers' pull, BSP)"));
    /* push: sync's wait; pull: from here until the range is in; exchange: from the push's start
     * to the pull's end (also the loop's loss allreduce and the servers' sum in between) */
    const double t1 = pt_now();
    if (p->wlog)
        fprintf(p->wlog,
                "{\"event\": \"ps_step\", \"worker\": %d, \"rank\": %d, \"step\": %lld, "
                "\"sync\": \"bsp\", \"transport\": \"%s\", \"push_s\": %.6f, \"pull_s\": %.6f, "
                "\"exchange_s\": %.6f}\n",
                p->me_worker, s->world_rank, (long long)s->step,
                p->transport == PT_PS_RMA ? "rma" : "p2p", p->push_s, t1 - t0, t1 - p->t_push);
    return PT_OK;
}

static void ps_memory(const pt_train_state *s, pt_memory_bytes *mb)
{
    const ps_state *p = state_of(s);
    memset(mb, 0, sizeof *mb);
    mb->param = pt_model_param_bytes(&s->model) * (double)s->model.numel;
    mb->activation = (double)pt_model_block_bytes(&s->model, s->model.max_batch);
    /* a server's staging: W pushes (p2p), or its whole window (rma: W pushes and 2 or W ranges) */
    const int slots = p->transport == PT_PS_RMA ? p->W + (p->sync == PT_PS_BSP ? 2 : p->W) : p->W;
    mb->grad = 4.0 * (double)s->model.numel + (p->me_server >= 0 ? 4.0 * (double)range_n(p, p->me_server) * slots : 0.0);
    mb->optim = 4.0 * (double)s->opt.n * s->opt.nstates;
    mb->sharded_optim = 1;
}

static int ps_buckets(const pt_train_state *s)
{
    (void)s;
    return 0;
}

static int ps_rank_states(pt_train_state *s, const char **names, float **data, int max)
{
    (void)s, (void)names, (void)data, (void)max;
    return 0;
}

static void ps_reset_rank_states(pt_train_state *s) { (void)s; }

/* max |w - w of rank 0| over ranks and elements: every copy is refreshed from the servers, so
 * they agree bitwise. */
static pt_status ps_replica_spread(pt_train_state *s, double *spread_out)
{
    const int64_t n = s->model.numel;
    double spread = 0.0;
    float *w = malloc(sizeof(float) * (size_t)(2 * n + 1));
    if (!w) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory to compare the replicas");
    memcpy(w, s->model.w, sizeof(float) * (size_t)n);
    memcpy(w + n, w, sizeof(float) * (size_t)n);
    pt_status st = pt_mpi_bcast(w + n, (int)n, MPI_FLOAT, 0, s->world,
                                "rank 0's parameters, to compare the copies");
    for (int64_t i = 0; i < n && st == PT_OK; i++) {
        const double d = fabs((double)w[i] - (double)w[n + i]);
        if (!(d <= spread)) spread = d == d ? d : INFINITY;
    }
    free(w);
    PT_TRY(st);
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, &spread, 1, MPI_DOUBLE, MPI_MAX, s->world,
                            "the largest difference between the copies"));
    *spread_out = spread;
    return PT_OK;
}

/* Moves optimizer state between the servers' ranges and the checkpoint layout (rank r holds
 * pt_shard_range(numel, world, r)): to_ckpt from the servers into ckpt_opt, else back. */
static pt_status move_state(pt_train_state *s, bool to_ckpt)
{
    ps_state *p = state_of(s);
    pt_optimizer *o = &s->opt, *c = &p->ckpt_opt;
    const int64_t numel = s->model.numel;
    const int world = s->world_size, me = s->world_rank;
    for (int st = 0; st < o->nstates; st++) {
        int n = 0;
        /* this rank's checkpoint slice from (or to) every server overlapping it */
        for (int k = 0; k < p->S; k++) {
            const int64_t lo = range_off(p, k) > c->offset ? range_off(p, k) : c->offset;
            const int64_t hi0 = range_off(p, k) + range_n(p, k), hi1 = c->offset + c->n;
            const int64_t hi = hi0 < hi1 ? hi0 : hi1;
            if (lo >= hi) continue;
            float *dst = c->state[st] + (lo - c->offset);
            if (k == p->me_server) { /* local part */
                float *src = o->state[st] + (lo - o->offset);
                if (to_ckpt) memcpy(dst, src, sizeof(float) * (size_t)(hi - lo));
                else memcpy(src, dst, sizeof(float) * (size_t)(hi - lo));
                continue;
            }
            if (to_ckpt)
                PT_MPI_CHECK(MPI_Irecv(dst, (int)(hi - lo), MPI_FLOAT, p->server[k], TAG_STATE,
                                       p->comm, &p->req[n]));
            else
                PT_MPI_CHECK(MPI_Isend(dst, (int)(hi - lo), MPI_FLOAT, p->server[k], TAG_STATE,
                                       p->comm, &p->req[n]));
            p->peer[n++] = p->server[k];
        }
        /* a server: its range to (or from) every other rank's checkpoint slice */
        if (p->me_server >= 0) {
            for (int r = 0; r < world; r++) {
                if (r == me) continue;
                int64_t so, sn;
                pt_shard_range(numel, world, r, &so, &sn);
                const int64_t lo = range_off(p, p->me_server) > so ? range_off(p, p->me_server) : so;
                const int64_t hi0 = o->offset + o->n, hi = hi0 < so + sn ? hi0 : so + sn;
                if (lo >= hi) continue;
                float *src = o->state[st] + (lo - o->offset);
                if (to_ckpt)
                    PT_MPI_CHECK(MPI_Isend(src, (int)(hi - lo), MPI_FLOAT, r, TAG_STATE, p->comm,
                                           &p->req[n]));
                else
                    PT_MPI_CHECK(MPI_Irecv(src, (int)(hi - lo), MPI_FLOAT, r, TAG_STATE, p->comm,
                                           &p->req[n]));
                p->peer[n++] = r;
            }
        }
        PT_TRY(pt_wait_bounded(n, p->req, p->peer, p->comm, "MPI_Isend/MPI_Irecv",
                               "optimizer state between the servers and the checkpoint layout"));
    }
    return PT_OK;
}

/* The checkpoint's optimizer: a stand-in in pt_shard_range layout (what pt_ckpt_save_dist and
 * pt_ckpt_load_dist expect of world rank r), filled from the servers when saving. */
static pt_status ps_ckpt_state(pt_train_state *s, bool save, pt_optimizer **opt)
{
    ps_state *p = state_of(s);
    pt_status st = PT_OK;
    if (!p->have_ckpt_opt) {
        int64_t off, n;
        pt_shard_range(s->model.numel, s->world_size, s->world_rank, &off, &n);
        st = pt_optim_create(&p->ckpt_opt, &s->opt.cfg, s->model.be, n);
        p->ckpt_opt.offset = off;
        p->have_ckpt_opt = st == PT_OK;
    }
    PT_TRY(pt_agree(s->world, st, NULL));
    if (save) {
        PT_TRY(move_state(s, true));
        /* updates taken: a collective attribute, so world rank 0's (always a server) */
        int64_t t = s->opt.t;
        PT_TRY(pt_mpi_bcast(&t, 1, MPI_INT64_T, 0, s->world, "the optimizer's update count"));
        p->ckpt_opt.t = t;
    }
    *opt = &p->ckpt_opt;
    return PT_OK;
}

/* After a load into the stand-in: the state back to the servers' ranges. */
static pt_status ps_ckpt_loaded(pt_train_state *s)
{
    ps_state *p = state_of(s);
    PT_TRY(move_state(s, false));
    s->opt.t = p->ckpt_opt.t;
    p->version = 0;
    return PT_OK;
}

static void ps_teardown(pt_train_state *s)
{
    ps_state *p = state_of(s);
    if (!p) return;
    /* teardown cannot fail the run (it has ended); a failed free is only reported */
    rma_close(p);
    if (p->wlog) fclose(p->wlog);
    if (p->comm != MPI_COMM_NULL && MPI_Comm_free(&p->comm) != MPI_SUCCESS)
        pt_log_warn("MPI_Comm_free of the parameter server's communicator failed");
    if (p->have_ckpt_opt) pt_optim_destroy(&p->ckpt_opt);
    free(p->server), free(p->worker), free(p->bounds), free(p->stage), free(p->req), free(p->peer);
    free(p->hdr), free(p->rhdr), free(p->seen_version), free(p->clock), free(p->want);
    free(p->reply), free(p->reply_req);
    free(p);
    s->strategy_state = NULL;
}

/* ---- ASP and SSP: no lockstep. Workers compute, push (with the clock, i.e. the step, and the
 * server version they computed on) and wait for their pull; servers apply each push when it
 * arrives (one optimizer step per push) and answer a worker's pull for clock c at once (ASP) or
 * once every worker has pushed clock c - s - 1 (SSP: min clock >= c - s). The pull request rides
 * on the push, so a server never applies another push between "allowed" and "answered".
 * Over rma the headers are the same messages; only the gradient and the range move one-sided
 * (the gradient put into the worker's push slot before its header, the range got from the
 * worker's reply slot after the reply header), so the consistency logic is p2p's, line for line. */

static pt_status async_alloc(pt_train_state *s, ps_state *p, int64_t end)
{
    const int64_t n = p->me_server >= 0 ? range_n(p, p->me_server) : 0;
    p->hdr = calloc((size_t)p->S, sizeof *p->hdr);
    p->rhdr = calloc((size_t)(p->S > p->W ? p->S : p->W), sizeof *p->rhdr);
    p->seen_version = calloc((size_t)p->S, sizeof(int64_t));
    p->clock = calloc((size_t)p->W, sizeof(int64_t));
    p->want = calloc((size_t)p->W, sizeof(int64_t));
    /* p2p: the ranges as sent; rma: the window's reply slots hold them */
    p->reply = malloc(sizeof(float) * (size_t)(p->transport == PT_PS_RMA ? 1 : n * p->W + 1));
    p->reply_req = malloc(sizeof(MPI_Request) * (size_t)(2 * p->W));
    if (!p->hdr || !p->rhdr || !p->seen_version || !p->clock || !p->want || !p->reply || !p->reply_req)
        return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the asynchronous parameter server");
    for (int i = 0; i < 2 * p->W; i++) p->reply_req[i] = MPI_REQUEST_NULL;
    for (int w = 0; w < p->W; w++) p->clock[w] = s->step, p->want[w] = -1;
    memset(p->hist, 0, sizeof p->hist);
    p->version = p->max_stale = p->pushes = 0;
    /* the run is as many gradients as W lockstep workers would compute: fast workers may do
     * more clocks than the straggler */
    p->target = (int64_t)p->W * (end > s->step ? end - s->step : 0);
    p->busy_s = p->serve_s = 0.0;
    return PT_OK;
}

static int64_t min_clock(const ps_state *p)
{
    int64_t m = INT64_MAX;
    for (int w = 0; w < p->W; w++)
        if (p->clock[w] < m) m = p->clock[w];
    return m;
}

/* Server: answers the pulls the consistency model allows now. */
static pt_status answer_pulls(pt_train_state *s, ps_state *p)
{
    const int64_t mc = min_clock(p), off = range_off(p, p->me_server), n = range_n(p, p->me_server);
    const bool stop = p->pushes >= p->target; /* the run's gradients are in: no more computing */
    const bool rma = p->transport == PT_PS_RMA;
    for (int w = 0; w < p->W; w++) {
        if (p->want[w] < 0) continue;
        /* SSP: computing at clock c needs every update of clocks <= c - s - 1 */
        if (p->sync == PT_PS_SSP && !stop && mc < p->want[w] - p->bound) continue;
        PT_TRY(pt_wait_bounded(2, p->reply_req + 2 * w, NULL, p->comm, "MPI_Isend",
                               "the previous reply to a worker"));
        /* rma: worker w's reply slot; it is not reading it (its gets of the previous reply were
         * flushed before it sent the header that set want[w]) */
        float *buf = rma ? p->win_base + rma_slot(p, p->me_server, p->W + w) : p->reply + (int64_t)w * n;
        memcpy(buf, s->model.w + off, sizeof(float) * (size_t)n);
        if (rma) PT_MPI_CHECK(MPI_Win_sync(p->win)); /* the stores visible before the header */
        p->rhdr[w][R_VERSION] = p->version, p->rhdr[w][R_MIN_CLOCK] = mc, p->rhdr[w][R_STOP] = stop;
        PT_MPI_CHECK(MPI_Isend(p->rhdr[w], R_LEN, MPI_INT64_T, p->worker[w], TAG_RHDR, p->comm,
                               &p->reply_req[2 * w]));
        if (!rma)
            PT_MPI_CHECK(MPI_Isend(buf, (int)n, MPI_FLOAT, p->worker[w], TAG_PULL, p->comm,
                                   &p->reply_req[2 * w + 1]));
        p->bytes_sent += sizeof(float) * (uint64_t)n;
        p->want[w] = -1;
    }
    return PT_OK;
}

/* Server: the next header from any worker not yet done (one receive posted per worker), bounded:
 * no header for PT_COLL_TIMEOUT names the workers it was waiting on. */
static pt_status next_header(ps_state *p, MPI_Request *hreq, int *w_out)
{
    const double limit = pt_watchdog_timeout();
    double last = pt_now();
    for (;;) {
        int idx = MPI_UNDEFINED, flag = 0;
        PT_MPI_CHECK(MPI_Testany(p->W, hreq, &idx, &flag, MPI_STATUS_IGNORE));
        if (flag && idx != MPI_UNDEFINED) {
            *w_out = idx;
            return PT_OK;
        }
        if (pt_watchdog_peer_lost()) return PT_ERR(PT_ERR_MPI, NULL, "%s", pt_watchdog_message());
        if (limit > 0 && pt_now() - last >= limit) {
            int k = 0;
            for (int w = 0; w < p->W; w++)
                if (hreq[w] != MPI_REQUEST_NULL) p->peer[k++] = p->worker[w];
            return pt_watchdog_fail(__FILE__, __LINE__, p->comm, "MPI_Irecv",
                                    "the next push from the workers (asynchronous parameter server)",
                                    p->peer, k);
        }
    }
}

/* Server: serves pushes until every worker has said it is done. */
static pt_status serve(pt_train_state *s, ps_state *p)
{
    const int64_t off = range_off(p, p->me_server), n = range_n(p, p->me_server);
    const double t_start = pt_now();
    int64_t (*h)[H_LEN] = calloc((size_t)p->W, sizeof *h);
    MPI_Request *hreq = malloc(sizeof(MPI_Request) * (size_t)p->W);
    if (!h || !hreq) {
        free(h), free(hreq);
        return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the server's headers");
    }
    /* leaked on a lost peer: its receive may still be pending (watchdog.h) */
    for (int w = 0; w < p->W; w++)
        PT_MPI_CHECK(MPI_Irecv(h[w], H_LEN, MPI_INT64_T, p->worker[w], TAG_HDR, p->comm, &hreq[w]));
    int done = 0;
    while (done < p->W) {
        int w = -1;
        PT_TRY(next_header(p, hreq, &w));
        const double t0 = pt_now();
        int64_t hd[H_LEN];
        memcpy(hd, h[w], sizeof hd);
        if (hd[H_WORKER] != w)
            return PT_ERR(PT_ERR_INTERNAL, NULL, "a push of worker %d names worker %lld", w,
                          (long long)hd[H_WORKER]);
        if (hd[H_KIND] == K_DONE) {
            done++;
            p->clock[w] = INT64_MAX; /* holds no one back any more */
            /* a worker done before the run's total (preempted): everyone stops now */
            if (p->pushes < p->target) p->target = p->pushes;
        } else {
            const float *grad = p->stage;
            if (p->transport == PT_PS_RMA) {
                /* the worker flushed its puts into its push slot before sending the header */
                PT_MPI_CHECK(MPI_Win_sync(p->win));
                grad = p->stage + rma_slot(p, p->me_server, w);
            } else {
                int peer = p->worker[w];
                PT_MPI_CHECK(MPI_Irecv(p->stage, (int)n, MPI_FLOAT, peer, TAG_PUSH, p->comm, &p->req[0]));
                PT_TRY(pt_wait_bounded(1, p->req, &peer, p->comm, "MPI_Irecv", "a worker's gradient push"));
            }
            p->bytes_recv += sizeof(float) * (uint64_t)n;
            const int64_t stale = p->version - hd[H_VERSION];
            p->hist[stale < PS_HIST - 1 ? (stale < 0 ? 0 : stale) : PS_HIST - 1]++;
            if (stale > p->max_stale) p->max_stale = stale;
            float lr;
            memcpy(&lr, &hd[H_LR], sizeof lr);
            pt_optim_step(&s->opt, s->model.w + off, grad, lr);
            p->version++, p->pushes++;
            p->clock[w] = hd[H_CLOCK] + 1;
            p->want[w] = hd[H_CLOCK] + 1;
            PT_MPI_CHECK(MPI_Irecv(h[w], H_LEN, MPI_INT64_T, p->worker[w], TAG_HDR, p->comm, &hreq[w]));
        }
        PT_TRY(answer_pulls(s, p));
        p->busy_s += pt_now() - t0;
    }
    free(h), free(hreq);
    PT_TRY(pt_wait_bounded(2 * p->W, p->reply_req, NULL, p->comm, "MPI_Isend",
                           "the last replies to the workers"));
    p->serve_s = pt_now() - t_start;
    return PT_OK;
}

/* Worker: sends header (and gradient) to every server; for a push, receives each server's
 * reply straight into the parameters (*stop: server 0 says the run's gradients are in).
 * rma: the gradient is put into the worker's push slot and flushed before the header goes, and
 * the range is got from its reply slot once the reply header is in. */
static pt_status exchange(pt_train_state *s, ps_state *p, int kind, int64_t clock, float lr,
                          int64_t *mc, bool *stop)
{
    float *w = s->model.w, *g = s->model.g;
    const bool reply = kind == K_PUSH, rma = p->transport == PT_PS_RMA;
    int n = 0;
    if (rma && kind == K_PUSH) {
        for (int k = 0; k < p->S; k++) {
            PT_MPI_CHECK(MPI_Put(g + range_off(p, k), (int)range_n(p, k), MPI_FLOAT, p->server[k],
                                 rma_slot(p, k, p->me_worker), (int)range_n(p, k), MPI_FLOAT, p->win));
            p->bytes_sent += sizeof(float) * (uint64_t)range_n(p, k);
        }
        PT_TRY(rma_flush(p, "a worker's gradient puts (asynchronous parameter server, rma)"));
    }
    for (int k = 0; k < p->S; k++) {
        if (reply) {
            PT_MPI_CHECK(MPI_Irecv(p->rhdr[k], R_LEN, MPI_INT64_T, p->server[k], TAG_RHDR, p->comm,
                                   &p->req[n]));
            p->peer[n++] = p->server[k];
            if (!rma) {
                PT_MPI_CHECK(MPI_Irecv(w + range_off(p, k), (int)range_n(p, k), MPI_FLOAT,
                                       p->server[k], TAG_PULL, p->comm, &p->req[n]));
                p->peer[n++] = p->server[k];
            }
        }
        int64_t *h = p->hdr[k];
        h[H_KIND] = kind, h[H_WORKER] = p->me_worker, h[H_CLOCK] = clock;
        h[H_VERSION] = p->seen_version[k], h[H_LAST] = 0;
        h[H_LR] = 0;
        memcpy(&h[H_LR], &lr, sizeof lr);
        PT_MPI_CHECK(MPI_Isend(h, H_LEN, MPI_INT64_T, p->server[k], TAG_HDR, p->comm, &p->req[n]));
        p->peer[n++] = p->server[k];
        if (kind == K_PUSH && !rma) {
            PT_MPI_CHECK(MPI_Isend(g + range_off(p, k), (int)range_n(p, k), MPI_FLOAT, p->server[k],
                                   TAG_PUSH, p->comm, &p->req[n]));
            p->peer[n++] = p->server[k];
            p->bytes_sent += sizeof(float) * (uint64_t)range_n(p, k);
        }
    }
    PT_TRY(pt_wait_bounded(n, p->req, p->peer, p->comm, "MPI_Isend/MPI_Irecv",
                           kind == K_PUSH ? "a worker's push and pull (asynchronous parameter server)"
                                          : "a worker's end of training"));
    if (rma && reply) {
        /* each server copied its range into this worker's reply slot before its reply header */
        for (int k = 0; k < p->S; k++)
            PT_MPI_CHECK(MPI_Get(w + range_off(p, k), (int)range_n(p, k), MPI_FLOAT, p->server[k],
                                 rma_slot(p, k, p->W + p->me_worker), (int)range_n(p, k), MPI_FLOAT,
                                 p->win));
        PT_TRY(rma_flush(p, "a worker's gets of its reply slots (asynchronous parameter server, rma)"));
    }
    *mc = INT64_MAX;
    *stop = reply && p->rhdr[0][R_STOP]; /* server 0 decides the end, alike for every worker */
    for (int k = 0; reply && k < p->S; k++) {
        p->seen_version[k] = p->rhdr[k][R_VERSION];
        if (p->rhdr[k][R_MIN_CLOCK] < *mc) *mc = p->rhdr[k][R_MIN_CLOCK];
        p->bytes_recv += sizeof(float) * (uint64_t)range_n(p, k);
    }
    return PT_OK;
}

/* Worker: its steps, one log line each (--metrics PATH: PATH.worker<w>). */
static pt_status work(pt_train_state *s, ps_state *p, int64_t end, volatile const sig_atomic_t *preempt,
                      bool *stopped, double *samples)
{
    const pt_train_config *c = s->cfg;
    FILE *log = NULL;
    if (c->metrics[0]) {
        char path[PT_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s.worker%d", c->metrics, p->me_worker);
        if (!(log = fopen(path, c->resume[0] ? "a" : "w")))
            return PT_ERR(PT_ERR_IO, "check --metrics", "cannot write the worker log '%s'", path);
    }
    pt_status st = PT_OK;
    int64_t mc = s->step; /* every worker starts from the same parameters */
    const int64_t first = s->step;
    const double t_start = pt_now();
    bool stop = s->step >= end;
    while (!stop && st == PT_OK) {
        if (*preempt) {
            *stopped = true;
            break;
        }
        pt_fault_stop_point("step", s->step); /* PT_FAULT_STOP=R:STEP:step (tests/test_ps.sh) */
        const double t0 = pt_now();
        pt_fault_delay("step-delay", s->world_rank);
        pt_fault_slow(s->world_rank, s->step); /* PT_FAULT_INJECT=slow:RANK:MS[:PERIOD:PHASE] */
        st = pt_train_read_batch(s);
        pt_step_report r = {0};
        if (st == PT_OK) st = ps_forward_backward(s, true, &r);
        if (st == PT_OK && r.status != PT_OK) st = r.status;
        const double loss = r.loss_sum / (double)s->batch.rows;
        if (st == PT_OK && !isfinite(loss))
            st = PT_ERR(PT_ERR_DATA, "lower --lr", "training diverged on worker %d: loss %g at step %lld",
                        p->me_worker, loss, (long long)s->step);
        const int64_t clock = s->step, bound_mc = mc;
        const double t1 = pt_now();
        if (st == PT_OK)
            st = exchange(s, p, K_PUSH, clock, pt_schedule_lr(&s->sched, clock), &mc, &stop);
        const double t2 = pt_now();
        if (log && st == PT_OK)
            fprintf(log,
                    "{\"event\": \"ps_step\", \"worker\": %d, \"rank\": %d, \"step\": %lld, "
                    "\"clock\": %lld, \"min_clock\": %lld, \"bound\": %d, \"sync\": \"%s\", "
                    "\"loss\": %.6f, \"compute_s\": %.6f, \"wait_s\": %.6f, \"time_s\": %.4f}\n",
                    p->me_worker, s->world_rank, (long long)clock, (long long)clock,
                    (long long)bound_mc, p->sync == PT_PS_SSP ? p->bound : -1,
                    p->sync == PT_PS_SSP ? "ssp" : "asp", loss, t1 - t0, t2 - t1, t2 - t_start);
        if (st == PT_OK) s->step++;
    }
    if (log) fclose(log);
    *samples = (double)s->batch.rows * (double)(s->step - first) / (pt_now() - t_start + 1e-12);
    PT_TRY(st);
    int64_t unused;
    bool no;
    return exchange(s, p, K_DONE, s->step, 0.0f, &unused, &no);
}

static pt_status ps_run_steps(pt_train_state *s, int64_t end, volatile const sig_atomic_t *preempt,
                              bool *preempted, pt_train_progress *prog)
{
    ps_state *p = state_of(s);
    const int64_t start = s->step;
    const double t0 = pt_now();
    PT_TRY(async_alloc(s, p, end));
    bool stopped = false;
    double samples = 0.0;
    if (p->me_server >= 0) PT_TRY(serve(s, p));
    else PT_TRY(work(s, p, end, preempt, &stopped, &samples));
    /* together again: the step the run reached (end, or when preempted the pushes applied over
     * W: the steps of as many lockstep workers), the parameters whole on every rank, the run's
     * statistics */
    int64_t st[2] = {p->pushes, stopped ? 1 : 0};
    PT_TRY(pt_mpi_bcast(&st[0], 1, MPI_INT64_T, 0, s->world, "the pushes the servers applied"));
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, &st[1], 1, MPI_INT64_T, MPI_MAX, s->world,
                            "whether a worker was preempted"));
    *preempted = st[1] > 0;
    s->step = *preempted ? start + st[0] / p->W : end;
    if (s->step > end) s->step = end;
    PT_TRY(broadcast_ranges(s, "the servers' final parameters (asynchronous run)"));
    double stats[PS_HIST + 6];
    for (int i = 0; i < PS_HIST; i++) stats[i] = (double)p->hist[i];
    stats[PS_HIST] = (double)p->pushes;
    stats[PS_HIST + 1] = p->serve_s > 0 ? p->busy_s / p->serve_s : 0.0;
    stats[PS_HIST + 2] = (double)p->bytes_sent;
    stats[PS_HIST + 3] = (double)p->bytes_recv;
    stats[PS_HIST + 4] = samples;
    stats[PS_HIST + 5] = (double)p->max_stale;
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, stats, PS_HIST + 5, MPI_DOUBLE, MPI_SUM, s->world,
                            "the parameter servers' statistics"));
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, &stats[PS_HIST + 5], 1, MPI_DOUBLE, MPI_MAX, s->world,
                            "the largest staleness"));
    double *per = malloc(sizeof(double) * (size_t)s->world_size);
    if (!per) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the workers' throughput");
    pt_status rc = pt_mpi_allgather(&samples, 1, MPI_DOUBLE, per, s->world, "the workers' samples/s");
    if (rc == PT_OK) {
        char hist[PS_HIST * 12], sps[1024];
        int last = 0, o = 0;
        for (int i = 0; i < PS_HIST; i++)
            if (stats[i] > 0) last = i;
        for (int i = 0; i <= last; i++)
            o += snprintf(hist + o, sizeof hist - (size_t)o, "%s%.0f", i ? ", " : "", stats[i]);
        o = 0;
        for (int w = 0; w < p->W && o < (int)sizeof sps - 32; w++)
            o += snprintf(sps + o, sizeof sps - (size_t)o, "%s%.1f", w ? ", " : "", per[p->worker[w]]);
        /* per server: pushes / S; busy: the servers' mean fraction of their serving time */
        pt_metrics_write(&s->metrics, "ps",
                         "\"step\": %lld, \"sync\": \"%s\", \"bound\": %d, \"servers\": %d, "
                         "\"workers\": %d, \"pushes_applied\": %.0f, \"staleness_hist\": [%s], "
                         "\"staleness_max\": %.0f, \"server_busy_fraction\": %.4f, "
                         "\"push_bytes\": %.0f, \"pull_bytes\": %.0f, \"worker_samples_per_s\": [%s]",
                         (long long)s->step, p->sync == PT_PS_SSP ? "ssp" : "asp",
                         p->sync == PT_PS_SSP ? p->bound : -1, p->S, p->W, stats[PS_HIST], hist,
                         stats[PS_HIST + 5], stats[PS_HIST + 1] / p->S, stats[PS_HIST + 3] / 2,
                         stats[PS_HIST + 2] / 2, sps);
        if (!s->cfg->quiet && s->world_rank == 0)
            pt_log_info("parameter server (%s): %.0f pushes applied, staleness histogram [%s], "
                        "servers busy %.0f%%",
                        s->cfg->ps_sync, stats[PS_HIST], hist, 100.0 * stats[PS_HIST + 1] / p->S);
    }
    free(per);
    PT_TRY(rc);
    prog->train_time = pt_now() - t0;
    prog->start_step = start;
    return PT_OK;
}

const pt_step_strategy pt_strategy_param_server = {
    .name = "parameter server",
    .setup = ps_setup,
    .forward_backward = ps_forward_backward,
    .sync = ps_sync,
    .grad_sum_squares = ps_grad_sum_squares,
    .clip = ps_clip,
    .update = ps_update,
    .memory = ps_memory,
    .buckets = ps_buckets,
    .rank_states = ps_rank_states,
    .reset_rank_states = ps_reset_rank_states,
    .replica_spread = ps_replica_spread,
    .ckpt_state = ps_ckpt_state,
    .ckpt_loaded = ps_ckpt_loaded,
    .teardown = ps_teardown,
};

const pt_step_strategy pt_strategy_param_server_async = {
    .name = "parameter server (asynchronous)",
    .setup = ps_setup,
    .forward_backward = ps_forward_backward,
    .sync = ps_sync,
    .grad_sum_squares = ps_grad_sum_squares,
    .clip = ps_clip,
    .update = ps_update,
    .memory = ps_memory,
    .buckets = ps_buckets,
    .rank_states = ps_rank_states,
    .reset_rank_states = ps_reset_rank_states,
    .replica_spread = ps_replica_spread,
    .ckpt_state = ps_ckpt_state,
    .ckpt_loaded = ps_ckpt_loaded,
    .run_steps = ps_run_steps,
    .teardown = ps_teardown,
};
