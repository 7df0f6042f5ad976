/* Top-k selection by magnitude without sorting.
 *
 * For a non-negative float the IEEE bit pattern, read as an unsigned integer, orders like the
 * value, so selection works on the 31-bit key |x|'s bits (NaN keys lie above +inf's). Two exact
 * ways, with one result (the contract of pt_topk_select in compress.h):
 *
 * radix_select: a histogram of the top 11 bits of the key picks the bin that holds the k-th
 * largest; the keys of that bin are copied out, and two 10-bit histograms over them give the
 * exact threshold key T; a last pass takes every entry above T plus the first (lowest-index)
 * entries equal to T until there are k. Three streaming passes over x, O(n).
 *
 * sample_select (the default for large n and small k): the threshold is estimated from a fixed
 * sample of 8192 entries, set low enough that the k largest are all above it; one vectorized
 * pass over x collects the candidates at or above it (a few times k, in index order), and the
 * exact selection runs among them alone, with the same tie rule. One pass over x, at the speed
 * of reading it. If the sample misjudged (fewer than k candidates, or more than the buffer
 * holds), radix_select runs instead, so the result never depends on the sample. DGC (Lin et
 * al., ICLR 2018) estimates the threshold from a sample too, but takes what passes it; this
 * stays exact, which the tests and error feedback's invariant rely on.
 *
 * The passes over x are split over the OpenMP threads (per-thread histograms and candidate
 * lists, joined in thread order), so the result does not depend on the thread count. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "paratrain/compress.h"
#include "paratrain/cpu.h"
#include "sparse.h"

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

/* The exact selection over all of x, for 0 < k < n. */
static pt_status radix_select(const float *x, int64_t n, int64_t k, uint32_t *idx, float *val)
{
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

/* --- sample, filter, select among the candidates ------------------------------------------ */

/* The k-th largest of keys[0..m) (0 < k <= m), serially, by the same three digits as
 * radix_select; *ties = how many entries equal to it belong to the k largest. */
static uint32_t kth_key(const uint32_t *keys, int64_t m, int64_t k, int64_t *ties)
{
    enum { B1 = 1 << 11, B2 = 1 << 10 };
    int64_t h[B1];
    int64_t need = k;
    uint32_t key_t = 0;
    const int shifts[3] = {20, 10, 0}, bins[3] = {B1, B2, B2};
    for (int d = 0; d < 3; d++) {
        const int shift = shifts[d], nb = bins[d];
        const uint32_t hi_mask = d == 0 ? 0u : ~((1u << (shift + 10)) - 1u); /* digits so far */
        memset(h, 0, sizeof(int64_t) * (size_t)nb);
        for (int64_t e = 0; e < m; e++)
            if ((keys[e] & hi_mask) == key_t) h[(keys[e] >> shift) & (uint32_t)(nb - 1)]++;
        key_t |= (uint32_t)pick_bin(h, nb, &need) << shift;
    }
    *ties = need;
    return key_t;
}

/* The entries of x[lo, up) with key >= t (t >= 1), in index order: ci their indices, ck their
 * keys; returns their number, or -1 once there are more than cap. */
static int64_t filter_scalar(const float *x, int64_t lo, int64_t up, uint32_t t, uint32_t *ci,
                             uint32_t *ck, int64_t cap)
{
    int64_t m = 0;
    for (int64_t i = lo; i < up; i++) {
        const uint32_t key = mag_key(x[i]);
        if (key >= t) {
            if (m == cap) return -1;
            ci[m] = (uint32_t)i, ck[m] = key, m++;
        }
    }
    return m;
}

#if PT_HAVE_X86_KERNELS
#include <immintrin.h>
/* The same with AVX2: 32 floats (two cache lines) per test, so the loop runs at the speed of
 * the loads while candidates are rare. Keys compare as signed 32-bit integers: both are < 2^31. */
__attribute__((target("avx2"))) static int64_t filter_avx2(const float *x, int64_t lo, int64_t up,
                                                          uint32_t t, uint32_t *ci, uint32_t *ck,
                                                          int64_t cap)
{
    const __m256i absm = _mm256_set1_epi32(0x7fffffff), tv = _mm256_set1_epi32((int)(t - 1u));
    int64_t i = lo, m = 0;
    for (; i + 32 <= up; i += 32) {
        __m256i c[4];
        for (int q = 0; q < 4; q++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(x + i + 8 * q));
            c[q] = _mm256_cmpgt_epi32(_mm256_and_si256(v, absm), tv);
        }
        const __m256i any = _mm256_or_si256(_mm256_or_si256(c[0], c[1]), _mm256_or_si256(c[2], c[3]));
        if (_mm256_testz_si256(any, any)) continue;
        for (int q = 0; q < 4; q++) {
            unsigned mask = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(c[q]));
            while (mask) {
                const int64_t e = i + 8 * q + __builtin_ctz(mask);
                if (m == cap) return -1;
                ci[m] = (uint32_t)e, ck[m] = mag_key(x[e]), m++;
                mask &= mask - 1u;
            }
        }
    }
    const int64_t rest = filter_scalar(x, i, up, t, ci + m, ck + m, cap - m);
    return rest < 0 ? -1 : m + rest;
}
#endif

