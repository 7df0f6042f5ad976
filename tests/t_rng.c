/* Philox4x32-10 against the known-answer vectors published with the Random123 reference
 * implementation (Salmon et al., SC'11), plus the properties paratrain relies on. */
#include <string.h>

#include "paratrain/rng.h"
#include "testutil.h"

int main(void)
{
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof *kat; i++) {
        uint32_t out[4];
        pt_philox4x32_10(kat[i].ctr, kat[i].key, out);
        CHECK(!memcmp(out, kat[i].out, sizeof out),
              "KAT %zu: got %08x %08x %08x %08x", i, out[0], out[1], out[2], out[3]);
    }

    /* Uniform draws: in [0,1), mean ~1/2, variance ~1/12 over 1e6 draws (5 sigma bounds). */
    const int n = 1000000;
    double s = 0, s2 = 0, ns = 0, ns2 = 0;
    float lo = 1, hi = 0;
    for (int i = 0; i < n; i++) {
        float u = pt_rng_uniform(42, 7, (uint64_t)i);
        lo = u < lo ? u : lo, hi = u > hi ? u : hi;
        s += u, s2 += (double)u * u;
        float z = pt_rng_normal(42, 8, (uint64_t)i);
        ns += z, ns2 += (double)z * z;
    }
    double mean = s / n, var = s2 / n - mean * mean;
    CHECK(lo >= 0.0f && hi < 1.0f, "uniform out of [0,1): [%g, %g]", lo, hi);
    CHECK(fabs(mean - 0.5) < 5 * sqrt(1.0 / 12 / n), "uniform mean %g", mean);
    CHECK(fabs(var - 1.0 / 12) < 1e-3, "uniform variance %g", var);
    double nm = ns / n, nv = ns2 / n - nm * nm;
    CHECK(fabs(nm) < 5 / sqrt((double)n), "normal mean %g", nm);
    CHECK(fabs(nv - 1.0) < 0.01, "normal variance %g", nv);

    /* A pure function of (seed, stream, index): same inputs, same bits; any input changed, new bits. */
    CHECK(pt_rng_uniform(1, 2, 3) == pt_rng_uniform(1, 2, 3), "not repeatable");
    CHECK(pt_rng_uniform(1, 2, 3) != pt_rng_uniform(2, 2, 3), "seed ignored");
    CHECK(pt_rng_uniform(1, 2, 3) != pt_rng_uniform(1, 3, 3), "stream ignored");
    CHECK(pt_rng_uniform(1, 2, 3) != pt_rng_uniform(1, 2, 4), "index ignored");

    /* pt_rng_below stays below n and hits every value of a small range about equally. */
    int hist[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint64_t v = pt_rng_below(5, 1, (uint64_t)i, 7);
        CHECK(v < 7, "below(7) gave %llu", (unsigned long long)v);
        if (v < 7) hist[v]++;
    }
    for (int k = 0; k < 7; k++) CHECK(abs(hist[k] - 10000) < 500, "bucket %d has %d", k, hist[k]);
    return test_exit_code("t_rng");
}
