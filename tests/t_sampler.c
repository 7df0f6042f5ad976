/* The distributed sampler and batch sharing: a permutation per epoch that depends on (seed, epoch)
 * only; the ranks' shares of a global batch are disjoint, contiguous, and cover it exactly, for
 * any number of ranks; the same global batch whatever the number of ranks. */
#include <string.h>

#include "paratrain/data.h"
#include "testutil.h"

int main(void)
{
    const int64_t n = 1009; /* prime: no batch divides it */
    pt_sampler a, b;
    REQUIRE_OK(pt_sampler_init(&a, n, 17, true));
    REQUIRE_OK(pt_sampler_init(&b, n, 17, true));
    int *seen = calloc(n, sizeof *seen);
    for (int64_t e = 0; e < 3; e++) {
        pt_sampler_set_epoch(&a, e);
        memset(seen, 0, n * sizeof *seen);
        for (int64_t i = 0; i < n; i++)
            if (a.perm[i] >= 0 && a.perm[i] < n) seen[a.perm[i]]++;
        int bad = 0;
        for (int64_t i = 0; i < n; i++) bad += seen[i] != 1;
        CHECK(bad == 0, "epoch %lld: not a permutation (%d entries wrong)", (long long)e, bad);
        int fixed = 0;
        for (int64_t i = 0; i < n; i++) fixed += a.perm[i] == i;
        CHECK(fixed < 20, "epoch %lld: %d fixed points, not shuffled", (long long)e, fixed);
    }
    /* Epochs differ; the same epoch is the same permutation, reached in any order. */
    pt_sampler_set_epoch(&a, 2);
    pt_sampler_set_epoch(&b, 0);
    CHECK(memcmp(a.perm, b.perm, sizeof(int64_t) * n) != 0, "epochs 0 and 2 are equal");
    pt_sampler_set_epoch(&b, 2);
    CHECK(!memcmp(a.perm, b.perm, sizeof(int64_t) * n), "epoch 2 not repeatable");

    /* Shares: disjoint, contiguous, covering, sizes differing by at most one. */
    for (int64_t rows = 0; rows <= 37; rows++)
        for (int size = 1; size <= 9; size++) {
            int64_t next = 0, lo = rows, hi = 0;
            for (int r = 0; r < size; r++) {
                int64_t off, cnt;
                pt_batch_share(rows, r, size, &off, &cnt);
                CHECK(off == next, "rows %lld size %d rank %d: offset %lld, expected %lld",
                      (long long)rows, size, r, (long long)off, (long long)next);
                next = off + cnt;
                lo = cnt < lo ? cnt : lo, hi = cnt > hi ? cnt : hi;
            }
            CHECK(next == rows, "rows %lld size %d: shares cover %lld", (long long)rows, size,
                  (long long)next);
            CHECK(hi - lo <= 1, "rows %lld size %d: unbalanced shares", (long long)rows, size);
        }
    pt_sampler_free(&a), pt_sampler_free(&b);
    free(seen);
    return test_exit_code("t_sampler");
}