static int64_t filter(const float *x, int64_t lo, int64_t up, uint32_t t, uint32_t *ci,
                      uint32_t *ck, int64_t cap)
{
#if PT_HAVE_X86_KERNELS
    if (pt_cpu_isa() >= PT_ISA_AVX2) return filter_avx2(x, lo, up, t, ci, ck, cap);
#endif
    return filter_scalar(x, lo, up, t, ci, ck, cap);
}

/* The sampled selection. The sample is stratified and fixed: entry j of s is drawn from the j-th
 * of s equal strata of x at a position hashed from j, so every rank and rerun samples alike and
 * a periodic gradient (one per layer) does not alias with the stride. Its r-th largest key
 * becomes the filter's threshold, r chosen (2 + 4 sqrt(c) above c, the sample's expected count
 * at or above the true k-th largest) so that fewer than k candidates is all but impossible for
 * any distribution; the candidates then hold every one of the k largest, and the exact
 * selection among them gives radix_select's result, ties included, since they are in index
 * order. Returns 1 in *done when it selected, 0 when the caller must fall back to radix_select. */
static pt_status sample_select(const float *x, int64_t n, int64_t k, const pt_topk_tune *tune,
                               uint32_t *idx, float *val, pt_topk_stats *stats, int *done)
{
    *done = 0;
    int64_t s = tune && tune->sample > 0 ? tune->sample : PT_TOPK_SAMPLE_SIZE;
    const double margin = tune && tune->margin > 0 ? tune->margin : 1.0;
    const double capf = tune && tune->cap > 0 ? tune->cap : 2.0;
    if (s > n) s = n;
    const double c = (double)k * (double)s / (double)n;
    const double rr = ceil(margin * (c + 4.0 * sqrt(c) + 8.0));
    if (rr >= (double)s) return PT_OK; /* the threshold would admit nearly everything */
    const int64_t r = rr < 1.0 ? 1 : (int64_t)rr;
    uint32_t *sk = malloc(sizeof(uint32_t) * (size_t)s);
    if (!sk) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for a top-k sample of %lld", (long long)s);
    for (int64_t j = 0; j < s; j++) {
        const int64_t lo = n * j / s, w = n * (j + 1) / s - lo; /* w >= 1 as s <= n */
        uint32_t h = (uint32_t)j * 0x9E3779B1u;
        h ^= h >> 15, h *= 0x2c1b3c6du, h ^= h >> 12;
        sk[j] = mag_key(x[lo + (int64_t)(h % (uint64_t)w)]);
    }
    int64_t unused;
    const uint32_t t = kth_key(sk, s, r, &unused);
    free(sk);
    if (stats) stats->threshold = t;
    if (t == 0) return PT_OK; /* every entry is a candidate */
    const int T = nthreads(n);
    const double expect = (double)r * (double)n / (double)s;
    int64_t cap = (int64_t)(capf * expect) + 1024;
    if (cap > n) cap = n;
    /* each thread's candidates at its own offset, cap entries or its chunk, whichever is less */
    int64_t *off = malloc(sizeof(int64_t) * (size_t)(2 * T + 1));
    if (!off) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for top-k counts");
    int64_t *cnt = off + T + 1;
    off[0] = 0;
    for (int q = 0; q < T; q++) {
        const int64_t chunk = n * (q + 1) / T - n * q / T;
        off[q + 1] = off[q] + (chunk < cap ? chunk : cap);
    }
    uint32_t *ci = malloc(sizeof(uint32_t) * (size_t)off[T]);
    uint32_t *ck = malloc(sizeof(uint32_t) * (size_t)off[T]);
    if (!ci || !ck) {
        const long long want = (long long)off[T];
        free(off), free(ci), free(ck);
        return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for %lld top-k candidates", want);
    }
#pragma omp parallel num_threads(T)
    {
        const int q = thread_id();
        cnt[q] = filter(x, n * q / T, n * (q + 1) / T, t, ci + off[q], ck + off[q],
                        off[q + 1] - off[q]);
    }
    /* gather the threads' lists (in index order) at the front */
    int64_t m = 0;
    for (int q = 0; q < T && m >= 0; q++) {
        if (cnt[q] < 0) {
            m = -1;
            break;
        }
        memmove(ci + m, ci + off[q], sizeof(uint32_t) * (size_t)cnt[q]);
        memmove(ck + m, ck + off[q], sizeof(uint32_t) * (size_t)cnt[q]);
        m += cnt[q];
    }
    free(off);
    if (stats) stats->candidates = m;
    if (m < k) { /* misjudged: too many candidates (m = -1) or too few */
        free(ci), free(ck);
        return PT_OK;
    }
    int64_t ties;
    const uint32_t key_t = kth_key(ck, m, k, &ties);
    int64_t o = 0;
    for (int64_t e = 0; e < m; e++) {
        const uint32_t key = ck[e];
        if (key > key_t || (key == key_t && ties-- > 0)) idx[o] = ci[e], val[o] = x[ci[e]], o++;
    }
    free(ci), free(ck);
    *done = 1;
    return PT_OK;
}

