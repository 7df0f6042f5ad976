/* Pairwise-exchange all-to-all(v) (as MPICH's MPI_Alltoallv for long messages): the rank's own
 * block is copied locally; in round k (k = 1..p-1) rank r sends to (r + k) mod p and receives from
 * (r - k) mod p, so each round is a permutation and no rank is flooded.
 *
 * Cost: (p-1) alpha + (sum of the blocks sent) beta. Any p; empty blocks skipped. Counts and
 * displacements are in elements. */
#include "schedule.h"

pt_status pt_alltoallv_pairwise_build(pt_sched *s, const void *send, const int64_t *scounts,
                                      const int64_t *sdispls, void *recv, const int64_t *rcounts,
                                      const int64_t *rdispls)
{
    const int p = s->group.size, r = s->group.rank;
    const size_t es = s->esize;
    const char *in = send;
    char *out = recv;
    PT_TRY(pt_sched_copy(s, out + es * (size_t)rdispls[r], in + es * (size_t)sdispls[r], scounts[r]));
    PT_TRY(pt_sched_end_round(s));
    for (int k = 1; k < p; k++) {
        const int to = (r + k) % p, from = (r - k + p) % p;
        PT_TRY(pt_sched_send(s, to, in + es * (size_t)sdispls[to], scounts[to]));
        PT_TRY(pt_sched_recv(s, from, out + es * (size_t)rdispls[from], rcounts[from]));
        PT_TRY(pt_sched_end_round(s));
    }
    return PT_OK;
}
