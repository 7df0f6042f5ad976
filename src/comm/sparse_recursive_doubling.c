/* Sparse allreduce by recursive doubling, in two variants that differ only in the merge.
 *
 * In round j each rank exchanges its current vector with the rank whose (new) rank differs in bit
 * j and merges the two sorted index lists, adding values where the indices meet. Both partners
 * merge the same two operands and IEEE addition is commutative, so they hold the same bits
 * after every round, and all ranks end with the same result.
 *
 * SparCML (Renggli, Ashkboos, Aghagolzadeh, Alistarh and Hoefler, SC 2019): the merged vector
 * grows with the rounds (up to k 2^j entries after round j), so once it holds more than
 * dense_switch * n entries it is stored and sent dense for the remaining rounds; at 50% density a
 * pair list (8 bytes an entry) is as big as the dense vector (4 bytes an element), so the switch
 * happens there at the latest, which also lets a receiver tell the two forms apart by length.
 *   Cost, k pairs per rank, no switch: sum_j (alpha + 8k 2^j beta) = log2(p') alpha +
 *   8k(p'-1) beta, plus merge work of the same order; after a switch at round s the remaining
 *   log2(p') - s rounds cost alpha + 4n beta + n gamma each.
 *
 * gTop-k (Shi, Wang, Chu, Li, Qin and Li, ICDCS 2019): after each merge only the k entries of
 * largest magnitude survive (ties to the lower index), so every message has at most k pairs and
 * the result has k entries, not up to p k: log2(p') (alpha + 8k beta) plus the selections. The
 * result is an approximation of the true sum's top-k; error feedback returns what was dropped.
 *
 * Non-powers of two: the fold of fold.h on sparse vectors. With rem = p - p', the first 2 rem
 * ranks pair up; each even one sends its vector to the odd one above it and sits out, and gets
 * the final vector back at the end (2 alpha + up to 2 messages of the final size). */
#include <stdlib.h>
#include <string.h>

#include "sparse.h"
#include "paratrain/watchdog.h"

typedef struct {
    pt_pair *p; /* sorted pairs, nnz of them (room for cap) */
    int64_t nnz, cap;
    float *d; /* the dense form (n elements) once switched */
} vec;

typedef struct {
    pt_comm *c;
    int tag;
    int64_t n;
    int gtopk;
    int64_t k;
    double dense_switch;
    pt_pair *tmp; /* merge output */
    int64_t tmp_cap;
    float *sel_val; /* gTop-k selection scratch */
    uint32_t *sel_pos;
    void *rbuf; /* receive buffer */
    size_t rcap;
    int abandoned; /* a send timed out: its buffers are never freed */
} rd_ctx;

static pt_status densify(rd_ctx *x, vec *v)
{
    float *d = calloc((size_t)(x->n ? x->n : 1), sizeof *d);
    if (!d) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for a dense vector of %lld", (long long)x->n);
    for (int64_t e = 0; e < v->nnz; e++) d[v->p[e].i] = v->p[e].v;
    v->d = d;
    return PT_OK;
}

static int wants_dense(const rd_ctx *x, int64_t nnz)
{
    return !x->gtopk && (2 * nnz >= x->n || (double)nnz > x->dense_switch * (double)x->n);
}

static pt_status grow(void **buf, int64_t *cap, int64_t need, size_t es)
{
    if (need <= *cap) return PT_OK;
    void *b = realloc(*buf, es * (size_t)need);
    if (!b) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for %lld sparse entries", (long long)need);
    *buf = b, *cap = need;
    return PT_OK;
}

