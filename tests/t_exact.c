/* The exact accumulation of --reproducible (src/parallel/grad_sync.c, pt_exact_to_fixed): the
 * AVX2 and AVX-512 kernels against the scalar one, which is the reference (its 128-bit fixed-point value of
 * a float is checked here against an independent computation in long double arithmetic on
 * powers of two). Covers every exponent and sign, subnormals, zeros, the out-of-range values
 * (|x| >= 2^24, Inf, NaN: counted, added as 0), a sweep over 1 of every 61 of the 2^32 bit
 * patterns, accumulation onto random 128-bit values (carries and borrows between the halves),
 * and every length 0..40 at unaligned starts (the vector loop's tail). Skips a vector kernel,
 * saying so, on a CPU without its instructions. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "../src/parallel/grad_sync.h"
#include "paratrain/cpu.h"
#include "testutil.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}
static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* floor(|x| * 2^96) with x's sign, for |x| < 2^24, from the significand and exponent alone */
static __int128 reference(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    const int e = (int)((u >> 23) & 0xff);
    if (e >= 127 + 24) return 0;
    const uint64_t sig = e ? (u & 0x7fffffu) | 0x800000u : (u & 0x7fffffu);
    const int p = (e ? e : 1) - 150 + PT_EXACT_FRAC_BITS; /* value = sig * 2^p */
    unsigned __int128 q = 0;
    for (int b = 0; b < 24; b++) /* bit by bit: sig's bit b lands at b + p, or below the point */
        if ((sig >> b) & 1u && b + p >= 0) q |= (unsigned __int128)1 << (b + p);
    return (u >> 31) ? -(__int128)q : (__int128)q;
}

static pt_cpu_isa_t isa; /* the vector kernel under test */

static int compare(const float *g, int64_t n, const __int128 *init, const char *what)
{
    __int128 *a = malloc(sizeof(__int128) * (size_t)(n + 1)), *b = malloc(sizeof(__int128) * (size_t)(n + 1));
    int bad = 0;
    for (int first = 0; first <= 1; first++) {
        for (int64_t i = 0; i < n; i++) a[i] = b[i] = init ? init[i] : 0;
        a[n] = b[n] = 0x5a5a; /* guard */
        const int64_t ca = pt_exact_to_fixed(a, g, n, first, PT_ISA_BASELINE);
        const int64_t cb = pt_exact_to_fixed(b, g, n, first, isa);
        CHECK(ca == cb, "%s %s (first %d): out-of-range counts %lld (scalar) vs %lld", pt_cpu_isa_name(isa),
              what, first, (long long)ca, (long long)cb);
        int64_t diff = 0, i0 = -1;
        for (int64_t i = 0; i < n; i++)
            if (a[i] != b[i]) diff += 1, i0 = i0 < 0 ? i : i0;
        CHECK(diff == 0, "%s %s (first %d): %lld of %lld elements differ (first at %lld: float bits 0x%08x)",
              pt_cpu_isa_name(isa), what, first, (long long)diff, (long long)n, (long long)i0,
              i0 >= 0 ? (unsigned)(*(const uint32_t *)(const void *)(g + i0)) : 0u);
        CHECK(b[n] == 0x5a5a && a[n] == 0x5a5a, "%s: wrote past the end", what);
        bad += diff != 0 || ca != cb;
    }
    free(a), free(b);
    return bad;
}