pt_status pt_topk_select_with(const float *x, int64_t n, int64_t k, pt_topk_method method,
                              const pt_topk_tune *tune, uint32_t *idx, float *val,
                              pt_topk_stats *stats)
{
    if (stats) memset(stats, 0, sizeof *stats);
    if (k <= 0 || n <= 0) return PT_OK;
    if (n > UINT32_MAX)
        return PT_ERR(PT_ERR_ARG, "compress fewer elements at a time",
                      "top-k of %lld elements: indices are 32-bit", (long long)n);
    if (k >= n) {
        for (int64_t i = 0; i < n; i++) idx[i] = (uint32_t)i, val[i] = x[i];
        return PT_OK;
    }
    /* the sample pays off once x leaves the caches and k is a small share of n */
    if (method == PT_TOPK_AUTO)
        method = n >= PT_TOPK_SAMPLE_MIN_N && k <= n / 16 ? PT_TOPK_SAMPLE : PT_TOPK_RADIX;
    if (method == PT_TOPK_SAMPLE) {
        int done;
        PT_TRY(sample_select(x, n, k, tune, idx, val, stats, &done));
        if (done) {
            if (stats) stats->path = 1;
            return PT_OK;
        }
        if (stats) stats->path = 2;
    }
    return radix_select(x, n, k, idx, val);
}

pt_status pt_topk_select(const float *x, int64_t n, int64_t k, uint32_t *idx, float *val)
{
    return pt_topk_select_with(x, n, k, PT_TOPK_AUTO, NULL, idx, val, NULL);
}
