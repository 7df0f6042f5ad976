/* Binomial-tree reduce to rank 0 followed by a binomial-tree broadcast (the classic MPICH
 * MPI_Reduce + MPI_Bcast pair). In reduce round k, ranks with bit k set send their partial sum
 * to rank - 2^k and drop out; the others add what they receive. The broadcast runs the tree the
 * other way: each rank receives from rank - lowbit(rank), then forwards to rank + 2^j for the
 * bits j below that.
 *
 * Cost: 2 ceil(log2 p) (alpha + n beta) + ceil(log2 p) n gamma. Simple and latency-friendly, but
 * it moves the whole vector log p times: a baseline for short vectors. Any p works. */
#include "schedule.h"

pt_status pt_allreduce_binomial_build(pt_sched *s, void *buf, int64_t n)
{
    const int p = s->group.size, r = s->group.rank;
    if (p == 1 || n == 0) return PT_OK;
    void *tmp = pt_sched_scratch(s, s->esize * (size_t)n);
    if (!tmp) return PT_ERR(PT_ERR_NOMEM, NULL, "no scratch for the binomial tree");
    for (int mask = 1; mask < p; mask <<= 1) { /* reduce to 0 */
        if (r & mask) {
            PT_TRY(pt_sched_send(s, r - mask, buf, n));
            PT_TRY(pt_sched_end_round(s));
            break;
        }
        if (r + mask < p) {
            PT_TRY(pt_sched_recv(s, r + mask, tmp, n));
            PT_TRY(pt_sched_reduce(s, buf, tmp, n));
            PT_TRY(pt_sched_end_round(s));
        }
    }
    int mask = 1; /* broadcast from 0 */
    while (mask < p) {
        if (r & mask) {
            PT_TRY(pt_sched_recv(s, r - mask, buf, n));
            PT_TRY(pt_sched_end_round(s));
            break;
        }
        mask <<= 1;
    }
    for (mask >>= 1; mask > 0; mask >>= 1)
        if (r + mask < p) PT_TRY(pt_sched_send(s, r + mask, buf, n));
    return pt_sched_end_round(s);
}
