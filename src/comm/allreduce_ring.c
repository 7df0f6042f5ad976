/* Ring allreduce: reduce-scatter around a ring, then allgather around it (Patarasuk and Yuan,
 * "Bandwidth optimal all-reduce algorithms for clusters of workstations", JPDC 2009; the scheme
 * Baidu's ring allreduce and NCCL use).
 *
 * The vector is cut into p blocks. In reduce-scatter round k (k = 0..p-2) rank r sends block
 * (r - k) mod p to its right neighbour, receives block (r - k - 1) mod p from its left one and adds
 * it in; after p-1 rounds rank r holds the full sum of block (r + 1) mod p. The allgather passes
 * the finished blocks around the same ring in p-1 more rounds.
 *
 * Segmentation: a vector of at least PT_RING_PIPELINE_MIN bytes (default 16 MiB) is cut into
 * pieces of p segments of PT_RING_SEGMENT bytes (default 256 KiB), each allreduced by its own
 * ring, pipelined: round t of the schedule
 * runs round t - k of piece k for every piece in flight, so transfers of one piece overlap the
 * reductions of the previous one and each received segment is reduced while still in cache.
 * Measured at np=2 (benchmarks/RESULTS.md): +26% busbw at 64 MiB, +48% at 256 MiB over the
 * unsegmented ring, but a few percent slower at 1-8 MiB (more rounds), hence the threshold.
 *
 * Cost: 2(p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma unsegmented; with m pieces the latency
 * term becomes (m + 2(p-1) - 1) alpha while the bandwidth terms stay. Bandwidth optimal, latency
 * linear in p: the choice for large vectors. Any p works (no power-of-two assumption); for n < p
 * some blocks are empty and their transfers are left out on both sides. */
#include <stdlib.h>

#include "schedule.h"

/* Adds round j (0 .. 2p-3) of the ring over the n elements at buf, with scratch tmp. */
static pt_status ring_round(pt_sched *s, char *buf, int64_t n, char *tmp, int j)
{
    const int p = s->group.size, r = s->group.rank;
    const int right = (r + 1) % p, left = (r - 1 + p) % p;
    const size_t es = s->esize;
    int64_t off, len;
    if (j < p - 1) { /* reduce-scatter */
        int sb = ((r - j) % p + p) % p, rb = ((r - j - 1) % p + p) % p;
        pt_block_range(n, p, sb, &off, &len);
        PT_TRY(pt_sched_send(s, right, buf + es * (size_t)off, len));
        pt_block_range(n, p, rb, &off, &len);
        PT_TRY(pt_sched_recv(s, left, tmp, len));
        return pt_sched_reduce(s, buf + es * (size_t)off, tmp, len);
    }
    const int k = j - (p - 1); /* allgather */
    int sb = ((r + 1 - k) % p + p) % p, rb = ((r - k) % p + p) % p;
    pt_block_range(n, p, sb, &off, &len);
    PT_TRY(pt_sched_send(s, right, buf + es * (size_t)off, len));
    pt_block_range(n, p, rb, &off, &len);
    return pt_sched_recv(s, left, buf + es * (size_t)off, len);
}

pt_status pt_allreduce_ring_build(pt_sched *s, void *buf, int64_t n)
{
    const int p = s->group.size;
    if (p == 1 || n == 0) return PT_OK;
    const size_t es = s->esize;
    const char *env = getenv("PT_RING_SEGMENT"), *env_min = getenv("PT_RING_PIPELINE_MIN");
    int64_t seg = (env && atoll(env) > 0 ? atoll(env) : 256 * 1024) / (int64_t)es;
    const long long pipeline_min = env_min ? atoll(env_min) : 16LL << 20;
    if (seg < 1) seg = 1;
    const int64_t piece = seg * p;
    const int64_t m = n <= piece || (long long)es * n < pipeline_min ? 1 : (n + piece - 1) / piece;
    const int R = 2 * (p - 1);                                   /* rounds per piece */
    const int slots = m < R ? (int)m : R;                        /* pieces in flight at most */
    const int64_t piece_len = m == 1 ? n : piece; /* unsegmented: one piece of everything */
    int64_t maxblock, off;
    pt_block_range(piece_len, p, 0, &off, &maxblock);
    char *tmp = pt_sched_scratch(s, es * (size_t)(maxblock * slots));
    if (!tmp) return PT_ERR(PT_ERR_NOMEM, NULL, "no scratch for the ring");
    char *b = buf;
    for (int64_t t = 0; t < m + R - 1; t++) {
        for (int64_t k = t - R + 1 < 0 ? 0 : t - R + 1; k <= t && k < m; k++) {
            const int64_t start = k * piece_len;
            const int64_t len = n - start < piece_len ? n - start : piece_len;
            char *pt = tmp + es * (size_t)(maxblock * (k % slots));
            PT_TRY(ring_round(s, b + es * (size_t)start, len, pt, (int)(t - k)));
        }
        PT_TRY(pt_sched_end_round(s));
    }
    return PT_OK;
}
