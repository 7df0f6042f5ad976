/* Compressed collectives: what gradient compression sends on the wire, and how the ranks combine
 * it. This layer depends on MPI alone, like the rest of src/comm; the training-side state (error
 * feedback, DGC momentum correction, density warm-up) is in src/parallel/compress.c.
 *
 *   top-k selection      pt_topk_select: the k entries of largest magnitude, ties to the lower
 *                        index, in O(n) (radix select on the float bits, no sort)
 *   sparse allreduce     sum of every rank's (index, value) list, into a dense vector:
 *     allgather          every rank's list to every rank (ring), summed in rank order
 *     sparcml            recursive doubling over sparse vectors, merging index lists; a vector
 *                        switches to dense once its density passes a threshold (SparCML,
 *                        Renggli et al., SC 2019)
 *     gtopk              recursive doubling where only the k largest entries survive each merge
 *                        (gTop-k, Shi et al., ICDCS 2019): the result has k entries, not up to pk
 *   sign allreduce       1 bit per element, 32 per word on the wire, plus one fp32 scale per
 *                        segment (tensor); summed as scale * sign, or majority vote (signSGD)
 *   low-precision        fp16 / bf16 on the wire with fp32 accumulation
 *
 * Every function here counts the payload bytes it sends and receives in pt_comm's bytes_sent and
 * bytes_recv (as the schedule engine does for the dense algorithms). Indices travel as uint32:
 * vectors of 2^32 elements or more are refused. A sparse vector on the wire is a list of pairs
 * (uint32 index, float value), 8 bytes each, sorted by index. */
#ifndef PARATRAIN_COMPRESS_H
#define PARATRAIN_COMPRESS_H

#include <stdint.h>

#include "paratrain/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { PT_SPARSE_ALLGATHER = 0, PT_SPARSE_SPARCML, PT_SPARSE_GTOPK, PT_SPARSE_NALGOS } pt_sparse_algo;

pt_status pt_sparse_algo_parse(const char *name, pt_sparse_algo *algo);
const char *pt_sparse_algo_name(pt_sparse_algo algo);

/* The min(k, n) entries of x with the largest |x|, ties broken toward the lower index (so the
 * choice is deterministic), written as (idx, val) sorted by index. NaN counts as larger than any
 * number. Uses OpenMP when built with it; the result does not depend on the thread count. */
pt_status pt_topk_select(const float *x, int64_t n, int64_t k, uint32_t *idx, float *val);

/* Sparse allreduce. In: this rank's nnz pairs (idx sorted ascending, no repeats, all < n).
 * Out: dense[n] = the sum over ranks (every rank gets the same bits).
 *   k            gtopk: the entries that survive each merge (the others ignore it)
 *   dense_switch sparcml: a vector with more than dense_switch * n entries continues dense
 *                (<= 0: the default, PT_SPARCML_DENSE_SWITCH)
 *   out_idx      if not NULL (room for n): the indices of the result's entries, sorted, and
 *                *out_nnz their number; for gtopk these are the surviving global top-k, which
 *                error feedback needs (the others ignore it and leave *out_nnz = -1)
 * Sums are formed in an order that depends on the algorithm and the process count only. */
#define PT_SPARCML_DENSE_SWITCH 0.125
pt_status pt_sparse_allreduce(pt_comm *c, pt_sparse_algo algo, const uint32_t *idx,
                              const float *val, int64_t nnz, int64_t n, int64_t k,
                              double dense_switch, float *dense, uint32_t *out_idx,
                              int64_t *out_nnz);

/* Sign packing: bit i%32 of word i/32 is 1 when x[i] < 0 (and for -0.0 and negative NaN); words
 * = ceil(n / 32), unused high bits of the last word are 0. */
static inline int64_t pt_sign_words(int64_t n) { return (n + 31) / 32; }
void pt_sign_pack(const float *x, int64_t n, uint32_t *bits);
/* out[i] = bit ? -scale : +scale */
void pt_sign_unpack(const uint32_t *bits, int64_t n, float scale, float *out);

/* Sign allreduce (allgather of every rank's packed signs and scales, then a sum in rank order).
 * The vector is cut into nseg segments at seg_off[0..nseg] (seg_off[0] = 0, seg_off[nseg] = n),
 * each with its own scale (scales[nseg], this rank's). majority = 0: out[i] = sum over ranks of
 * scale_r(seg(i)) * sign_r(i) (EF-SignSGD); majority = 1: out[i] = sign of the sum of the ranks'
 * signs, 0 on a tie (signSGD with majority vote; scales are not sent). */
pt_status pt_sign_allreduce(pt_comm *c, const uint32_t *bits, const float *scales, int64_t n,
                            const int64_t *seg_off, int nseg, int majority, float *out);

/* Low-precision allreduce of x[n] in place, wire = PT_F16 or PT_BF16: each rank rounds its
 * vector once to the wire type, sends block r to rank r (all-to-all), rank r sums the p blocks
 * in fp32 in rank order and rounds the sum once, and an allgather returns the blocks. Same
 * bytes as a ring allreduce of the 16-bit vector, 2(p-1)/p * 2n; two roundings in all. */
pt_status pt_allreduce_lowp(pt_comm *c, float *x, int64_t n, pt_dtype wire);

#ifdef __cplusplus
}
#endif
#endif