/* gTop-k: keep the k entries of v of largest magnitude, in index order. */
static pt_status keep_topk(rd_ctx *x, vec *v)
{
    if (v->nnz <= x->k) return PT_OK;
    if (!x->sel_val) {
        x->sel_val = malloc(sizeof(float) * (size_t)(x->k + 1));
        x->sel_pos = malloc(sizeof(uint32_t) * (size_t)(x->k + 1));
        if (!x->sel_val || !x->sel_pos) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for gTop-k");
    }
    float *vals = malloc(sizeof(float) * (size_t)v->nnz);
    if (!vals) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for gTop-k");
    for (int64_t e = 0; e < v->nnz; e++) vals[e] = v->p[e].v;
    pt_status st = pt_topk_select(vals, v->nnz, x->k, x->sel_pos, x->sel_val);
    free(vals);
    PT_TRY(st);
    for (int64_t j = 0; j < x->k; j++) v->p[j] = v->p[x->sel_pos[j]]; /* sel_pos[j] >= j */
    v->nnz = x->k;
    return PT_OK;
}

/* v := v + the received vector (bytes of it in x->rbuf). */
static pt_status combine(rd_ctx *x, vec *v, size_t bytes)
{
    const int64_t n = x->n;
    if (!x->gtopk && bytes == sizeof(float) * (size_t)n) { /* the partner sent it dense */
        const float *pd = x->rbuf;
        if (!v->d) { /* pd + mine, as the partner computes mine + pd */
            float *d = malloc(sizeof(float) * (size_t)(n ? n : 1));
            if (!d) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for a dense vector of %lld",
                                  (long long)n);
            memcpy(d, pd, sizeof(float) * (size_t)n);
            for (int64_t e = 0; e < v->nnz; e++) d[v->p[e].i] = pd[v->p[e].i] + v->p[e].v;
            v->d = d;
        } else {
            for (int64_t i = 0; i < n; i++) v->d[i] += pd[i];
        }
        return PT_OK;
    }
    if (bytes % sizeof(pt_pair))
        return PT_ERR(PT_ERR_MPI, "all ranks must pass the same n and algorithm",
                      "sparse recursive doubling: a %zu-byte message is neither a pair list nor "
                      "a dense vector of %lld", bytes, (long long)n);
    const pt_pair *q = x->rbuf;
    const int64_t nq = (int64_t)(bytes / sizeof(pt_pair));
    for (int64_t e = 0; e < nq; e++)
        if (q[e].i >= n || (e && q[e].i <= q[e - 1].i))
            return PT_ERR(PT_ERR_MPI, "all ranks must pass the same n",
                          "sparse recursive doubling: received index %u of %lld out of order or "
                          "range", q[e].i, (long long)n);
    if (v->d) {
        for (int64_t e = 0; e < nq; e++) v->d[q[e].i] += q[e].v;
        return PT_OK;
    }
    PT_TRY(grow((void **)&x->tmp, &x->tmp_cap, v->nnz + nq, sizeof(pt_pair)));
    const int64_t m = pt_pairs_merge(v->p, v->nnz, q, nq, x->tmp);
    pt_pair *t = v->p;
    const int64_t tc = v->cap;
    v->p = x->tmp, v->cap = x->tmp_cap, v->nnz = m;
    x->tmp = t, x->tmp_cap = tc;
    if (x->gtopk) return keep_topk(x, v);
    if (wants_dense(x, v->nnz)) PT_TRY(densify(x, v));
    return PT_OK;
}

static pt_status send_vec(rd_ctx *x, int peer, const vec *v, MPI_Request *req)
{
    if (v->d) return pt_sparse_isend(x->c, x->tag, peer, v->d, sizeof(float) * (size_t)x->n, req);
    return pt_sparse_isend(x->c, x->tag, peer, v->p, sizeof(pt_pair) * (size_t)v->nnz, req);
}

static pt_status wait_send(rd_ctx *x, MPI_Request *req, int peer)
{
    pt_status st = pt_wait_bounded(1, req, &peer, x->c->coll, "MPI_Isend", "a sparse recursive doubling");
    if (st != PT_OK) x->abandoned = 1;
    return st;
}

