/* Sparse allreduce: dispatch, and the message and merge helpers its algorithms share. */
#include "sparse.h"

#include "paratrain/watchdog.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const char *sparse_names[PT_SPARSE_NALGOS] = {"allgather", "sparcml", "gtopk"};

pt_status pt_sparse_algo_parse(const char *name, pt_sparse_algo *algo)
{
    for (int a = 0; a < PT_SPARSE_NALGOS; a++)
        if (strcmp(name, sparse_names[a]) == 0) {
            *algo = (pt_sparse_algo)a;
            return PT_OK;
        }
    return PT_ERR(PT_ERR_ARG, "choose allgather, sparcml or gtopk", "unknown sparse allreduce '%s'",
                  name);
}

const char *pt_sparse_algo_name(pt_sparse_algo algo)
{
    return algo >= 0 && algo < PT_SPARSE_NALGOS ? sparse_names[algo] : "?";
}

pt_status pt_sparse_isend(pt_comm *c, int tag, int peer, const void *buf, size_t bytes,
                          MPI_Request *req)
{
    if (bytes > INT_MAX)
        return PT_ERR(PT_ERR_ARG, "use a lower density or fewer elements",
                      "a sparse message of %zu bytes exceeds MPI's int count", bytes);
    PT_MPI_CHECK(MPI_Isend(buf, (int)bytes, MPI_BYTE, peer, tag, c->coll, req));
    c->bytes_sent += bytes;
    return PT_OK;
}

pt_status pt_sparse_recv(pt_comm *c, int tag, int peer, void **buf, size_t *cap, size_t *bytes)
{
    MPI_Status stat;
    int count = 0;
    PT_TRY(pt_mpi_probe(peer, tag, c->coll, &stat, "the length of a sparse message"));
    PT_MPI_CHECK(MPI_Get_count(&stat, MPI_BYTE, &count));
    if ((size_t)count > *cap || !*buf) {
        void *b = realloc(*buf, count ? (size_t)count : 1);
        if (!b) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for a %d-byte sparse message", count);
        *buf = b, *cap = (size_t)count;
    }
    /* the probed message has arrived, so this receive cannot wait for the peer */
    PT_MPI_CHECK(MPI_Recv(*buf, count, MPI_BYTE, peer, tag, c->coll, MPI_STATUS_IGNORE));
    c->bytes_recv += (uint64_t)count;
    *bytes = (size_t)count;
    return PT_OK;
}

int64_t pt_pairs_merge(const pt_pair *a, int64_t na, const pt_pair *b, int64_t nb, pt_pair *out)
{
    int64_t i = 0, j = 0, m = 0;
    while (i < na && j < nb) {
        if (a[i].i < b[j].i) out[m++] = a[i++];
        else if (b[j].i < a[i].i) out[m++] = b[j++];
        else {
            out[m++] = (pt_pair){a[i].i, a[i].v + b[j].v};
            i++, j++;
        }
    }
    while (i < na) out[m++] = a[i++];
    while (j < nb) out[m++] = b[j++];
    return m;
}

pt_status pt_sparse_allreduce(pt_comm *c, pt_sparse_algo algo, const uint32_t *idx,
                              const float *val, int64_t nnz, int64_t n, int64_t k,
                              double dense_switch, float *dense, uint32_t *out_idx,
                              int64_t *out_nnz)
{
    if (out_nnz) *out_nnz = -1;
    if (n < 0 || nnz < 0 || nnz > n)
        return PT_ERR(PT_ERR_ARG, NULL, "sparse allreduce of %lld entries over %lld elements",
                      (long long)nnz, (long long)n);
    if (n > UINT32_MAX)
        return PT_ERR(PT_ERR_ARG, "compress fewer elements at a time",
                      "sparse allreduce of %lld elements: indices are 32-bit", (long long)n);
    for (int64_t e = 0; e < nnz; e++)
        if (idx[e] >= n || (e && idx[e] <= idx[e - 1]))
            return PT_ERR(PT_ERR_ARG, "pass indices sorted, without repeats, below n",
                          "sparse allreduce: entry %lld has index %u", (long long)e, idx[e]);
    pt_pair *mine = malloc(sizeof *mine * (size_t)(nnz ? nnz : 1));
    if (!mine) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for %lld sparse pairs", (long long)nnz);
    for (int64_t e = 0; e < nnz; e++) mine[e] = (pt_pair){idx[e], val[e]};
    const int tag = pt_coll_next_tag(c);
    pt_status st;
    switch (algo) {
    case PT_SPARSE_ALLGATHER: st = pt_sparse_allgather_run(c, tag, mine, nnz, n, dense); break;
    case PT_SPARSE_SPARCML:
        st = pt_sparse_recursive_doubling_run(
            c, tag, mine, nnz, n, 0, 0, dense_switch > 0 ? dense_switch : PT_SPARCML_DENSE_SWITCH,
            dense, NULL, NULL);
        break;
    case PT_SPARSE_GTOPK:
        st = pt_sparse_recursive_doubling_run(c, tag, mine, nnz, n, 1, k > 0 ? k : 0, 0, dense,
                                              out_idx, out_nnz);
        break;
    default: st = PT_ERR(PT_ERR_ARG, NULL, "unknown sparse allreduce %d", (int)algo);
    }
    free(mine);
    return st;
}
