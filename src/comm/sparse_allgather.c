/* Sparse allreduce by allgather: every rank's (index, value) list travels around a ring, so after
 * p-1 rounds each rank holds all p lists and adds them into a dense vector in rank order (the
 * same bits on every rank). Lists may differ in length; each message is sized by probing.
 *
 * Cost, with k pairs of 8 bytes per rank: (p-1) alpha + (p-1) 8k beta + p k gamma. The volume
 * grows with p, unlike a dense ring's 2(p-1)/p n; it wins while 8k(p-1) < 8(p-1)/p n, i.e. at
 * densities below 1/p (Renggli et al., SC 2019, call this the static sparse allgather).
 * Any p: a ring has no power-of-two condition. */
#include <stdlib.h>
#include <string.h>

#include "sparse.h"
#include "paratrain/watchdog.h"

pt_status pt_sparse_allgather_run(pt_comm *c, int tag, const pt_pair *mine, int64_t nnz, int64_t n,
                                  float *dense)
{
    const int p = c->size, r = c->rank;
    const pt_pair **lists = calloc((size_t)p, sizeof *lists);
    int64_t *len = calloc((size_t)p, sizeof *len);
    void **owned = calloc((size_t)p, sizeof *owned);
    pt_status st = PT_OK;
    if (!lists || !len || !owned) st = PT_ERR(PT_ERR_NOMEM, NULL, "no memory for %d lists", p);
    if (st == PT_OK) lists[r] = mine, len[r] = nnz;
    const int right = (r + 1) % p, left = (r - 1 + p) % p;
    for (int s = 0; s < p - 1 && st == PT_OK; s++) {
        const int sb = ((r - s) % p + p) % p, rb = ((r - s - 1) % p + p) % p;
        MPI_Request req;
        st = pt_sparse_isend(c, tag, right, lists[sb], sizeof(pt_pair) * (size_t)len[sb], &req);
        if (st != PT_OK) break;
        size_t cap = 0, bytes = 0;
        st = pt_sparse_recv(c, tag, left, &owned[rb], &cap, &bytes);
        if (st != PT_OK) { /* the send may still read lists[sb]: leave the lists to it */
            owned = NULL;
            break;
        }
        st = pt_wait_bounded(1, &req, &right, c->coll, "MPI_Isend", "a sparse allgather");
        if (st != PT_OK) {
            owned = NULL;
            break;
        }
        lists[rb] = owned[rb], len[rb] = (int64_t)(bytes / sizeof(pt_pair));
    }
    if (st == PT_OK) {
        memset(dense, 0, sizeof(float) * (size_t)n);
        for (int q = 0; q < p; q++)
            for (int64_t e = 0; e < len[q]; e++) {
                if (lists[q][e].i >= n) {
                    st = PT_ERR(PT_ERR_MPI, "all ranks must pass the same n",
                                "sparse allgather: rank %d sent index %u of %lld", q, lists[q][e].i,
                                (long long)n);
                    break;
                }
                dense[lists[q][e].i] += lists[q][e].v;
            }
    }
    if (owned)
        for (int q = 0; q < p; q++) free(owned[q]);
    free(owned), free(lists), free(len);
    return st;
}
