/* The schedule engine: building rounds, and running them blocking or by polling. */
#include "schedule.h"

#include "paratrain/watchdog.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static pt_status wire_type(pt_dtype t, MPI_Datatype *out)
{
    switch (t) {
    case PT_F32: *out = MPI_FLOAT; return PT_OK;
    case PT_F64: *out = MPI_DOUBLE; return PT_OK;
    case PT_I32: *out = MPI_INT32_T; return PT_OK;
    case PT_I64: *out = MPI_INT64_T; return PT_OK;
    case PT_F16: case PT_BF16: *out = MPI_UINT16_T; return PT_OK;
    case PT_U8: *out = MPI_UINT8_T; return PT_OK;
    case PT_I128: { /* no MPI type: a contiguous pair of 64-bit words, created once */
        static MPI_Datatype i128 = MPI_DATATYPE_NULL;
        if (i128 == MPI_DATATYPE_NULL) {
            MPI_Datatype nt = MPI_DATATYPE_NULL;
            PT_MPI_CHECK(MPI_Type_contiguous(2, MPI_INT64_T, &nt));
            int rc = MPI_Type_commit(&nt);
            if (rc != MPI_SUCCESS) {
                MPI_Type_free(&nt); /* not kept half-made: the next call tries again */
                return PT_ERR(PT_ERR_MPI, "is the MPI library intact?",
                              "MPI_Type_commit of the 128-bit wire type failed (code %d)", rc);
            }
            i128 = nt;
        }
        *out = i128;
        return PT_OK;
    }
    }
    *out = MPI_BYTE;
    return PT_OK;
}

pt_status pt_sched_init(pt_sched *s, pt_comm *c, pt_dtype t, pt_reduce_op op,
                        const char *algo_name)
{
    memset(s, 0, sizeof *s);
    s->comm = c, s->dtype = t, s->op = op, s->esize = pt_dtype_size(t);
    s->group = (pt_group){.comm = c->coll, .rank = c->rank, .size = c->size};
    s->algo_name = algo_name;
    s->tag = pt_coll_next_tag(c);
    s->shm_region = -1;
    s->timeout = pt_watchdog_timeout();
    return PT_OK;
}

void pt_sched_free(pt_sched *s)
{
    free(s->ops), free(s->round_end), free(s->req_peer);
    /* after a timeout the pending requests still point at the scratch: it is never freed */
    if (!s->abandoned) {
        free(s->reqs);
        for (int i = 0; i < s->nscratch; i++) free(s->scratch[i]);
    }
    memset(s, 0, sizeof *s);
}

void *pt_sched_scratch(pt_sched *s, size_t bytes)
{
    if (bytes == 0 || s->nscratch == 8) return NULL;
    void *p = malloc(bytes);
    if (p) s->scratch[s->nscratch++] = p;
    return p;
}

static pt_status add(pt_sched *s, pt_sop_kind k, int peer, void *dst, const void *src, int64_t n)
{
    if (n <= 0 && k != PT_SOP_BARRIER) return PT_OK;
    if ((k == PT_SOP_SEND || k == PT_SOP_RECV) && n > INT_MAX)
        return PT_ERR(PT_ERR_ARG, "split the buffer", "a message of %lld elements exceeds MPI's int count",
                      (long long)n);
    if (s->nops == s->ops_cap) {
        int cap = s->ops_cap ? 2 * s->ops_cap : 16;
        pt_sop *o = realloc(s->ops, sizeof *o * (size_t)cap);
        if (!o) return PT_ERR(PT_ERR_NOMEM, NULL, "cannot grow a collective schedule");
        s->ops = o, s->ops_cap = cap;
    }
    s->ops[s->nops++] =
        (pt_sop){.kind = k, .comm = s->group.comm, .peer = peer, .dst = dst, .src = src, .count = n};
    return PT_OK;
}

pt_status pt_sched_send(pt_sched *s, int peer, const void *src, int64_t n)
{
    return add(s, PT_SOP_SEND, peer, NULL, src, n);
}
pt_status pt_sched_recv(pt_sched *s, int peer, void *dst, int64_t n)
{
    return add(s, PT_SOP_RECV, peer, dst, NULL, n);
}
pt_status pt_sched_reduce(pt_sched *s, void *dst, const void *src, int64_t n)
{
    return add(s, PT_SOP_REDUCE, -1, dst, src, n);
}
pt_status pt_sched_copy(pt_sched *s, void *dst, const void *src, int64_t n)
{
    if (dst == src) return PT_OK;
    return add(s, PT_SOP_COPY, -1, dst, src, n);
}

pt_status pt_sched_reduce_all(pt_sched *s, void **blocks, int k, int64_t count)
{
    if (count <= 0) return PT_OK;
    void **copy = pt_sched_scratch(s, sizeof(void *) * (size_t)k);
    if (!copy) return PT_ERR(PT_ERR_NOMEM, NULL, "no scratch for a shared-memory reduction");
    memcpy(copy, blocks, sizeof(void *) * (size_t)k);
    PT_TRY(add(s, PT_SOP_REDUCE_ALL, -1, NULL, NULL, count));
    s->ops[s->nops - 1].blocks = copy;
    s->ops[s->nops - 1].nblocks = k;
    return PT_OK;
}

