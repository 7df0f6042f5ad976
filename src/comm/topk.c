/* Top-k selection by magnitude without sorting: a radix select on the bits of |x|.
 *
 * For a non-negative float the IEEE bit pattern, read as an unsigned integer, orders like the
 * value, so the k-th largest magnitude is found digit by digit: a histogram of the top 11 bits of
 * the key picks the bin that holds it; the keys of that bin (a small share of n for gradients,
 * whose magnitudes spread over many binades) are copied out, and two 10-bit histograms over them
 * give the exact threshold key T; a last pass takes every entry above T plus the first
 * (lowest-index) entries equal to T until there are k. Three streaming passes over x, O(n), no
 * comparison sort; the passes over x are split over the OpenMP threads with per-thread
 * histograms, and output positions come from per-thread prefix counts, so the result does not
 * depend on the thread count. DGC (Lin et al., ICLR 2018) estimates the threshold from a sample instead; this is
 * exact, which the tests and error feedback's invariant rely on. */
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "paratrain/compress.h"

static inline uint32_t mag_key(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u & 0x7fffffffu; /* NaN keys lie above +inf's */
}

static int nthreads(int64_t n)
{
#ifdef _OPENMP
    int t = omp_get_max_threads();
    if (n < 65536) t = 1; /* not worth waking the threads */
    return t;
#else
    (void)n;
    return 1;
#endif
}

static int thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Chooses the bin that holds the k-th largest: *need becomes how many to take from it. */
static int pick_bin(const int64_t *hist, int nbins, int64_t *need)
{
    int64_t above = 0;
    for (int b = nbins - 1; b >= 0; b--) {
        if (above + hist[b] >= *need) {
            *need -= above;
            return b;
        }
        above += hist[b];
    }
    return 0; /* not reached for need <= the histogram's total */
}

pt_status pt_topk_select(const float *x, int64_t n, int64_t k, uint32_t *idx, float *val)
{
    if (k <= 0 || n <= 0) return PT_OK;
    if (n > UINT32_MAX)
        return PT_ERR(PT_ERR_ARG, "compress fewer elements at a time",
                      "top-k of %lld elements: indices are 32-bit", (long long)n);
    if (k >= n) {
        for (int64_t i = 0; i < n; i++) idx[i] = (uint32_t)i, val[i] = x[i];
        return PT_OK;
    }
    /* digits of the 31-bit key: 11 (sign-less exponent and 3 mantissa bits), 10, 10; the first
     * histogram is 8 KiB per thread, so it stays in L1 */
    enum { B1 = 1 << 11, B2 = 1 << 10 };
    const int T = nthreads(n);
    uint32_t *hist = calloc((size_t)T * B1, sizeof *hist);
    int64_t *tot = calloc(B1, sizeof *tot);
    int64_t *cnt = calloc((size_t)T * 2 + 2, sizeof *cnt);
    if (!hist || !tot || !cnt) {
        free(hist), free(tot), free(cnt);
        return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for top-k histograms (%d threads)", T);
    }
#pragma omp parallel num_threads(T)
    {
        uint32_t *h = hist + (size_t)thread_id() * B1;
        const int t = thread_id();
        const int64_t lo = n * t / T, up = n * (t + 1) / T;
        for (int64_t i = lo; i < up; i++) h[mag_key(x[i]) >> 20]++;
    }
    for (int b = 0; b < B1; b++) {
        int64_t s = 0;
        for (int t = 0; t < T; t++) s += hist[(size_t)t * B1 + b];
        tot[b] = s;
    }
    int64_t need = k;
    const uint32_t b1 = (uint32_t)pick_bin(tot, B1, &need);
    /* the entries of bin b1, in index order: each thread writes its chunk's at its prefix */
    const int64_t m = tot[b1];
    uint32_t *cand = malloc(sizeof(uint32_t) * (size_t)(m ? m : 1));
    if (!cand) {
        free(hist), free(tot), free(cnt);
        return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for %lld top-k candidates", (long long)m);
    }
#pragma omp parallel num_threads(T)
    {
        const int t = thread_id();
        int64_t pos = 0;
        for (int q = 0; q < t; q++) pos += hist[(size_t)q * B1 + b1];
        const int64_t lo = n * t / T, up = n * (t + 1) / T;
        for (int64_t i = lo; i < up; i++) {
            const uint32_t key = mag_key(x[i]);
            if (key >> 20 == b1) cand[pos++] = key;
        }
    }
    /* the low 20 bits of the threshold, from the candidates alone */
    uint32_t key_t = b1 << 20;
    for (int shift = 10; shift >= 0; shift -= 10) {
        int64_t h2[B2];
        memset(h2, 0, sizeof h2);
        const uint32_t hi_mask = ~((1u << (shift + 10)) - 1u); /* the digits fixed so far */
        for (int64_t e = 0; e < m; e++)
            if ((cand[e] & hi_mask) == key_t) h2[(cand[e] >> shift) & (B2 - 1)]++;
        key_t |= (uint32_t)pick_bin(h2, B2, &need) << shift;
    }
    free(cand);
    /* need = how many entries equal to key_t to take (the lowest-index ones) */
    const int64_t ties = need;
#pragma omp parallel num_threads(T)
    {
        const int t = thread_id();
        const int64_t lo = n * t / T, up = n * (t + 1) / T;
        int64_t gt = 0, eq = 0;
        for (int64_t i = lo; i < up; i++) {
            const uint32_t key = mag_key(x[i]);
            gt += key > key_t, eq += key == key_t;
        }
        cnt[2 * t] = gt, cnt[2 * t + 1] = eq;
#pragma omp barrier
        int64_t pos = 0, eq_before = 0;
        for (int q = 0; q < t; q++) {
            const int64_t eq_take = cnt[2 * q + 1] < ties - eq_before ? cnt[2 * q + 1]
                                                                       : ties - eq_before;
            pos += cnt[2 * q] + (eq_take > 0 ? eq_take : 0);
            eq_before += cnt[2 * q + 1];
        }
        int64_t eq_left = ties - eq_before; /* ties this thread may still take */
        for (int64_t i = lo; i < up; i++) {
            const uint32_t key = mag_key(x[i]);
            if (key > key_t || (key == key_t && eq_left-- > 0)) {
                idx[pos] = (uint32_t)i, val[pos] = x[i];
                pos++;
            }
        }
    }
    free(hist), free(tot), free(cnt);
    return PT_OK;
}
