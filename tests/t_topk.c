/* Top-k selection (pt_topk_select, compress.h) against a sort: every implementation
 * (src/comm/topk.c: radix, sample + filter, and the sample's fallbacks forced by a bad sample)
 * over distributions and edge cases, at 1 and 2 OpenMP threads, must give exactly the indices
 * and values of a qsort by (key descending, index ascending), sorted by index, where the key is
 * |x|'s bit pattern (so NaN ranks above inf, and -0 ties with +0). It also checks that each path
 * ran where it should: the sample path selects without falling back on gradient-like data, and
 * the forced misjudgements do fall back. tests/test_topk.sh runs it under every ISA level. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../src/comm/sparse.h"
#include "paratrain/cpu.h"
#include "testutil.h"

static uint32_t key_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u & 0x7fffffffu;
}

static const float *ref_x;
static int by_key(const void *a, const void *b)
{
    const int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    const uint32_t x = key_of(ref_x[i]), y = key_of(ref_x[j]);
    if (x != y) return x > y ? -1 : 1;
    return i < j ? -1 : 1;
}
static int by_index(const void *a, const void *b)
{
    const int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    return i < j ? -1 : i > j;
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unif(uint64_t seed, int64_t i) /* (0, 1) */
{
    return ((double)(mix(seed * 0x9E3779B97F4A7C15ull + (uint64_t)i) >> 11) + 0.5) / 9007199254740992.0;
}

enum { NDIST = 13 };
static const char *dist_name[NDIST] = {"uniform", "gauss", "heavy-tail", "all-equal", "9-levels",
                                       "99%-zeros", "all-zeros", "sorted-up", "sorted-down",
                                       "nan-inf", "layer-scales", "periodic", "denormal"};

static void fill(float *x, int64_t n, int d)
{
    for (int64_t i = 0; i < n; i++) {
        const double u = unif((uint64_t)d + 1, i), v = unif((uint64_t)d + 101, i);
        const float sg = u < 0.5 ? -1.0f : 1.0f;
        float f = 0.0f;
        switch (d) {
        case 0: f = (float)(2.0 * v - 1.0); break;
        case 1: f = (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v)); break;
        case 2: f = sg * (float)(1e-3 * pow(v, -0.7)); break;
        case 3: f = sg * 0.5f; break;
        case 4: f = (float)((int)(v * 9.0) - 4) * 0.25f; break;
        case 5: f = v < 0.01 ? sg * (float)v : 0.0f; break;
        case 6: f = u < 0.5 ? -0.0f : 0.0f; break;
        case 7: f = sg * (float)i / (float)n; break;
        case 8: f = sg * (float)(n - i) / (float)n; break;
        case 9:
            f = (float)(2.0 * v - 1.0);
            if (i % 997 == 5) f = NAN;
            if (i % 1009 == 7) f = -INFINITY;
            if (i % 1013 == 9) f = INFINITY;
            if (i % 2003 == 11) f = -NAN;
            break;
        case 10: f = sg * (float)(v * pow(10.0, (double)(8 * i / (n + 1)) - 4.0)); break;
        case 11: f = (i % 1024 == 0) ? sg * (float)(1.0 + v) : sg * (float)(1e-3 * v); break;
        case 12: f = sg * (float)(v * 1e-39); break;
        }
        x[i] = f;
    }
}

