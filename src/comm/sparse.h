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

/* The two implementations behind pt_topk_select (compress.h), selectable for the tests and
 * pt-bench-compress; both give the same result, the contract of pt_topk_select.
 *   PT_TOPK_AUTO    what pt_topk_select uses: SAMPLE, or RADIX for small n
 *   PT_TOPK_RADIX   exact radix select on the key bits: three streaming passes over x
 *   PT_TOPK_SAMPLE  a threshold estimated from a fixed sample, one filtering pass collecting the
 *                   candidates above it, the exact radix select among the candidates; RADIX when
 *                   the sample misjudged (too few candidates, or more than the buffer holds)
 * tune (NULL: the defaults) sets SAMPLE's sample size and margin, so a test can force either
 * misjudgement; stats (may be NULL) says which path ran. */
typedef enum { PT_TOPK_AUTO = 0, PT_TOPK_RADIX, PT_TOPK_SAMPLE } pt_topk_method;
typedef struct {
    int64_t sample; /* sampled entries (<= 0: the default, PT_TOPK_SAMPLE_SIZE) */
    double margin;  /* the sample rank taken as threshold, as a multiple of the expected rank
                     * of the k-th largest (<= 0: the default); < 1 misjudges high */
    double cap;     /* candidate buffer, as a multiple of the expected candidates (<= 0: 2) */
} pt_topk_tune;
typedef struct {
    int path;          /* 0: radix over x, 1: sample + filter, 2: sample misjudged, radix after */
    int64_t candidates; /* entries the filter collected (path 1, 2) */
    uint32_t threshold; /* the estimated key the filter compared against */
} pt_topk_stats;
#define PT_TOPK_SAMPLE_SIZE 8192
#define PT_TOPK_SAMPLE_MIN_N 32768 /* AUTO samples from this n on, when k <= n / 16 */
pt_status pt_topk_select_with(const float *x, int64_t n, int64_t k, pt_topk_method method,
                              const pt_topk_tune *tune, uint32_t *idx, float *val,
                              pt_topk_stats *stats);

#endif
