/* Ring allreduce: reduce-scatter around a ring, then allgather around it (Patarasuk and Yuan,
 * "Bandwidth optimal all-reduce algorithms for clusters of workstations", JPDC 2009; the scheme
 * Baidu's ring allreduce and NCCL use).
 *
 * The vector is cut into p blocks. In reduce-scatter round k (k = 0..p-2) rank r sends block
 * (r - k) mod p to its right neighbour, receives block (r - k - 1) mod p from its left one and adds
 * it in; after p-1 rounds rank r holds the full sum of block (r + 1) mod p. The allgather passes
 * the finished blocks around the same ring in p-1 more rounds.
 *
 * Cost: 2(p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma: bandwidth optimal, latency linear in p,
 * so it wins for large vectors. Any p works (no power-of-two assumption); for n < p some blocks
 * are empty and their transfers are left out on both sides. */
#include "schedule.h"

pt_status pt_allreduce_ring_build(pt_sched *s, void *buf, int64_t n)
{
    const int p = s->group.size, r = s->group.rank;
    if (p == 1 || n == 0) return PT_OK;
    const int right = (r + 1) % p, left = (r - 1 + p) % p;
    const size_t es = s->esize;
    char *b = buf;
    int64_t maxlen, off, len;
    pt_block_range(n, p, 0, &off, &maxlen); /* block 0 is a longest block */
    char *tmp = pt_sched_scratch(s, es * (size_t)maxlen);
    if (!tmp && maxlen > 0) return PT_ERR(PT_ERR_NOMEM, NULL, "no scratch for the ring");

    for (int k = 0; k < p - 1; k++) { /* reduce-scatter */
        int sb = ((r - k) % p + p) % p, rb = ((r - k - 1) % p + p) % p;
        pt_block_range(n, p, sb, &off, &len);
        PT_TRY(pt_sched_send(s, right, b + es * (size_t)off, len));
        pt_block_range(n, p, rb, &off, &len);
        PT_TRY(pt_sched_recv(s, left, tmp, len));
        PT_TRY(pt_sched_reduce(s, b + es * (size_t)off, tmp, len));
        PT_TRY(pt_sched_end_round(s));
    }
    for (int k = 0; k < p - 1; k++) { /* allgather */
        int sb = ((r + 1 - k) % p + p) % p, rb = ((r - k) % p + p) % p;
        pt_block_range(n, p, sb, &off, &len);
        PT_TRY(pt_sched_send(s, right, b + es * (size_t)off, len));
        pt_block_range(n, p, rb, &off, &len);
        PT_TRY(pt_sched_recv(s, left, b + es * (size_t)off, len));
        PT_TRY(pt_sched_end_round(s));
    }
    return PT_OK;
}