/* One exchange with peer (send and receive), then the merge. */
static pt_status exchange(rd_ctx *x, vec *v, int peer)
{
    MPI_Request req;
    size_t bytes = 0;
    PT_TRY(send_vec(x, peer, v, &req));
    pt_status st = pt_sparse_recv(x->c, x->tag, peer, &x->rbuf, &x->rcap, &bytes);
    if (st != PT_OK) { /* the send may still read v: leave the buffers to it */
        x->abandoned = 1;
        return st;
    }
    pt_status w = wait_send(x, &req, peer);
    PT_TRY(st);
    PT_TRY(w);
    return combine(x, v, bytes);
}

static pt_status run(rd_ctx *x, vec *v, float *dense, uint32_t *out_idx, int64_t *out_nnz)
{
    pt_comm *c = x->c;
    const int p = c->size, r = c->rank;
    if (x->gtopk) PT_TRY(keep_topk(x, v));
    else if (wants_dense(x, v->nnz)) PT_TRY(densify(x, v));
    int pof2 = 1;
    while (2 * pof2 <= p) pof2 *= 2;
    const int rem = p - pof2;
    int newrank = r >= 2 * rem ? r - rem : r % 2 ? r / 2 : -1;
    if (r < 2 * rem) { /* fold in */
        if (newrank < 0) {
            MPI_Request req;
            PT_TRY(send_vec(x, r + 1, v, &req));
            PT_TRY(wait_send(x, &req, r + 1));
        } else {
            size_t bytes = 0;
            PT_TRY(pt_sparse_recv(c, x->tag, r - 1, &x->rbuf, &x->rcap, &bytes));
            PT_TRY(combine(x, v, bytes));
        }
    }
    if (newrank >= 0)
        for (int mask = 1; mask < pof2; mask <<= 1) {
            const int pn = newrank ^ mask;
            PT_TRY(exchange(x, v, pn < rem ? 2 * pn + 1 : pn + rem));
        }
    if (r < 2 * rem) { /* fold out: the sat-out rank takes the final vector as it comes */
        if (newrank < 0) {
            size_t bytes = 0;
            PT_TRY(pt_sparse_recv(c, x->tag, r + 1, &x->rbuf, &x->rcap, &bytes));
            free(v->d), v->d = NULL, v->nnz = 0;
            PT_TRY(combine(x, v, bytes));
        } else {
            MPI_Request req;
            PT_TRY(send_vec(x, r - 1, v, &req));
            PT_TRY(wait_send(x, &req, r - 1));
        }
    }
    if (v->d) {
        memcpy(dense, v->d, sizeof(float) * (size_t)x->n);
    } else {
        memset(dense, 0, sizeof(float) * (size_t)x->n);
        for (int64_t e = 0; e < v->nnz; e++) dense[v->p[e].i] = v->p[e].v;
    }
    if (x->gtopk && out_idx && out_nnz) {
        for (int64_t e = 0; e < v->nnz; e++) out_idx[e] = v->p[e].i;
        *out_nnz = v->nnz;
    }
    return PT_OK;
}

pt_status pt_sparse_recursive_doubling_run(pt_comm *c, int tag, const pt_pair *mine, int64_t nnz,
                                           int64_t n, int gtopk, int64_t k, double dense_switch,
                                           float *dense, uint32_t *out_idx, int64_t *out_nnz)
{
    rd_ctx x = {.c = c, .tag = tag, .n = n, .gtopk = gtopk, .k = k, .dense_switch = dense_switch};
    vec v = {0};
    pt_status st = grow((void **)&v.p, &v.cap, nnz ? nnz : 1, sizeof(pt_pair));
    if (st == PT_OK) {
        if (nnz) memcpy(v.p, mine, sizeof(pt_pair) * (size_t)nnz);
        v.nnz = nnz;
        st = run(&x, &v, dense, out_idx, out_nnz);
    }
    if (!x.abandoned) free(v.p), free(v.d), free(x.tmp);
    free(x.sel_val), free(x.sel_pos), free(x.rbuf);
    return st;
}
