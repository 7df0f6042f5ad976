/* The distributed sampler: a permutation of the split per epoch that depends on (seed, epoch)
 * only, and the contiguous share of a global batch that each rank trains on. */
#include <stdlib.h>

#include "paratrain/data.h"
#include "paratrain/rng.h"

pt_status pt_sampler_init(pt_sampler *s, int64_t n, uint64_t seed, bool shuffle)
{
    s->n = n, s->seed = seed, s->epoch = -1, s->shuffle = shuffle;
    s->perm = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    PT_ALLOC_CHECK(s->perm, sizeof(int64_t) * (size_t)n);
    return PT_OK;
}

void pt_sampler_free(pt_sampler *s)
{
    free(s->perm);
    s->perm = NULL;
}

void pt_sampler_set_epoch(pt_sampler *s, int64_t epoch)
{
    if (s->epoch == epoch) return;
    s->epoch = epoch;
    for (int64_t i = 0; i < s->n; i++) s->perm[i] = i;
    if (!s->shuffle) return;
    const uint64_t stream = ((uint64_t)PT_STREAM_SHUFFLE << 48) ^ (uint64_t)epoch;
    for (int64_t i = s->n - 1; i > 0; i--) {
        int64_t j = (int64_t)pt_rng_below(s->seed, stream, (uint64_t)i, (uint64_t)(i + 1));
        int64_t t = s->perm[i];
        s->perm[i] = s->perm[j], s->perm[j] = t;
    }
}

void pt_batch_share(int64_t rows, int rank, int size, int64_t *offset, int64_t *count)
{
    int64_t base = rows / size, extra = rows % size;
    *count = base + (rank < extra ? 1 : 0);
    *offset = rank * base + (rank < extra ? rank : extra);
}
