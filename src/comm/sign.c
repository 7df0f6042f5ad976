/* Sign compression on the wire: 1 bit per element, 32 to a word, plus one fp32 scale per segment.
 *
 * The allreduce is an allgather (ring) of every rank's packed words and scales, after which each
 * rank decodes the p vectors and adds them in rank order, so all ranks hold the same bits. An
 * allgather rather than a reduce-scatter because partial sums of signs are no longer 1 bit wide:
 * the compressed form only survives if nothing is added on the way (as in 1-bit SGD, Seide et
 * al., Interspeech 2014, and signSGD, Bernstein et al., ICML 2018).
 *
 * Cost, w = ceil(n/32) words and s scales per rank: (p-1) alpha + (p-1)(4w + 4s) beta
 * + p n gamma (decoding). The volume grows with p, like any allgather: 32x less than a dense ring
 * at p = 2, and it stays below it while p < 64. Any p. */
#include <stdlib.h>
#include <string.h>

#include "paratrain/compress.h"

void pt_sign_pack(const float *x, int64_t n, uint32_t *bits)
{
    const int64_t words = pt_sign_words(n);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t w = 0; w < words; w++) {
        const int64_t lo = w * 32, hi = lo + 32 < n ? lo + 32 : n;
        uint32_t word = 0;
        for (int64_t i = lo; i < hi; i++) {
            uint32_t u;
            memcpy(&u, &x[i], sizeof u);
            word |= (u >> 31) << (i - lo);
        }
        bits[w] = word;
    }
}

void pt_sign_unpack(const uint32_t *bits, int64_t n, float scale, float *out)
{
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) out[i] = (bits[i >> 5] >> (i & 31)) & 1u ? -scale : scale;
}

pt_status pt_sign_allreduce(pt_comm *c, const uint32_t *bits, const float *scales, int64_t n,
                            const int64_t *seg_off, int nseg, int majority, float *out)
{
    const int p = c->size;
    const int64_t words = pt_sign_words(n);
    if (nseg < 1 || seg_off[0] != 0 || seg_off[nseg] != n)
        return PT_ERR(PT_ERR_ARG, NULL, "sign allreduce: %d segments do not cover %lld elements",
                      nseg, (long long)n);
    /* one block per rank: the words, then (unless majority) the scales' bits */
    const int64_t per = words + (majority ? 0 : nseg);
    uint32_t *all = malloc(sizeof(uint32_t) * (size_t)(per * p + 1));
    int64_t *counts = calloc((size_t)p, sizeof(int64_t));
    if (!all || !counts) {
        free(all), free(counts);
        return PT_ERR(PT_ERR_NOMEM, NULL, "no memory to gather %d packed sign vectors", p);
    }
    uint32_t *mine = all + per * c->rank;
    memcpy(mine, bits, sizeof(uint32_t) * (size_t)words);
    if (!majority) memcpy(mine + words, scales, sizeof(float) * (size_t)nseg);
    for (int q = 0; q < p; q++) counts[q] = per;
    pt_status st = pt_allgather(c, mine, all, counts, PT_I32);
    /* Decoding, rank by rank into out (so the sum runs in rank order on every rank): the sign
     * bit of each element is put on the scale with an XOR, which vectorizes; majority vote adds
     * +-1 and takes the sign at the end. */
    if (st == PT_OK) {
        memset(out, 0, sizeof(float) * (size_t)n);
        for (int q = 0; q < p; q++) {
            const uint32_t *b = all + per * q;
            for (int s = 0; s < nseg; s++) {
                float sc = 1.0f;
                if (!majority) memcpy(&sc, &b[words + s], sizeof sc);
                uint32_t su;
                memcpy(&su, &sc, sizeof su);
                const int64_t lo = seg_off[s], hi = seg_off[s + 1];
#pragma omp parallel for schedule(static) if (hi - lo > 65536)
                for (int64_t i = lo; i < hi; i++) {
                    const uint32_t v = su ^ (((b[i >> 5] >> (i & 31)) & 1u) << 31);
                    float f;
                    memcpy(&f, &v, sizeof f);
                    out[i] += f;
                }
            }
        }
        if (majority)
#pragma omp parallel for schedule(static) if (n > 65536)
            for (int64_t i = 0; i < n; i++) out[i] = out[i] > 0 ? 1.0f : out[i] < 0 ? -1.0f : 0.0f;
    }
    free(all), free(counts);
    return st;
}
