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
    if (st == PT_OK && majority) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) {
            int votes = 0;
            for (int q = 0; q < p; q++) votes += (all[per * q + (i >> 5)] >> (i & 31)) & 1u ? -1 : 1;
            out[i] = votes > 0 ? 1.0f : votes < 0 ? -1.0f : 0.0f;
        }
    } else if (st == PT_OK) {
        for (int s = 0; s < nseg; s++) {
            float sc[p];
            for (int q = 0; q < p; q++) memcpy(&sc[q], &all[per * q + words + s], sizeof(float));
            const int64_t lo = seg_off[s], hi = seg_off[s + 1];
#pragma omp parallel for schedule(static) if (hi - lo > 65536)
            for (int64_t i = lo; i < hi; i++) {
                float acc = 0.0f;
                for (int q = 0; q < p; q++)
                    acc += (all[per * q + (i >> 5)] >> (i & 31)) & 1u ? -sc[q] : sc[q];
                out[i] = acc;
            }
        }
    }
    free(all), free(counts);
    return st;
}