int main(void)
{
    /* the scalar kernel against the bit-by-bit reference: every exponent, both signs, edge
     * significands, and the out-of-range ones counted */
    {
        int64_t wrong = 0, cnt_bad = 0, expect_bad = 0;
        for (uint32_t e = 0; e < 256; e++)
            for (uint32_t s = 0; s < 2; s++)
                for (int k = 0; k < 12; k++) {
                    const uint32_t m = k == 0 ? 0 : k == 1 ? 1 : k == 2 ? 0x7fffff : (uint32_t)next() & 0x7fffff;
                    const float x = from_bits(s << 31 | e << 23 | m);
                    __int128 acc;
                    cnt_bad += pt_exact_to_fixed(&acc, &x, 1, true, PT_ISA_BASELINE);
                    expect_bad += e >= 127 + 24;
                    wrong += acc != reference(x);
                }
        CHECK(wrong == 0, "scalar to_fixed differs from the bit-by-bit reference for %lld values", (long long)wrong);
        CHECK(cnt_bad == expect_bad, "out-of-range count %lld, expected %lld", (long long)cnt_bad, (long long)expect_bad);
        printf("scalar kernel = reference on %d values (every exponent and sign), %lld counted out of range\n",
               256 * 2 * 12, (long long)cnt_bad);
    }
    enum { BLK = 1 << 20 };
    float *g = malloc(sizeof(float) * BLK);
    __int128 *init = malloc(sizeof(__int128) * BLK);
    for (isa = PT_ISA_AVX2; isa <= PT_ISA_AVX512; isa = (pt_cpu_isa_t)(isa + 1)) {
        if (pt_cpu_isa_detected() < isa) {
            printf("SKIP-part: this CPU has no %s: that kernel is not run\n", pt_cpu_isa_name(isa));
            continue;
        }
        /* a sweep over the bit patterns, in blocks */
        int64_t swept = 0;
        int blocks_bad = 0;
        uint64_t x = 0;
        while (x < (1ull << 32)) {
            int64_t n = 0;
            for (; n < BLK && x < (1ull << 32); n++, x += 61) g[n] = from_bits((uint32_t)x);
            /* random accumulators below 2^124 in magnitude (random low halves: carries), so
             * adding a value below 2^120 cannot overflow (that would be undefined; the trainer's
             * bounds on |g| and on the chunks keep it from happening) */
            for (int64_t i = 0; i < n; i++)
                init[i] = (__int128)((unsigned __int128)next() << 64 | next()) >> 3;
            blocks_bad += compare(g, n, init, "sweep") != 0;
            swept += n;
            if (blocks_bad > 3) break;
        }
        printf("%s: sweep of %lld bit patterns (1 in 61), written and added onto random 128-bit values\n",
               pt_cpu_isa_name(isa), (long long)swept);
        /* carries: values whose low halves sum past 2^64, and negatives onto small positives */
        for (int64_t i = 0; i < 4096; i++) {
            g[i] = from_bits((uint32_t)(i & 1) << 31 | (uint32_t)(60 + (i % 70)) << 23 | ((uint32_t)next() & 0x7fffff));
            init[i] = (i & 2) ? (__int128)(~0ull) : (__int128)1;
        }
        compare(g, 4096, init, "carries");
        /* every length at every start modulo 8 (the tail and unaligned loads) */
        for (int64_t i = 0; i < 64; i++) g[i] = from_bits((uint32_t)next());
        for (int off = 0; off < 8; off++)
            for (int64_t n = 0; n <= 40; n++) compare(g + off, n, init, "lengths");
        printf("%s: lengths 0..40 at 8 starts\n", pt_cpu_isa_name(isa));
    }
    free(g), free(init);

    /* the rounding of the sum: the AVX-512 kernel against the scalar one on sums of p = 1, 2, 3
     * accumulators: every bit length of either sign, the halves' edges, ties (x = 2^k + 2^(k-53)
     * and neighbours), and random values */
#if PT_HAVE_X86_KERNELS
    const bool have_dq = __builtin_cpu_supports("avx512dq");
#else
    const bool have_dq = false;
#endif
    if (pt_cpu_isa_detected() < PT_ISA_AVX512 || !have_dq) {
        printf("SKIP-part: this CPU has no AVX-512DQ: the vector rounding is not run\n");
        return test_exit_code("t_exact");
    }
    enum { NR = 1 << 18 };
    __int128 *acc[3];
    for (int q = 0; q < 3; q++) acc[q] = malloc(sizeof(__int128) * (NR + 8));
    float *fa = malloc(sizeof(float) * (NR + 8)), *fb = malloc(sizeof(float) * (NR + 8));
    for (int round = 0; round < 8; round++) {
        for (int64_t i = 0; i < NR; i++) {
            const int kind = (int)(next() % 4), bits = (int)(next() % 127);
            unsigned __int128 m = ((unsigned __int128)next() << 64 | next());
            m = bits ? m >> (128 - bits) : 0;                     /* a random magnitude of 0..126 bits */
            if (kind == 1 && bits > 55) /* a tie (2^t + half an ulp), even or odd, or just above it */
                m = ((unsigned __int128)1 << (bits - 1)) | ((unsigned __int128)1 << (bits - 54)) |
                    ((unsigned __int128)(next() & 1) << (bits - 53)) | (next() & 1 ? 0 : 1);
            if (kind == 3 && bits > 70) /* where only the sticky bits decide: 2^t + 2^(t-24) (a float
                                         * tie) + 2^(t-53) (a double tie) + 1 rounds up twice */
                m = ((unsigned __int128)1 << (bits - 1)) | ((unsigned __int128)1 << (bits - 25)) |
                    ((unsigned __int128)1 << (bits - 54)) | (next() & 1);
            if (kind == 2) m = (unsigned __int128)(next() % 3) + ((unsigned __int128)(next() & 1) << 64) - (next() & 1); /* near 2^64 */
            const __int128 v = next() & 1 ? -(__int128)m : (__int128)m;
            /* split v into p parts whose sum is v, the parts large and of either sign */
            acc[0][i] = v;
            for (int q = 1; q < 3; q++) {
                const __int128 r = (__int128)((unsigned __int128)next() << 64 | next()) >> (2 + next() % 60);
                acc[q][i] = r, acc[0][i] -= r;
            }
        }
        for (int p = 3; p >= 1; p--) {
            const __int128 *pa[3] = {acc[0], acc[1], acc[2]};
            if (p < 3) /* fold the last part into the one before: the sum over q < p stays v */
                for (int64_t i = 0; i < NR; i++) acc[p - 1][i] += acc[p][i], acc[p][i] = 0;
            for (int off = 0; off < 2; off++) {
                const int64_t n = NR - off * 5;
                const __int128 *po[3] = {pa[0] + off, pa[1] + off, pa[2] + off};
                fb[n] = fa[n] = -7.0f; /* guard */
                pt_exact_to_float(fa, po, p, n, PT_ISA_BASELINE);
                pt_exact_to_float(fb, po, p, n, PT_ISA_AVX512);
                int64_t diff = 0, i0 = -1;
                for (int64_t i = 0; i < n; i++)
                    if (memcmp(&fa[i], &fb[i], sizeof(float))) diff++, i0 = i0 < 0 ? i : i0;
                CHECK(diff == 0, "rounding p %d: %lld of %lld floats differ (first at %lld: %.9g vs %.9g)", p,
                      (long long)diff, (long long)n, (long long)i0, i0 >= 0 ? fa[i0] : 0.0, i0 >= 0 ? fb[i0] : 0.0);
                CHECK(fb[n] == -7.0f, "rounding p %d: wrote past the end", p);
            }
        }
    }
    printf("avx512: rounding of %d sums of 1, 2 and 3 accumulators (ties, 2^64 edges, every bit length)\n", 8 * NR);
    for (int q = 0; q < 3; q++) free(acc[q]);
    free(fa), free(fb);
    return test_exit_code("t_exact");
}
