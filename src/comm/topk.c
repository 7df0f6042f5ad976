/* Top-k selection by magnitude without sorting: a radix select on the bits of |x|.
 *
 * For a non-negative float the IEEE bit pattern, read as an unsigned integer, orders like the
 * value, so the k-th largest magnitude is found digit by digit: a histogram of the top 16 bits of
 * the key picks the bin that holds it, a second histogram of the low 16 bits inside that bin
 * gives the exact threshold key T, and a last pass takes every entry above T plus the first
 * (lowest-index) entries equal to T until there are k. Three streaming passes, O(n), no
 * comparison sort; each pass is split over the OpenMP threads with per-thread histograms, and the
 * output positions come from per-thread prefix counts, so the result does not depend on the
 * thread count. DGC (Lin et al., ICLR 2018) estimates the threshold from a sample instead; this is
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
    enum { BINS = 1 << 16 };
    const int T = nthreads(n);
    int64_t *hist = calloc((size_t)T * BINS, sizeof *hist);
    int64_t *tot = calloc(BINS, sizeof *tot);
    int64_t *cnt = calloc((size_t)T * 2 + 2, sizeof *cnt);
    if (!hist || !tot || !cnt) {
        free(hist), free(tot), free(cnt);
        return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for top-k histograms (%d threads)", T);
    }
    int64_t need = k;
    uint32_t hi = 0, key_t = 0;
    for (int pass = 0; pass < 2; pass++) {
        memset(hist, 0, sizeof *hist * (size_t)T * BINS);
#pragma omp parallel num_threads(T)
        {
            int64_t *h = hist + (size_t)thread_id() * BINS;
#pragma omp for schedule(static)
            for (int64_t i = 0; i < n; i++) {
                const uint32_t key = mag_key(x[i]);
                if (pass == 0) h[key >> 16]++;
                else if ((key >> 16) == hi) h[key & 0xffffu]++;
            }
        }
        for (int b = 0; b < BINS; b++) {
            int64_t s = 0;
            for (int t = 0; t < T; t++) s += hist[(size_t)t * BINS + b];
            tot[b] = s;
        }
        const int bin = pick_bin(tot, BINS, &need);
        if (pass == 0) hi = (uint32_t)bin;
        else key_t = hi << 16 | (uint32_t)bin;
    }
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
