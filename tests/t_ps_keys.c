/* Parameter-server key sharding (pt_ps_shard_keys): for S = 1..4 servers and models of odd
 * sizes, every parameter is owned by exactly one server, ranges are contiguous and non-empty,
 * cuts sit on tensor boundaries when one is within half a fair share, and no range exceeds
 * twice its fair share. Also the placement, the --ps-sync parser and the straggler pattern
 * (PT_FAULT_INJECT=slow:RANK:MS[:PERIOD:PHASE]). */
#include <stdio.h>
#include <stdlib.h>

#include "paratrain/fault.h"
#include "paratrain/ps.h"

static int failures = 0;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void check_model(const int64_t *numel, int n, int S)
{
    int64_t off[16], total = 0, b[8];
    for (int i = 0; i < n; i++) off[i] = total, total += numel[i];
    CHECK(pt_ps_shard_keys(off, numel, n, total, S, b) == PT_OK, "shard_keys failed");
    /* exactly once: count owners per element */
    unsigned char *own = calloc((size_t)total, 1);
    for (int k = 0; k < S; k++)
        for (int64_t e = b[k]; e < b[k + 1]; e++) own[e]++;
    int64_t bad = 0;
    for (int64_t e = 0; e < total; e++) bad += own[e] != 1;
    free(own);
    CHECK(b[0] == 0 && b[S] == total && bad == 0, "S=%d total=%lld: %lld elements not owned once", S,
          (long long)total, (long long)bad);
    const double fair = (double)total / S;
    for (int k = 0; k < S; k++) {
        const int64_t len = b[k + 1] - b[k];
        CHECK(total < S || len >= 1, "S=%d: server %d has an empty range", S, k);
        CHECK(len <= 2.0 * fair + 1, "S=%d: server %d has %lld of %lld (fair %.1f)", S, k,
              (long long)len, (long long)total, fair);
    }
    /* a cut inside a tensor only when no tensor boundary is within half a fair share */
    for (int k = 1; k < S; k++) {
        int on_boundary = 0;
        for (int i = 0; i <= n; i++) on_boundary |= (i < n ? off[i] : total) == b[k];
        if (!on_boundary) {
            const double ideal = k * fair;
            for (int i = 0; i <= n; i++) {
                const double d = (i < n ? off[i] : total) - ideal;
                CHECK((d < 0 ? -d : d) > total / (2 * S) || b[k] == b[k - 1] + 1,
                      "S=%d cut %d at %lld splits a tensor, boundary %lld is near", S, k,
                      (long long)b[k], (long long)(i < n ? off[i] : total));
            }
        }
    }
}

int main(void)
{
    const int64_t mlp[] = {784 * 64, 64, 64 * 32, 32, 32 * 10, 10};      /* the tests' mlp */
    const int64_t odd[] = {7, 1, 13, 3, 101, 5, 1};                      /* odd sizes */
    const int64_t one[] = {12345};                                       /* one big tensor */
    const int64_t tiny[] = {1, 1, 1};                                    /* fewer than S at S=4 */
    const int64_t skew[] = {1000, 1, 1, 1, 1, 1, 1, 3};                  /* one dominant tensor */
    for (int S = 1; S <= 4; S++) {
        check_model(mlp, 6, S);
        check_model(odd, 7, S);
        check_model(one, 1, S);
        check_model(tiny, 3, S);
        check_model(skew, 8, S);
    }
    /* the mlp over 2 servers: the nearest boundaries to the balanced cut 26325 (0 and 50176)
     * are more than half a share (13162) away, so the cut splits fc1.weight */
    int64_t off[6], t = 0, b[3];
    for (int i = 0; i < 6; i++) off[i] = t, t += mlp[i];
    pt_ps_shard_keys(off, mlp, 6, t, 2, b);
    CHECK(b[1] == 26325, "mlp S=2: cut at %lld", (long long)b[1]);
    /* a boundary within half a share is taken: {10, 10, 10, 11} over 2: ideal 20.5 -> 20 */
    const int64_t q[] = {10, 10, 10, 11};
    int64_t qo[] = {0, 10, 20, 30};
    pt_ps_shard_keys(qo, q, 4, 41, 2, b);
    CHECK(b[1] == 20, "snap: cut at %lld, expected 20", (long long)b[1]);
    /* placement: spread puts server k at k * world / S, rank 0 always a server */
    CHECK(pt_ps_server_rank(0, 2, 5, PT_PS_SPREAD) == 0 && pt_ps_server_rank(1, 2, 5, PT_PS_SPREAD) == 2,
          "spread placement");
    CHECK(pt_ps_server_rank(1, 2, 5, PT_PS_FIRST) == 1, "first placement");
    pt_ps_sync k;
    int bound;
    CHECK(pt_ps_parse_sync("ssp:3", &k, &bound) == PT_OK && k == PT_PS_SSP && bound == 3, "ssp:3");
    CHECK(pt_ps_parse_sync("", &k, &bound) == PT_OK && k == PT_PS_BSP, "empty is bsp");
    CHECK(pt_ps_parse_sync("asp", &k, &bound) == PT_OK && k == PT_PS_ASP, "asp");
    CHECK(pt_ps_parse_sync("ssp:", &k, &bound) != PT_OK, "ssp: refused");
    CHECK(pt_ps_parse_sync("ssp:1x", &k, &bound) != PT_OK, "ssp:1x refused");
    CHECK(pt_ps_parse_sync("BSP", &k, &bound) != PT_OK, "BSP refused");
    /* stragglers: every step, or only in the steps with step % PERIOD == PHASE (one of three
     * workers slow in turn); malformed items slow nobody */
    setenv("PT_FAULT_INJECT", "ckpt-save:3,slow:1:40,slow:2:50:3:1,slow:3:60:3:2", 1);
    for (int64_t st = 0; st < 7; st++) {
        CHECK(pt_fault_slow_ms(1, st) == 40, "slow:1:40 at step %lld", (long long)st);
        CHECK(pt_fault_slow_ms(2, st) == (st % 3 == 1 ? 50 : 0), "slow:2:50:3:1 at step %lld", (long long)st);
        CHECK(pt_fault_slow_ms(3, st) == (st % 3 == 2 ? 60 : 0), "slow:3:60:3:2 at step %lld", (long long)st);
        CHECK(pt_fault_slow_ms(0, st) == 0, "rank 0 not slow at step %lld", (long long)st);
    }
    const char *bad[] = {"slow:2:50:3", "slow:2:50:3:3", "slow:2:50:0:0", "slow:2:-5", "slow:2:50:3:1x",
                         "slow:2:", "slow:2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv("PT_FAULT_INJECT", bad[i], 1);
        CHECK(pt_fault_slow_ms(2, 1) == 0, "malformed '%s' slows rank 2", bad[i]);
    }
    unsetenv("PT_FAULT_INJECT");
    if (failures) {
        fprintf(stderr, "t_ps_keys: %d failures\n", failures);
        return 1;
    }
    printf("ok: key sharding covers every parameter once (S 1..4, odd sizes), snaps to tensor boundaries\n");
    return 0;
}
