/* Low-precision allreduce: fp16 or bf16 on the wire, fp32 accumulation.
 *
 * Each rank rounds its vector once to the 16-bit type. Block r goes to rank r (pairwise
 * all-to-all); rank r widens the p copies of its block to fp32, adds them in rank order, and
 * rounds the sum once; a ring allgather then brings every rank all blocks. A ring allreduce on the
 * 16-bit type would instead round the partial sum at each of its p-1 hops, so its error grows
 * with p; here every element is rounded twice whatever p is, and all ranks get the same bits.
 *
 * Cost, n elements of 2 bytes: 2(p-1) alpha + 2 (p-1)/p 2n beta + (p-1)/p n gamma (the same volume
 * as a ring allreduce of the 16-bit vector, half that of fp32). The pairwise all-to-all costs
 * p-1 rounds of latency where the ring's reduce-scatter costs the same. Any p. */
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#else /* src/comm also builds without OpenMP (tests/test_comm_standalone.sh) */
static inline int omp_get_num_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
#endif

#include "half_kernels.h"
#include "paratrain/compress.h"
#include "schedule.h"

/* each thread converts one contiguous chunk with the ISA-dispatched loops of half_kernels.c */
#define CHUNKED(N, CALL)                                                                           \
    do {                                                                                           \
        const int64_t n_ = (N);                                                                    \
        _Pragma("omp parallel if (n_ > 65536)")                                                    \
        {                                                                                          \
            int64_t lo_, len_;                                                                     \
            pt_block_range(n_, omp_get_num_threads(), omp_get_thread_num(), &lo_, &len_);          \
            CALL;                                                                                  \
        }                                                                                          \
    } while (0)

pt_status pt_allreduce_lowp(pt_comm *c, float *x, int64_t n, pt_dtype wire)
{
    if (wire != PT_F16 && wire != PT_BF16)
        return PT_ERR(PT_ERR_ARG, "use fp16 or bf16", "low-precision allreduce: wire type %d", (int)wire);
    const int bf = wire == PT_BF16, p = c->size, r = c->rank;
    int64_t my_off, my_len;
    pt_block_range(n, p, r, &my_off, &my_len);
    uint16_t *h = malloc(sizeof(uint16_t) * (size_t)(n + 1));
    uint16_t *blocks = malloc(sizeof(uint16_t) * (size_t)(my_len * p + 1));
    int64_t *cnt = malloc(sizeof(int64_t) * 4 * (size_t)p);
    if (!h || !blocks || !cnt) {
        free(h), free(blocks), free(cnt);
        return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for a %lld-element 16-bit vector", (long long)n);
    }
    int64_t *sc = cnt, *sd = cnt + p, *rc = cnt + 2 * p, *rd = cnt + 3 * p;
    for (int q = 0; q < p; q++) {
        pt_block_range(n, p, q, &sd[q], &sc[q]);
        rc[q] = my_len, rd[q] = my_len * q;
    }
    const pt_half_kernels *k = pt_half_kernels_get();
    CHUNKED(n, k->from_f32(x + lo_, h + lo_, len_, bf));
    pt_status st = pt_alltoallv(c, h, sc, sd, blocks, rc, rd, wire);
    if (st == PT_OK) {
        /* block q of `blocks` is rank q's copy of my block: sum the copies in rank order */
        CHUNKED(my_len, k->sum_blocks(blocks + lo_, my_len, len_, p, h + my_off + lo_, bf));
        st = pt_allgather(c, h + my_off, h, sc, wire);
    }
    if (st == PT_OK) CHUNKED(n, k->to_f32(h + lo_, x + lo_, len_, bf));
    free(h), free(blocks), free(cnt);
    return st;
}
