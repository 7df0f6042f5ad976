/* Hierarchical (node-aware) allreduce through an MPI-3 shared-memory window (in the spirit of
 * Li, Hoefler and Snir, "NUMA-aware shared-memory collective communication for MPI", HPDC 2013,
 * and the two-level allreduce of Horovod and NCCL):
 *
 *   1. each rank copies its vector into its own region of a window shared by the ranks of its node;
 *   2. node barrier; rank i of the L ranks on a node adds up block i of all L regions in place;
 *   3. across nodes, the ranks holding block i on each node allreduce it with the ring algorithm;
 *   4. node barrier; every rank copies all L finished blocks out of the window;
 *   5. node barrier, so the window region can be reused.
 *
 * No message crosses the node: the intra-node part is plain loads and stores, and each block is
 * summed by exactly one rank, so all ranks end with bitwise the same result.
 * Cost with N nodes of L ranks: intra-node 3 barriers (alpha_shm each) + n (copy in) +
 * (L-1)/L n gamma + n (copy out) bytes of memory traffic per rank; inter-node the ring on n/L
 * elements: 2(N-1) alpha + 2 (N-1)/N (n/L) beta + (N-1)/N (n/L) gamma, with all L ranks of a node
 * driving the network at once. Needs the same L on every node (checked; otherwise use ring).
 * Two window regions alternate between consecutive hierarchical collectives, so two may be in
 * flight (e.g. gradient buckets); a third must wait for the first.
 *
 * Zero-copy path: when every rank's buffer lies at the same offset of the shared buffer from
 * pt_comm_buffer_alloc, steps 1 and 4 disappear: after a barrier, rank i sums block i of all L
 * buffers and writes the sum into all of them in one pass (cache-sized chunks), then a barrier.
 * Memory traffic per rank drops from about 8n bytes (copies, write-allocate counted) to about 3n. Each region has its own node
 * communicator for the barriers, because MPI matches nonblocking barriers by call order, and two
 * schedules progressed alternately may post theirs in different orders on different ranks. */
#include "schedule.h"

pt_status pt_allreduce_hierarchical_build(pt_sched *s, void *buf, int64_t n)
{
    pt_comm *c = s->comm;
    if (c->size == 1 || n == 0) return PT_OK;
    if (!c->uniform)
        return PT_ERR(PT_ERR_ARG, "use --allreduce ring or rabenseifner",
                      "the hierarchical allreduce needs the same number of ranks on every node");
    const size_t es = s->esize;
    const int region = (int)(c->hier_started++ % 2);
    if (c->region_busy[region])
        return PT_ERR(PT_ERR_ARG, "complete an earlier hierarchical allreduce first",
                      "more than two hierarchical allreduces in flight on one communicator");
    c->region_busy[region] = 1;
    s->shm_region = region;

    const int L = c->node_size, me = c->node_rank;
    char *b = buf;
    const pt_group world = s->group;
    int cross_rank;
    PT_MPI_CHECK(MPI_Comm_rank(c->cross, &cross_rank));
    const pt_group node = {.comm = c->node_region[region], .rank = me, .size = L};

    /* Zero copy if every rank of the node passes the same offset of its shared buffer (decided
     * together, so no two ranks take different paths). */
    long long off_in_user = -1, mm_none[2] = {1, -1}, *mm = mm_none;
    if (c->user_win != MPI_WIN_NULL) { /* registered on every rank, or on none */
        if (b >= c->user_slots[me] && b + es * (size_t)n <= c->user_slots[me] + c->user_bytes)
            off_in_user = (long long)(b - c->user_slots[me]);
        /* in the schedule's scratch, not on the stack: after a timeout the request stays
         * pending and the scratch is never freed (pt_sched_free) */
        mm = pt_sched_scratch(s, 2 * sizeof *mm);
        if (!mm) return PT_ERR(PT_ERR_NOMEM, NULL, "no scratch for the zero-copy agreement");
        mm[0] = -off_in_user, mm[1] = off_in_user;
        MPI_Request *req = pt_sched_scratch(s, sizeof *req);
        if (!req) return PT_ERR(PT_ERR_NOMEM, NULL, "no scratch for the zero-copy agreement");
        PT_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, mm, 2, MPI_LONG_LONG, MPI_MAX, c->node, req));
        PT_TRY(pt_sched_wait_request(s, req));
    }
    if (-mm[0] == mm[1] && mm[1] >= 0) {
        int64_t off, len;
        pt_block_range(n, L, me, &off, &len);
        void *blocks[L];
        for (int j = 0; j < L; j++) blocks[j] = c->user_slots[(me + j) % L] + off_in_user + es * (size_t)off;
        s->group = node;
        PT_TRY(pt_sched_barrier(s));
        if (c->nnodes == 1) {
            PT_TRY(pt_sched_reduce_all(s, blocks, L, len));
            PT_TRY(pt_sched_end_round(s));
        } else {
            for (int j = 1; j < L; j++) PT_TRY(pt_sched_reduce(s, blocks[0], blocks[j], len));
            PT_TRY(pt_sched_end_round(s));
            s->group = (pt_group){.comm = c->cross, .rank = cross_rank, .size = c->nnodes};
            PT_TRY(pt_allreduce_ring_build(s, blocks[0], len));
            s->group = node;
            for (int j = 1; j < L; j++) PT_TRY(pt_sched_copy(s, blocks[j], blocks[0], len));
            PT_TRY(pt_sched_end_round(s));
        }
        PT_TRY(pt_sched_barrier(s));
        PT_TRY(pt_sched_end_round(s));
        s->group = world;
        return PT_OK;
    }

    PT_TRY(pt_comm_shm_reserve(c, es * (size_t)n));
    char *mine = c->slots[me] + (size_t)region * c->region_bytes;

    PT_TRY(pt_sched_copy(s, mine, buf, n)); /* 1 */
    PT_TRY(pt_sched_end_round(s));

    s->group = node; /* 2 */
    PT_TRY(pt_sched_barrier(s));
    int64_t off, len;
    pt_block_range(n, L, me, &off, &len);
    for (int j = 1; j < L; j++) {
        char *other = c->slots[(me + j) % L] + (size_t)region * c->region_bytes;
        PT_TRY(pt_sched_reduce(s, mine + es * (size_t)off, other + es * (size_t)off, len));
    }
    PT_TRY(pt_sched_end_round(s));

    if (c->nnodes > 1) { /* 3 */
        s->group = (pt_group){.comm = c->cross, .rank = cross_rank, .size = c->nnodes};
        PT_TRY(pt_allreduce_ring_build(s, mine + es * (size_t)off, len));
        s->group = node;
    }

    PT_TRY(pt_sched_barrier(s)); /* 4 */
    for (int j = 0; j < L; j++) {
        int64_t o, l;
        pt_block_range(n, L, j, &o, &l);
        char *src = c->slots[j] + (size_t)region * c->region_bytes + es * (size_t)o;
        PT_TRY(pt_sched_copy(s, b + es * (size_t)o, src, l));
    }
    PT_TRY(pt_sched_end_round(s));

    PT_TRY(pt_sched_barrier(s)); /* 5 */
    PT_TRY(pt_sched_end_round(s));
    s->group = world;
    return PT_OK;
}
