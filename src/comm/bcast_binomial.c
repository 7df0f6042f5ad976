/* Binomial-tree broadcast (as MPICH's MPI_Bcast for short messages): ranks are renumbered
 * relative to the root; each receives from relative rank - lowbit, then forwards to relative
 * rank + 2^j for every bit j below its lowest set bit.
 *
 * Cost: ceil(log2 p) (alpha + n beta). Any p and root. */
#include "schedule.h"

pt_status pt_bcast_binomial_build(pt_sched *s, void *buf, int64_t n, int root)
{
    const int p = s->group.size, r = s->group.rank;
    if (p == 1 || n == 0) return PT_OK;
    const int vr = (r - root + p) % p;
    int mask = 1;
    while (mask < p) {
        if (vr & mask) {
            PT_TRY(pt_sched_recv(s, ((vr - mask) + root) % p, buf, n));
            PT_TRY(pt_sched_end_round(s));
            break;
        }
        mask <<= 1;
    }
    for (mask >>= 1; mask > 0; mask >>= 1)
        if (vr + mask < p) PT_TRY(pt_sched_send(s, ((vr + mask) + root) % p, buf, n));
    return pt_sched_end_round(s);
}
