/* Sparse vectors on the wire (internal to src/comm): sorted (index, value) pairs, sent as one
 * message whose length the receiver learns by probing, so no count travels ahead of the data
 * and an empty vector costs an empty message. */
#ifndef PT_COMM_SPARSE_H
#define PT_COMM_SPARSE_H

#include <stdint.h>

#include "paratrain/compress.h"
#include "schedule.h"

typedef struct {
    uint32_t i;
    float v;
} pt_pair;

/* Starts sending `bytes` to peer (counted in c->bytes_sent). */
pt_status pt_sparse_isend(pt_comm *c, int tag, int peer, const void *buf, size_t bytes,
                          MPI_Request *req);
/* Receives the next message from peer into *buf (grown as needed, *cap bytes); *bytes its
 * length (counted in c->bytes_recv). */
pt_status pt_sparse_recv(pt_comm *c, int tag, int peer, void **buf, size_t *cap, size_t *bytes);
/* out = a + b, both sorted by index, summed where the indices meet (a.v + b.v); returns the
 * length. out has room for na + nb. */
int64_t pt_pairs_merge(const pt_pair *a, int64_t na, const pt_pair *b, int64_t nb, pt_pair *out);

pt_status pt_sparse_allgather_run(pt_comm *c, int tag, const pt_pair *mine, int64_t nnz, int64_t n,
                                  float *dense);
/* SparCML (gtopk = 0: dense_switch) or gTop-k (gtopk = 1: k survive each merge) recursive
 * doubling; see the file. */
pt_status pt_sparse_recursive_doubling_run(pt_comm *c, int tag, const pt_pair *mine, int64_t nnz,
                                           int64_t n, int gtopk, int64_t k, double dense_switch,
                                           float *dense, uint32_t *out_idx, int64_t *out_nnz);

#endif