int main(void)
{
    const int64_t ns[] = {1, 2, 7, 33, 1000, 4097, 8192, 8193, 65539, 300007};
    const int nn = (int)(sizeof ns / sizeof *ns);
    /* the methods: radix; sample with its defaults; a tiny sample; a threshold judged far too
     * high (too few candidates: fallback); a buffer far too small (too many: fallback); auto */
    const struct {
        const char *name;
        pt_topk_method m;
        pt_topk_tune t;
    } meths[] = {
        {"radix", PT_TOPK_RADIX, {0, 0, 0}},
        {"sample", PT_TOPK_SAMPLE, {0, 0, 0}},
        {"sample-16", PT_TOPK_SAMPLE, {16, 0, 0}},
        {"sample-high", PT_TOPK_SAMPLE, {0, 0.02, 0}},
        {"sample-small-buffer", PT_TOPK_SAMPLE, {0, 0, 1e-4}},
        {"auto", PT_TOPK_AUTO, {0, 0, 0}},
    };
    const int nm = (int)(sizeof meths / sizeof *meths);
    int64_t paths[6][3] = {{0}};
    int fast_misses = 0, fast_cases = 0;
    printf("top-k: filter kernels %s\n", pt_cpu_isa_name(pt_cpu_isa()));
    for (int a = 0; a < nn; a++) {
        const int64_t n = ns[a];
        float *x = malloc(sizeof(float) * (size_t)n);
        int64_t *order = malloc(sizeof(int64_t) * (size_t)n), *want = malloc(sizeof(int64_t) * (size_t)n);
        uint32_t *idx = malloc(sizeof(uint32_t) * (size_t)n);
        float *val = malloc(sizeof(float) * (size_t)n);
        for (int d = 0; d < NDIST; d++) {
            fill(x, n, d);
            for (int64_t i = 0; i < n; i++) order[i] = i;
            ref_x = x;
            qsort(order, (size_t)n, sizeof *order, by_key);
            const int64_t ks[] = {1, 2, n / 1000, n / 100, n / 16, n / 3, n - 1, n};
            for (int b = 0; b < 8; b++) {
                const int64_t k = ks[b];
                if (k < 1 || k > n || (b > 0 && k == ks[b - 1])) continue;
                memcpy(want, order, sizeof(int64_t) * (size_t)k);
                qsort(want, (size_t)k, sizeof *want, by_index);
                for (int th = 1; th <= 2; th++) {
#ifdef _OPENMP
                    omp_set_num_threads(th);
#else
                    if (th > 1) continue;
#endif
                    for (int mi = 0; mi < nm; mi++) {
                        memset(idx, 0xff, sizeof(uint32_t) * (size_t)n);
                        pt_topk_stats st;
                        REQUIRE_OK(pt_topk_select_with(x, n, k, meths[mi].m, &meths[mi].t, idx, val, &st));
                        int64_t bad = 0, first = -1;
                        for (int64_t e = 0; e < k; e++)
                            if (idx[e] != (uint32_t)want[e] || memcmp(&val[e], &x[want[e]], 4) != 0) {
                                if (first < 0) first = e;
                                bad++;
                            }
                        CHECK(!bad,
                              "%s n %lld k %lld %s %d threads (path %d, %lld candidates): %lld of %lld "
                              "entries differ from the sort, first at %lld (index %u, want %lld)",
                              meths[mi].name, (long long)n, (long long)k, dist_name[d], th, st.path,
                              (long long)st.candidates, (long long)bad, (long long)k, (long long)first,
                              first >= 0 ? idx[first] : 0, first >= 0 ? (long long)want[first] : -1LL);
                        if (k < n) paths[mi][st.path]++;
                        /* the sample path must select by itself on gradient-like data of fresh
                         * values (no heavy ties or zeros: those may admit too many) */
                        if (mi == 1 && n >= 65536 && k <= n / 16 && (d <= 2 || d == 10)) {
                            fast_cases++;
                            if (st.path != 1) {
                                fast_misses++;
                                fprintf(stderr, "sample path fell back: n %lld k %lld %s (%lld candidates)\n",
                                        (long long)n, (long long)k, dist_name[d], (long long)st.candidates);
                            }
                        }
                    }
                }
            }
        }
        free(x), free(order), free(want), free(idx), free(val);
    }
    for (int mi = 0; mi < nm; mi++)
        printf("%-20s paths: radix %lld, sample %lld, sample then radix %lld\n", meths[mi].name,
               (long long)paths[mi][0], (long long)paths[mi][1], (long long)paths[mi][2]);
    CHECK(paths[0][1] == 0 && paths[0][2] == 0, "radix ran the sample path");
    CHECK(paths[1][1] > 0, "the sample path never selected by itself");
    CHECK(paths[3][2] > 0, "a threshold judged too high never fell back");
    CHECK(paths[4][2] > 0, "a buffer too small never fell back");
    CHECK(fast_cases > 0 && fast_misses == 0, "the sample path fell back in %d of %d gradient-like cases",
          fast_misses, fast_cases);
    /* k <= 0 selects nothing and writes nothing */
    float one = 1.0f;
    uint32_t sentinel = 12345;
    REQUIRE_OK(pt_topk_select(&one, 1, 0, &sentinel, &one));
    CHECK(sentinel == 12345, "k = 0 wrote an index");
    return test_exit_code("t_topk");
}
