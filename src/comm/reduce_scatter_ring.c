/* Ring reduce-scatter (the first half of the ring allreduce, Patarasuk and Yuan, JPDC 2009), with
 * per-rank block sizes. The input is copied to scratch; in round k (k = 0..p-2) rank r sends its
 * partial block (r - k - 1) mod p to the right and adds the received partial block
 * (r - k - 2) mod p, so after p-1 rounds it holds the full reduction of its own block r.
 *
 * Cost: (p-1) alpha + (p-1)/p n beta + (p-1)/p n gamma (n the total elements, balanced blocks).
 * Any p; empty blocks are skipped on both sides. */
#include <string.h>

#include "schedule.h"

pt_status pt_reduce_scatter_ring_build(pt_sched *s, const void *send, void *recv,
                                       const int64_t *counts)
{
    const int p = s->group.size, r = s->group.rank;
    const size_t es = s->esize;
    int64_t total = 0, offs[p];
    for (int i = 0; i < p; i++) offs[i] = total, total += counts[i];
    if (p == 1 || total == 0) {
        PT_TRY(pt_sched_copy(s, recv, send, counts[r]));
        return pt_sched_end_round(s);
    }
    int64_t maxc = 0;
    for (int i = 0; i < p; i++) maxc = counts[i] > maxc ? counts[i] : maxc;
    char *work = pt_sched_scratch(s, es * (size_t)total), *tmp = pt_sched_scratch(s, es * (size_t)(maxc ? maxc : 1));
    if (!work || !tmp) return PT_ERR(PT_ERR_NOMEM, NULL, "no scratch for reduce-scatter");
    memcpy(work, send, es * (size_t)total); /* at build time: the caller's send is ready now */
    const int right = (r + 1) % p, left = (r - 1 + p) % p;
    for (int k = 0; k < p - 1; k++) {
        int sb = ((r - k - 1) % p + p) % p, rb = ((r - k - 2) % p + p) % p;
        PT_TRY(pt_sched_send(s, right, work + es * (size_t)offs[sb], counts[sb]));
        PT_TRY(pt_sched_recv(s, left, tmp, counts[rb]));
        PT_TRY(pt_sched_reduce(s, work + es * (size_t)offs[rb], tmp, counts[rb]));
        PT_TRY(pt_sched_end_round(s));
    }
    PT_TRY(pt_sched_copy(s, recv, work + es * (size_t)offs[r], counts[r]));
    return pt_sched_end_round(s);
}
