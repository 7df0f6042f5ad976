/* Ring allgather (the second half of the ring allreduce), with per-rank block sizes: each rank
 * places its block, then in round k passes block (r - k) mod p to the right and receives block
 * (r - k - 1) mod p from the left, straight into place.
 *
 * Cost: (p-1) alpha + (p-1)/p n beta (n the gathered elements). Any p; empty blocks skipped. */
#include "schedule.h"

pt_status pt_allgather_ring_build(pt_sched *s, const void *send, void *recv, const int64_t *counts)
{
    const int p = s->group.size, r = s->group.rank;
    const size_t es = s->esize;
    char *out = recv;
    int64_t offs[p], total = 0;
    for (int i = 0; i < p; i++) offs[i] = total, total += counts[i];
    PT_TRY(pt_sched_copy(s, out + es * (size_t)offs[r], send, counts[r]));
    PT_TRY(pt_sched_end_round(s));
    const int right = (r + 1) % p, left = (r - 1 + p) % p;
    for (int k = 0; k < p - 1; k++) {
        int sb = ((r - k) % p + p) % p, rb = ((r - k - 1) % p + p) % p;
        PT_TRY(pt_sched_send(s, right, out + es * (size_t)offs[sb], counts[sb]));
        PT_TRY(pt_sched_recv(s, left, out + es * (size_t)offs[rb], counts[rb]));
        PT_TRY(pt_sched_end_round(s));
    }
    return PT_OK;
}