pt_status pt_sched_barrier(pt_sched *s) { return add(s, PT_SOP_BARRIER, -1, NULL, NULL, 0); }

pt_status pt_sched_end_round(pt_sched *s)
{
    int start = s->nrounds ? s->round_end[s->nrounds - 1] : 0;
    if (s->nops == start) return PT_OK; /* empty round */
    if (s->nrounds == s->rounds_cap) {
        int cap = s->rounds_cap ? 2 * s->rounds_cap : 16;
        int *r = realloc(s->round_end, sizeof *r * (size_t)cap);
        if (!r) return PT_ERR(PT_ERR_NOMEM, NULL, "cannot grow a collective schedule");
        s->round_end = r, s->rounds_cap = cap;
    }
    s->round_end[s->nrounds++] = s->nops;
    return PT_OK;
}

static int round_begin(const pt_sched *s, int k) { return k ? s->round_end[k - 1] : 0; }

/* Posts the transfers of the current round. */
static pt_status post_round(pt_sched *s)
{
    s->nreqs = 0;
    const int b = round_begin(s, s->round), e = s->round_end[s->round];
    if (s->reqs_cap < e - b) {
        MPI_Request *r = realloc(s->reqs, sizeof *r * (size_t)(e - b));
        if (!r) return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate MPI requests");
        s->reqs = r;
        int *q = realloc(s->req_peer, sizeof *q * (size_t)(e - b));
        if (!q) return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate MPI requests");
        s->req_peer = q, s->reqs_cap = e - b;
    }
    MPI_Datatype t = MPI_BYTE;
    PT_TRY(wire_type(s->dtype, &t));
    /* Receives first, so a matching send finds its buffer posted. */
    for (int i = b; i < e; i++) {
        const pt_sop *o = &s->ops[i];
        if (o->kind == PT_SOP_RECV) {
            s->req_peer[s->nreqs] = o->peer;
            PT_MPI_CHECK(MPI_Irecv(o->dst, (int)o->count, t, o->peer, s->tag, o->comm,
                                   &s->reqs[s->nreqs++]));
            s->comm->bytes_recv += s->esize * (uint64_t)o->count;
        }
    }
    for (int i = b; i < e; i++) {
        const pt_sop *o = &s->ops[i];
        if (o->kind == PT_SOP_SEND) {
            s->req_peer[s->nreqs] = o->peer;
            PT_MPI_CHECK(MPI_Isend(o->src, (int)o->count, t, o->peer, s->tag, o->comm,
                                   &s->reqs[s->nreqs++]));
            s->comm->bytes_sent += s->esize * (uint64_t)o->count;
        } else if (o->kind == PT_SOP_BARRIER) {
            /* Shared-memory writes before the barrier must be visible after it on the other
             * ranks of the node (x86 is TSO; the fence also stops compiler reordering). */
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            s->req_peer[s->nreqs] = -1;
            PT_MPI_CHECK(MPI_Ibarrier(o->comm, &s->reqs[s->nreqs++]));
        }
    }
    s->posted = 1;
    return PT_OK;
}

/* One pass over k blocks in cache-sized chunks: the first block accumulates the others, then the
 * result is copied into the rest while the chunk is still in cache. */
static void reduce_all(pt_sched *s, const pt_sop *o)
{
    const int64_t chunk = 4096;
    char **b = (char **)o->blocks;
    for (int64_t c0 = 0; c0 < o->count; c0 += chunk) {
        const int64_t len = o->count - c0 < chunk ? o->count - c0 : chunk;
        const size_t off = s->esize * (size_t)c0;
        for (int j = 1; j < o->nblocks; j++) pt_reduce_local(b[0] + off, b[j] + off, len, s->dtype, s->op);
        for (int j = 1; j < o->nblocks; j++) memcpy(b[j] + off, b[0] + off, s->esize * (size_t)len);
    }
}

static void local_ops(pt_sched *s)
{
    const int b = round_begin(s, s->round), e = s->round_end[s->round];
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    for (int i = b; i < e; i++) {
        const pt_sop *o = &s->ops[i];
        if (o->kind == PT_SOP_REDUCE) pt_reduce_local(o->dst, o->src, o->count, s->dtype, s->op);
        else if (o->kind == PT_SOP_COPY) memcpy(o->dst, o->src, s->esize * (size_t)o->count);
        else if (o->kind == PT_SOP_REDUCE_ALL) reduce_all(s, o);
    }
}

pt_status pt_sched_start(pt_sched *s)
{
    s->round = 0, s->posted = 0;
    s->started = s->polled = MPI_Wtime();
    if (pt_watchdog_peer_lost()) /* nothing communicates after a lost peer (watchdog.h) */
        return PT_ERR(PT_ERR_MPI, NULL, "collective '%s' not started: a peer was lost earlier (%s)",
                      s->algo_name, pt_watchdog_message());
    if (s->nrounds == 0) return PT_OK;
    return post_round(s);
}

/* Watchdog: a round that makes no progress for PT_COLL_TIMEOUT seconds fails, naming the
 * algorithm, the round and the peers it waits on, instead of hanging. */
static pt_status check_watchdog(pt_sched *s)
{
    const double limit = s->timeout, t = MPI_Wtime();
    if (t - s->polled > 1.0) s->started += t - s->polled; /* not tested meanwhile: not counted */
    s->polled = t;
    if (limit <= 0.0 || t - s->started < limit) return PT_OK;
    char what[256], op[96];
    int peers[64], np = 0;
    const int b = round_begin(s, s->round), e = s->round_end[s->round];
    size_t off = (size_t)snprintf(what, sizeof what, "round %d of %d:", s->round + 1, s->nrounds);
    for (int i = b; i < e && off < sizeof what - 24; i++) {
        const pt_sop *o = &s->ops[i];
        if (o->kind == PT_SOP_RECV || o->kind == PT_SOP_SEND) {
            off += (size_t)snprintf(what + off, sizeof what - off, "%s %s %d", i > b ? "," : "",
                                    o->kind == PT_SOP_RECV ? "from" : "to", o->peer);
        } else if (o->kind == PT_SOP_BARRIER) {
            off += (size_t)snprintf(what + off, sizeof what - off, "%s a node barrier", i > b ? "," : "");
        }
    }
    /* the peers named are those of the transfers still pending (each tested once more) */
    for (int i = 0; i < s->nreqs; i++) {
        int flag = 0;
        if (s->reqs[i] != MPI_REQUEST_NULL && MPI_Test(&s->reqs[i], &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS &&
            !flag && s->req_peer[i] >= 0 && np < 64)
            peers[np++] = s->req_peer[i];
    }
    snprintf(op, sizeof op, "collective '%s'", s->algo_name);
    s->abandoned = 1;
    /* Only the peers of this rank's own group can be named as world ranks; a round on another
     * group (cross-node ring of the hierarchical algorithm) names its peers in the text. */
    const MPI_Comm comm = b < e ? s->ops[b].comm : s->group.comm;
    int same = 1;
    for (int i = b; i < e; i++) same &= s->ops[i].comm == comm;
    return pt_watchdog_fail(__FILE__, __LINE__, same ? comm : MPI_COMM_NULL, op, what, peers,
                            same ? np : 0);
}

pt_status pt_sched_wait_request(pt_sched *s, MPI_Request *req)
{
    char op[96];
    snprintf(op, sizeof op, "collective '%s'", s->algo_name);
    pt_status st = pt_wait_bounded(1, req, NULL, s->group.comm, op,
                                   "while the ranks of its node agreed on its path");
    if (st != PT_OK) s->abandoned = 1;
    return st;
}

pt_status pt_sched_test(pt_sched *s, int *done)
{
    *done = 0;
    if (s->round < s->nrounds && pt_watchdog_peer_lost()) { /* fail at once, not after a limit */
        s->abandoned = 1;
        return PT_ERR(PT_ERR_MPI, NULL, "collective '%s' abandoned: a peer was lost earlier (%s)",
                      s->algo_name, pt_watchdog_message());
    }
    while (s->round < s->nrounds) {
        int flag = 1;
        if (s->nreqs) PT_MPI_CHECK(MPI_Testall(s->nreqs, s->reqs, &flag, MPI_STATUSES_IGNORE));
        if (!flag) return check_watchdog(s);
        local_ops(s);
        s->round++;
        s->started = s->polled = MPI_Wtime(); /* a round completed: progress */
        if (s->round < s->nrounds) PT_TRY(post_round(s));
    }
    *done = 1;
    return PT_OK;
}

pt_status pt_sched_wait(pt_sched *s)
{
    if (s->timeout > 0) { /* poll, so the watchdog can fire */
        /* Yields the core after each fruitless poll: an MPI whose progress busy-polls
         * without yielding (MPICH 4.0's ch4) otherwise lets oversubscribed ranks starve each
         * other, one scheduler time slice per round (docs/TESTING.md; Open MPI yields itself
         * with mpi_yield_when_idle). Measured under MPICH, np 3 on 2 cores, 64-byte segmented
         * ring: ~7 ms a round without the yield, the whole t_comm in ~65 s with it. */
        int done = 0;
        for (;;) {
            PT_TRY(pt_sched_test(s, &done));
            if (done) break;
            sched_yield(); /* nothing else runnable: a ~0.2 us system call */
        }
        return PT_OK;
    }
    while (s->round < s->nrounds) {
        if (s->nreqs) PT_MPI_CHECK(MPI_Waitall(s->nreqs, s->reqs, MPI_STATUSES_IGNORE)); /* timeout off */
        local_ops(s);
        s->round++;
        if (s->round < s->nrounds) PT_TRY(post_round(s));
    }
    return PT_OK;
}
