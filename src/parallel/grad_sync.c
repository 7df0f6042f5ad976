/* Gradient synchronization: buckets overlapped with backward, ZeRO-1, and the exact
 * (rank-count independent) reduction of --reproducible. See grad_sync.h. */
#include "grad_sync.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/ckpt.h"
#include "paratrain/cpu.h"
#include "paratrain/log.h"
#include "paratrain/watchdog.h"

static void on_grad_ready(void *arg, int64_t offset, int64_t count);

/* Buckets at parameter boundaries, walking the parameters from the last (backward's first) */
static pt_status make_buckets(pt_grad_sync *gs, double bucket_mib)
{
    const pt_model *m = gs->m;
    const int64_t target = bucket_mib > 0 ? (int64_t)(bucket_mib * 1048576.0 / sizeof(float)) : 0;
    gs->buckets = calloc((size_t)m->nparams + 1, sizeof *gs->buckets);
    PT_ALLOC_CHECK(gs->buckets, sizeof *gs->buckets * ((size_t)m->nparams + 1));
    if (target <= 0 || gs->exact) { /* one bucket, after backward */
        gs->buckets[0] = (pt_bucket){.off = 0, .count = m->numel};
        gs->nbuckets = 1;
        return PT_OK;
    }
    int64_t hi = m->numel;
    for (int i = m->nparams - 1; i >= 0; i--) {
        const int64_t lo = m->params[i].offset;
        if (hi - lo >= target || i == 0) {
            gs->buckets[gs->nbuckets++] = (pt_bucket){.off = lo, .count = hi - lo};
            hi = lo;
        }
    }
    return PT_OK;
}

pt_status pt_grad_sync_init(pt_grad_sync *gs, pt_comm *pc, pt_model *m, bool zero, bool exact,
                            double bucket_mib)
{
    memset(gs, 0, sizeof *gs);
    gs->pc = pc, gs->m = m, gs->rank = pc->rank, gs->size = pc->size;
    gs->zero = zero, gs->exact = exact;
    gs->shard_offs = malloc(sizeof(int64_t) * (size_t)gs->size);
    gs->shard_counts = malloc(sizeof(int64_t) * (size_t)gs->size);
    if (!gs->shard_offs || !gs->shard_counts)
        return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the shard table");
    for (int r = 0; r < gs->size; r++)
        pt_shard_range(m->numel, zero ? gs->size : 1, zero ? r : 0, &gs->shard_offs[r],
                       &gs->shard_counts[r]);
    gs->shard_off = gs->shard_offs[gs->rank], gs->shard_count = gs->shard_counts[gs->rank];
    if (zero && gs->size > 1 && !exact) {
        size_t bytes = sizeof(float) * (size_t)(gs->shard_count ? gs->shard_count : 1);
        gs->gshard = m->be->alloc(bytes);
        PT_ALLOC_CHECK(gs->gshard, bytes);
    }
    /* device memory never reaches MPI: the collectives run on host copies (grad_sync.h) */
    gs->staged = strcmp(m->be->name, "cpu") != 0;
    if (gs->staged) {
        size_t bytes = sizeof(float) * (size_t)(m->numel ? m->numel : 1);
        gs->hg = pt_host_alloc(m->be, bytes);
        PT_ALLOC_CHECK(gs->hg, bytes);
        if (gs->gshard) {
            bytes = sizeof(float) * (size_t)(gs->shard_count ? gs->shard_count : 1);
            gs->hshard = pt_host_alloc(m->be, bytes);
            PT_ALLOC_CHECK(gs->hshard, bytes);
        }
    }
    if (zero && !exact && gs->size > 1 && pc->nnodes == 1 && pc->user_slots &&
        pc->node_rank == pc->rank && (char *)m->g == pc->user_slots[pc->rank] &&
        m->w == m->g + m->numel) {
        gs->peer_g = malloc(sizeof(float *) * (size_t)gs->size);
        gs->peer_w = malloc(sizeof(float *) * (size_t)gs->size);
        if (!gs->peer_g || !gs->peer_w) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for peers");
        for (int q = 0; q < gs->size; q++) {
            gs->peer_g[q] = (float *)pc->user_slots[q];
            gs->peer_w[q] = gs->peer_g[q] + m->numel;
        }
        bucket_mib = 0;
    }
    const size_t accb = pt_grad_sync_acc_bytes(m);
    if (exact && gs->size > 1 && !gs->staged && pc->nnodes == 1 && pc->user_slots &&
        pc->node_rank == pc->rank && (char *)m->g == pc->user_slots[pc->rank] + accb) {
        gs->peer_acc = malloc(sizeof(__int128 *) * (size_t)gs->size);
        gs->peer_gx = malloc(sizeof(float *) * (size_t)gs->size);
        if (!gs->peer_acc || !gs->peer_gx) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for peers");
        for (int q = 0; q < gs->size; q++) {
            gs->peer_acc[q] = (__int128 *)(void *)pc->user_slots[q];
            gs->peer_gx[q] = (float *)(void *)(pc->user_slots[q] + accb);
        }
        gs->acc = gs->peer_acc[gs->rank];
        gs->acc_shared = true;
    } else if (exact) {
        size_t bytes = accb;
        gs->acc = aligned_alloc(64, bytes);
        PT_ALLOC_CHECK(gs->acc, bytes);
        if (gs->size > 1) { /* the reduce-scatter's result: rank 0's shard is the largest */
            int64_t o0, c0;
            pt_shard_range(m->numel, gs->size, 0, &o0, &c0);
            bytes = sizeof(__int128) * (size_t)(c0 ? c0 : 1);
            gs->acc_shard = aligned_alloc(64, (bytes + 63) / 64 * 64);
            PT_ALLOC_CHECK(gs->acc_shard, bytes);
        }
    }
    return make_buckets(gs, bucket_mib);
}

void pt_grad_sync_free(pt_grad_sync *gs)
{
    if (gs->m) {
        if (gs->m->grad_ready == on_grad_ready) gs->m->grad_ready = NULL;
        if (gs->gshard) gs->m->be->free(gs->gshard);
        pt_host_free(gs->m->be, gs->hg);
        pt_host_free(gs->m->be, gs->hshard);
    }
    for (int b = 0; b < gs->nbuckets; b++)
        if (gs->buckets[b].req) pt_coll_wait(&gs->buckets[b].req);
    if (!gs->acc_shared) free(gs->acc);
    free(gs->peer_acc), free(gs->peer_gx);
    free(gs->buckets), free(gs->shard_offs), free(gs->shard_counts);
    free(gs->acc_shard);
    free(gs->peer_g), free(gs->peer_w);
    memset(gs, 0, sizeof *gs);
}

/* Starts bucket b: an in-place allreduce, or (ZeRO-1) a reduce-scatter whose blocks are the
 * bucket's intersections with the ranks' shards, received straight into this rank's gshard. */
/* At most two buckets in flight: the node-aware allreduce has two shared-memory regions per
 * communicator, and on this machine more concurrency only splits the same memory bandwidth. */
#define MAX_IN_FLIGHT 2

/* A bucket's collective completed; staged without ZeRO-1, its reduced gradient goes back up. */
static void bucket_done(pt_grad_sync *gs, pt_bucket *b)
{
    b->done = 1;
    gs->t_last_done = pt_now();
    if (gs->hg && !gs->zero)
        gs->m->be->to_device(gs->m->g + b->off, gs->hg + b->off, sizeof(float) * (size_t)b->count);
}

static pt_status make_room(pt_grad_sync *gs)
{
    int in_flight = 0, oldest = -1;
    for (int i = 0; i < gs->next; i++)
        if (!gs->buckets[i].done) {
            in_flight++;
            if (oldest < 0) oldest = i;
        }
    if (in_flight < MAX_IN_FLIGHT) return PT_OK;
    PT_TRY(pt_coll_wait(&gs->buckets[oldest].req));
    bucket_done(gs, &gs->buckets[oldest]);
    return PT_OK;
}

static pt_status start_bucket(pt_grad_sync *gs, pt_bucket *b)
{
    float *g = gs->m->g + b->off;
    PT_TRY(make_room(gs));
    if (gs->hg) { /* staged: the bucket down to the host (waits for backward's kernels) */
        gs->m->be->to_host(gs->hg + b->off, g, sizeof(float) * (size_t)b->count);
        PT_TRY(gs->m->be->synchronize());
        g = gs->hg + b->off;
    }
    if (!gs->zero) return pt_iallreduce(gs->pc, PT_IN_PLACE, g, b->count, PT_F32, PT_SUM, &b->req);
    int64_t counts[gs->size];
    for (int r = 0; r < gs->size; r++) {
        int64_t lo = gs->shard_offs[r] > b->off ? gs->shard_offs[r] : b->off;
        int64_t hi = gs->shard_offs[r] + gs->shard_counts[r];
        if (hi > b->off + b->count) hi = b->off + b->count;
        counts[r] = hi > lo ? hi - lo : 0;
    }
    int64_t mine = gs->shard_off > b->off ? gs->shard_off : b->off;
    float *dst = (gs->hshard ? gs->hshard : gs->gshard) +
                 (counts[gs->rank] ? mine - gs->shard_off : 0);
    return pt_ireduce_scatter(gs->pc, g, dst, counts, PT_F32, PT_SUM, &b->req);
}

static pt_status progress(pt_grad_sync *gs)
{
    for (int i = 0; i < gs->next; i++) {
        pt_bucket *b = &gs->buckets[i];
        if (b->done) continue;
        int done = 0;
        PT_TRY(pt_coll_test(&b->req, &done));
        if (done) bucket_done(gs, b);
    }
    return PT_OK;
}

static void on_grad_ready(void *arg, int64_t offset, int64_t count)
{
    (void)count;
    pt_grad_sync *gs = arg;
    if (gs->err != PT_OK) return;
    double t0 = pt_now();
    if (offset < gs->ready_low) gs->ready_low = offset;
    pt_status st = PT_OK;
    while (st == PT_OK && gs->next < gs->nbuckets && gs->buckets[gs->next].off >= gs->ready_low) {
        if (gs->next == 0) gs->t_first = t0;
        st = start_bucket(gs, &gs->buckets[gs->next++]);
        if (gs->ready_low > 0) gs->started_early++; /* gradients below are still to come */
    }
    if (st == PT_OK) st = progress(gs);
    gs->err = st;
    gs->t_calls += pt_now() - t0;
}

void pt_grad_sync_begin(pt_grad_sync *gs)
{
    for (int b = 0; b < gs->nbuckets; b++) gs->buckets[b].done = 0;
    gs->next = 0;
    gs->ready_low = gs->m->numel;
    gs->err = PT_OK;
    gs->t_calls = gs->t_first = gs->t_last_done = 0.0;
    gs->started_early = 0;
    const bool overlap = gs->size > 1 && gs->nbuckets > 1 && !gs->exact;
    gs->m->grad_ready = overlap ? on_grad_ready : NULL;
    gs->m->grad_ready_arg = overlap ? gs : NULL;
}

pt_status pt_grad_sync_finish(pt_grad_sync *gs, double *wait_s)
{
    double t0 = pt_now();
    *wait_s = 0.0;
    gs->m->grad_ready = NULL;
    pt_status st = gs->err;
    if (gs->z && gs->z->cfg.kind != PT_COMPRESS_NONE) { /* compressed, even on one rank */
        gs->t_first = t0;
        const size_t bytes = sizeof(float) * (size_t)gs->m->numel;
        if (st == PT_OK && gs->hg) gs->m->be->to_host(gs->hg, gs->m->g, bytes);
        if (st == PT_OK)
            st = pt_compressor_step(gs->z, gs->pc, gs->hg ? gs->hg : gs->m->g, gs->epoch);
        if (st == PT_OK && gs->hg) {
            gs->m->be->to_device(gs->m->g, gs->hg, bytes);
            st = gs->m->be->synchronize();
        }
        gs->t_last_done = pt_now();
        *wait_s = gs->t_last_done - t0;
        return st;
    }
    if (gs->size == 1 || gs->exact) {
        gs->t_first = gs->t_last_done = t0;
        return st;
    }
    if (gs->peer_g) { /* shared-memory reduce-scatter: deferred (shm_reduce_scatter) */
        gs->t_first = t0;
        /* every rank's gradient is final */
        PT_TRY(pt_mpi_barrier(gs->pc->node, "the node barrier before the shared-memory reduce-scatter"));
        gs->rs_pending = true;
        gs->t_last_done = pt_now();
        *wait_s = gs->t_last_done - t0;
        return st;
    }
    while (st == PT_OK && gs->next < gs->nbuckets) {
        if (gs->next == 0) gs->t_first = t0;
        st = start_bucket(gs, &gs->buckets[gs->next++]);
    }
    /* on a failure, still complete what was started: a request must not be left in flight */
    for (int i = 0; i < gs->next; i++) {
        pt_bucket *b = &gs->buckets[i];
        if (b->done) continue;
        pt_status w = pt_coll_wait(&b->req);
        if (st == PT_OK) st = w;
        bucket_done(gs, b);
    }
    if (gs->hg) { /* staged: ZeRO-1's shard up to the device, and any failed copy reported */
        if (st == PT_OK && gs->hshard)
            gs->m->be->to_device(gs->gshard, gs->hshard, sizeof(float) * (size_t)gs->shard_count);
        pt_status sy = gs->m->be->synchronize();
        if (st == PT_OK) st = sy;
    }
    *wait_s = pt_now() - t0;
    return st;
}

/* --- exact accumulation ------------------------------------------------------------------ */

/* float32 -> round-toward-zero(value * 2^96) as a 128-bit integer, from the float's bits: the
 * 24-bit significand shifted by (exponent - 150 + 96). Exact for |value| >= 2^-73 (smaller
 * values lose their low bits, the same way on every rank). Sets *bad for |value| >= 2^24 or a
 * non-finite value: |value| < 2^24 leaves 7 bits of headroom for up to 128 chunks.
 * Branch-free but for the rare out-of-range test (signs are random in a gradient, so a branch on
 * them mispredicts half the time): the sign is applied as (q ^ s) - s with s = 0 or -1. */
static inline __int128 to_fixed(float f, int64_t *bad)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    const int e = (int)((u >> 23) & 0xffu);
    *bad += e >= 127 + 24; /* also Inf and NaN (e = 255) */
    const uint64_t sig = e ? (u & 0x7fffffu) | 0x800000u : (u & 0x7fffffu); /* subnormal */
    const int shift = (e ? e : 1) - 150 + PT_EXACT_FRAC_BITS; /* in [-53, 96] for e <= 150 */
    const unsigned __int128 q = e >= 127 + 24 ? 0
                                : shift >= 0  ? (unsigned __int128)sig << shift
                                              : (unsigned __int128)(sig >> -shift);
    const __int128 s = -(__int128)(u >> 31);
    return ((__int128)q ^ s) - s;
}

/* acc[0, n) (first: =, else +=) to_fixed(g[0, n)), one element at a time */
static int64_t to_fixed_scalar(__int128 *acc, const float *g, int64_t n, bool first)
{
    int64_t bad = 0;
    if (first)
        for (int64_t i = 0; i < n; i++) acc[i] = to_fixed(g[i], &bad);
    else
        for (int64_t i = 0; i < n; i++) acc[i] += to_fixed(g[i], &bad);
    return bad;
}

#if PT_HAVE_X86_KERNELS
#include <immintrin.h>
/* to_fixed for 8 floats at a time with AVX-512F, as 64-bit halves (lo, hi) per lane: the scalar
 * function's variable 128-bit shift and sign are ~11 cycles an element (5 ms a pass over a 1.9 M
 * gradient), the exact mode's largest cost. sig << shift for shift in [-53, 96] is
 * lo = sllv(sig, shift) | srlv(sig, -shift), hi = sllv(sig, shift - 64) | srlv(sig, 64 - shift):
 * a count outside [0, 63] (a negative one read as unsigned) gives 0, so exactly one term of each
 * is the shifted significand or both are 0. The negation is the 128-bit two's complement (hi
 * gets the borrow when lo is 0); the accumulator's interleaved (lo, hi) pairs add with the
 * carry of each even lane moved into the odd lane above it. The same integers as to_fixed,
 * every float (tests/t_exact). */
__attribute__((target("avx512f"))) static int64_t to_fixed_avx512(__int128 *acc, const float *g,
                                                                int64_t n, bool first)
{
    const __m512i m8 = _mm512_set1_epi64(0xff), mant = _mm512_set1_epi64(0x7fffff),
                  hidden = _mm512_set1_epi64(0x800000), one = _mm512_set1_epi64(1),
                  c64 = _mm512_set1_epi64(64), bias = _mm512_set1_epi64(150 - PT_EXACT_FRAC_BITS),
                  ones = _mm512_set1_epi64(-1), zero = _mm512_setzero_si512();
    const __m512i ia = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0),
                  ib = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
    int64_t bad = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512i u = _mm512_cvtepu32_epi64(_mm256_loadu_si256((const __m256i *)(const void *)(g + i)));
        const __m512i e = _mm512_and_si512(_mm512_srli_epi64(u, 23), m8);
        const __mmask8 big = _mm512_cmpge_epu64_mask(e, _mm512_set1_epi64(127 + 24));
        bad += __builtin_popcount((unsigned)big);
        const __mmask8 normal = _mm512_cmpneq_epu64_mask(e, zero);
        const __m512i m = _mm512_and_si512(u, mant);
        const __m512i sig = _mm512_mask_or_epi64(m, normal, m, hidden);
        const __m512i sh = _mm512_sub_epi64(_mm512_max_epu64(e, one), bias); /* in [-53, 96] */
        __m512i lo = _mm512_or_si512(_mm512_sllv_epi64(sig, sh), _mm512_srlv_epi64(sig, _mm512_sub_epi64(zero, sh)));
        __m512i hi = _mm512_or_si512(_mm512_sllv_epi64(sig, _mm512_sub_epi64(sh, c64)),
                                     _mm512_srlv_epi64(sig, _mm512_sub_epi64(c64, sh)));
        lo = _mm512_maskz_mov_epi64((__mmask8)~big, lo);
        hi = _mm512_maskz_mov_epi64((__mmask8)~big, hi);
        const __mmask8 neg = _mm512_test_epi64_mask(u, _mm512_set1_epi64(0x80000000));
        const __mmask8 lo0 = _mm512_cmpeq_epu64_mask(lo, zero);
        const __m512i nhi = _mm512_xor_si512(hi, ones);                       /* ~hi */
        hi = _mm512_mask_mov_epi64(hi, neg, _mm512_mask_add_epi64(nhi, lo0, nhi, one));
        lo = _mm512_mask_sub_epi64(lo, neg, zero, lo);
        __m512i qa = _mm512_permutex2var_epi64(lo, ia, hi), qb = _mm512_permutex2var_epi64(lo, ib, hi);
        __m512i *pa = (__m512i *)(void *)(acc + i);
        if (!first) {
            const __m512i a = _mm512_loadu_si512(pa), b = _mm512_loadu_si512(pa + 1);
            const __m512i sa = _mm512_add_epi64(a, qa), sb = _mm512_add_epi64(b, qb);
            const __mmask8 ca = (__mmask8)((_mm512_cmplt_epu64_mask(sa, qa) & 0x55u) << 1);
            const __mmask8 cb = (__mmask8)((_mm512_cmplt_epu64_mask(sb, qb) & 0x55u) << 1);
            qa = _mm512_mask_add_epi64(sa, ca, sa, one);
            qb = _mm512_mask_add_epi64(sb, cb, sb, one);
        }
        _mm512_storeu_si512(pa, qa);
        _mm512_storeu_si512(pa + 1, qb);
    }
    return bad + to_fixed_scalar(acc + i, g + i, n - i, first);
}

/* The same with AVX2, 4 floats at a time: no mask registers, so the masks are lanes of all ones;
 * the unsigned compare of the carry is a signed one of the values with the top bit flipped, and
 * the even lanes' carries move up by a byte shift within each 128-bit half. */
__attribute__((target("avx2"))) static int64_t to_fixed_avx2(__int128 *acc, const float *g, int64_t n,
                                                           bool first)
{
    const __m256i m8 = _mm256_set1_epi64x(0xff), mant = _mm256_set1_epi64x(0x7fffff),
                  hidden = _mm256_set1_epi64x(0x800000), c64 = _mm256_set1_epi64x(64),
                  bias = _mm256_set1_epi64x(150 - PT_EXACT_FRAC_BITS),
                  top = _mm256_set1_epi64x(127 + 23), ones = _mm256_set1_epi64x(-1),
                  zero = _mm256_setzero_si256(), flip = _mm256_set1_epi64x(INT64_MIN);
    int64_t bad = 0, i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m256i u = _mm256_cvtepu32_epi64(_mm_loadu_si128((const __m128i *)(const void *)(g + i)));
        const __m256i e = _mm256_and_si256(_mm256_srli_epi64(u, 23), m8);
        const __m256i big = _mm256_cmpgt_epi64(e, top); /* e >= 151 */
        bad += __builtin_popcount((unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(big)));
        const __m256i sub = _mm256_cmpeq_epi64(e, zero); /* subnormal or zero */
        const __m256i sig = _mm256_or_si256(_mm256_and_si256(u, mant), _mm256_andnot_si256(sub, hidden));
        const __m256i sh = _mm256_sub_epi64(_mm256_sub_epi64(e, sub), bias); /* max(e, 1) - bias */
        __m256i lo = _mm256_or_si256(_mm256_sllv_epi64(sig, sh), _mm256_srlv_epi64(sig, _mm256_sub_epi64(zero, sh)));
        __m256i hi = _mm256_or_si256(_mm256_sllv_epi64(sig, _mm256_sub_epi64(sh, c64)),
                                     _mm256_srlv_epi64(sig, _mm256_sub_epi64(c64, sh)));
        lo = _mm256_andnot_si256(big, lo), hi = _mm256_andnot_si256(big, hi);
        const __m256i neg = _mm256_sub_epi64(zero, _mm256_srli_epi64(u, 31)); /* all ones if < 0 */
        const __m256i hineg = _mm256_sub_epi64(_mm256_xor_si256(hi, ones), _mm256_cmpeq_epi64(lo, zero));
        hi = _mm256_blendv_epi8(hi, hineg, neg);
        lo = _mm256_blendv_epi8(lo, _mm256_sub_epi64(zero, lo), neg);
        const __m256i ul = _mm256_unpacklo_epi64(lo, hi), uh = _mm256_unpackhi_epi64(lo, hi);
        __m256i qa = _mm256_permute2x128_si256(ul, uh, 0x20), qb = _mm256_permute2x128_si256(ul, uh, 0x31);
        __m256i *pa = (__m256i *)(void *)(acc + i);
        if (!first) {
            const __m256i sa = _mm256_add_epi64(_mm256_loadu_si256(pa), qa);
            const __m256i sb = _mm256_add_epi64(_mm256_loadu_si256(pa + 1), qb);
            const __m256i ca = _mm256_cmpgt_epi64(_mm256_xor_si256(qa, flip), _mm256_xor_si256(sa, flip));
            const __m256i cb = _mm256_cmpgt_epi64(_mm256_xor_si256(qb, flip), _mm256_xor_si256(sb, flip));
            qa = _mm256_sub_epi64(sa, _mm256_slli_si256(ca, 8)); /* lo's carry into the hi above */
            qb = _mm256_sub_epi64(sb, _mm256_slli_si256(cb, 8));
        }
        _mm256_storeu_si256(pa, qa);
        _mm256_storeu_si256(pa + 1, qb);
    }
    return bad + to_fixed_scalar(acc + i, g + i, n - i, first);
}
#endif

int64_t pt_exact_to_fixed(__int128 *acc, const float *g, int64_t n, bool first, pt_cpu_isa_t isa)
{
#if PT_HAVE_X86_KERNELS
    if (isa >= PT_ISA_AVX512) return to_fixed_avx512(acc, g, n, first);
    if (isa >= PT_ISA_AVX2) return to_fixed_avx2(acc, g, n, first);
#endif
    (void)isa;
    return to_fixed_scalar(acc, g, n, first);
}

/* One pass over the chunk's gradient: the first chunk writes the accumulator (no read of it),
 * later ones add; a thread's block of elements is the same on every pass. */
void pt_grad_sync_exact_add(pt_grad_sync *gs, bool first)
{
    const float *g = gs->m->g;
    if (gs->hg) { /* staged: the chunk's gradient, read on the host */
        gs->m->be->to_host(gs->hg, g, sizeof(float) * (size_t)gs->m->numel);
        g = gs->hg;
    }
    __int128 *acc = gs->acc;
    const int64_t n = gs->m->numel;
    const pt_cpu_isa_t isa = pt_cpu_isa();
    int64_t bad = 0;
#pragma omp parallel reduction(+ : bad)
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        const int64_t per = (n + nt - 1) / nt, lo = t * per < n ? t * per : n,
                      cnt = lo + per < n ? per : n - lo;
        bad += pt_exact_to_fixed(acc + lo, g + lo, cnt, first, isa);
    }
    gs->exact_overflow = first ? bad : gs->exact_overflow + bad;
}

size_t pt_grad_sync_acc_bytes(const pt_model *m)
{
    return (sizeof(__int128) * (size_t)(m->numel ? m->numel : 1) + 63) / 64 * 64;
}

/* g[0, n) = the sum over q < p of acc[q][0, n), rounded to float the scalar way: to double (the
 * nearest, ties to even: libgcc's __floattidf, ~6.5 ns an element), times 2^-96, to float */
static void to_float_scalar(float *g, const __int128 *const *acc, int p, int64_t n)
{
    const double inv = ldexp(1.0, -PT_EXACT_FRAC_BITS);
    for (int64_t i = 0; i < n; i++) {
        __int128 sum = acc[0][i];
        for (int q = 1; q < p; q++) sum += acc[q][i];
        g[i] = (float)((double)sum * inv);
    }
}

#if PT_HAVE_X86_KERNELS
/* The same 8 at a time with AVX-512F + DQ. The sum's magnitude |x| = H 2^64 + L (unsigned
 * halves): below 2^64 it converts directly (vcvtuqq2pd rounds to nearest even). Above, T = |x|
 * shifted right by 64 - s, where s <= the leading zeros of H (from the exponent of H as a double,
 * which may be one too high when that rounds up: then T has 63 bits instead of 64), with every
 * bit shifted out ORed into T's lowest: T keeps at least 10 bits below the 53 a double holds plus
 * a sticky bit, so rounding T to a double rounds |x| the same way (the classic sticky-bit
 * reduction). Then exact scalings by powers of two, the sign, and the float rounding. */
__attribute__((target("avx512f,avx512dq"))) static void to_float_avx512(float *g,
                                                                      const __int128 *const *acc,
                                                                      int p, int64_t n)
{
    const __m512i ia = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0), ib = _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1);
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi64(1), ones = _mm512_set1_epi64(-1),
                  c64 = _mm512_set1_epi64(64), e11 = _mm512_set1_epi64(0x7ff),
                  bias = _mm512_set1_epi64(1023 - 1 + 64); /* s = 64 - bitlen = 1086 - e */
    const __m512d inv = _mm512_set1_pd(ldexp(1.0, -PT_EXACT_FRAC_BITS));
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512i a = _mm512_loadu_si512((const void *)(acc[0] + i)), b = _mm512_loadu_si512((const void *)(acc[0] + i + 4));
        for (int q = 1; q < p; q++) { /* 128-bit adds on the interleaved (lo, hi) pairs */
            const __m512i c = _mm512_loadu_si512((const void *)(acc[q] + i)), d = _mm512_loadu_si512((const void *)(acc[q] + i + 4));
            const __m512i sa = _mm512_add_epi64(a, c), sb = _mm512_add_epi64(b, d);
            const __mmask8 ca = (__mmask8)((_mm512_cmplt_epu64_mask(sa, c) & 0x55u) << 1);
            const __mmask8 cb = (__mmask8)((_mm512_cmplt_epu64_mask(sb, d) & 0x55u) << 1);
            a = _mm512_mask_add_epi64(sa, ca, sa, one), b = _mm512_mask_add_epi64(sb, cb, sb, one);
        }
        __m512i lo = _mm512_permutex2var_epi64(a, ia, b), hi = _mm512_permutex2var_epi64(a, ib, b);
        const __mmask8 neg = _mm512_cmplt_epi64_mask(hi, zero);
        const __mmask8 lo0 = _mm512_cmpeq_epu64_mask(lo, zero);
        const __m512i nhi = _mm512_xor_si512(hi, ones);
        hi = _mm512_mask_mov_epi64(hi, neg, _mm512_mask_add_epi64(nhi, lo0, nhi, one)); /* |x| */
        lo = _mm512_mask_sub_epi64(lo, neg, zero, lo);
        const __mmask8 small = _mm512_cmpeq_epu64_mask(hi, zero);
        const __m512i eh = _mm512_and_si512(_mm512_srli_epi64(_mm512_castpd_si512(_mm512_cvtepu64_pd(hi)), 52), e11);
        const __m512i sh = _mm512_max_epi64(_mm512_sub_epi64(bias, eh), zero); /* in [0, 63] when H > 0 */
        const __m512i rs = _mm512_sub_epi64(c64, sh);                          /* 64 - s, in [1, 64] */
        const __mmask8 sticky = _mm512_test_epi64_mask(lo, _mm512_srlv_epi64(ones, sh));
        __m512i t = _mm512_or_si512(_mm512_sllv_epi64(hi, sh), _mm512_srlv_epi64(lo, rs));
        t = _mm512_mask_or_epi64(t, sticky, t, one);
        /* T 2^(64 - s) 2^-96: the power of two 2^(64 - s) built from its exponent field */
        const __m512d pw = _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_add_epi64(rs, _mm512_set1_epi64(1023)), 52));
        __m512d v = _mm512_mul_pd(_mm512_mul_pd(_mm512_cvtepu64_pd(t), pw), inv);
        v = _mm512_mask_mov_pd(v, small, _mm512_mul_pd(_mm512_cvtepu64_pd(lo), inv));
        v = _mm512_mask_sub_pd(v, neg, _mm512_setzero_pd(), v);
        _mm256_storeu_ps(g + i, _mm512_cvtpd_ps(v));
    }
    if (i < n) {
        const __int128 *rest[p];
        for (int q = 0; q < p; q++) rest[q] = acc[q] + i;
        to_float_scalar(g + i, rest, p, n - i);
    }
}
#endif

void pt_exact_to_float(float *g, const __int128 *const *acc, int p, int64_t n, pt_cpu_isa_t isa)
{
#if PT_HAVE_X86_KERNELS
    if (isa >= PT_ISA_AVX512 && __builtin_cpu_supports("avx512dq")) {
        to_float_avx512(g, acc, p, n);
        return;
    }
#endif
    (void)isa;
    to_float_scalar(g, acc, p, n);
}

/* g[off, off + n) from the accumulators, the rows split over the threads */
static void exact_to_float(float *g, const __int128 *const *acc, int p, int64_t off, int64_t n)
{
    const pt_cpu_isa_t isa = pt_cpu_isa();
#pragma omp parallel
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        const int64_t per = (n + nt - 1) / nt, lo = t * per < n ? t * per : n,
                      cnt = lo + per < n ? per : n - lo;
        const __int128 *mine[p];
        for (int q = 0; q < p; q++) mine[q] = acc[q] + off + lo;
        pt_exact_to_float(g + off + lo, mine, p, cnt, isa);
    }
}

/* Over ranks: a reduce-scatter of the integers (rank r sums its shard of the elements), each
 * rank rounds its shard to float, and an allgather of the floats gives every rank the whole
 * gradient: 16 + 4 bytes per element on the wire instead of the allreduce's 16 + 16. Integer
 * sums are exact in any order, so the algorithm and the rank count do not change a bit. */
pt_status pt_grad_sync_exact_reduce(pt_grad_sync *gs)
{
    const int64_t n = gs->m->numel;
    float *g = gs->hg ? gs->hg : gs->m->g;
    if (gs->size == 1) {
        const __int128 *one = gs->acc;
        exact_to_float(g, &one, 1, 0, n);
    } else if (gs->peer_acc) { /* one node, shared window: direct reads, three node barriers */
        MPI_Comm node = gs->pc->node;
        int64_t off, cnt;
        pt_shard_range(n, gs->size, gs->rank, &off, &cnt);
        PT_TRY(pt_mpi_barrier(node, "the node barrier before the exact sum")); /* accs final */
        const int p = gs->size;
        exact_to_float(g, (const __int128 *const *)gs->peer_acc, p, off, cnt);
        PT_TRY(pt_mpi_barrier(node, "the node barrier after the exact sum")); /* shards final */
        for (int q = 0; q < p; q++) {
            int64_t o, c;
            pt_shard_range(n, p, q, &o, &c);
            if (q != gs->rank && c > 0) memcpy(g + o, gs->peer_gx[q] + o, sizeof(float) * (size_t)c);
        }
        /* the peers are done reading this rank's accumulator and gradient before its next
         * backward writes them */
        PT_TRY(pt_mpi_barrier(node, "the node barrier after the exact gather"));
    } else {
        int64_t counts[gs->size], off = 0, cnt = 0;
        for (int r = 0; r < gs->size; r++) {
            int64_t o, c;
            pt_shard_range(n, gs->size, r, &o, &c);
            counts[r] = c;
            if (r == gs->rank) off = o, cnt = c;
        }
        PT_TRY(pt_reduce_scatter(gs->pc, gs->acc, gs->acc_shard, counts, PT_I128, PT_SUM));
        const __int128 *shard = gs->acc_shard;
        exact_to_float(g + off, &shard, 1, 0, cnt);
        PT_TRY(pt_allgather(gs->pc, g + off, g, counts, PT_F32));
    }
    if (gs->hg) {
        gs->m->be->to_device(gs->m->g, gs->hg, sizeof(float) * (size_t)n);
        return gs->m->be->synchronize();
    }
    return PT_OK;
}

/* --- update -------------------------------------------------------------------------------- */

/* The shared-memory reduce-scatter of elements [lo, lo + n) of this rank's shard: the sum over
 * ranks in rank order, read from the peers' gradients (final since pt_grad_sync_finish's
 * barrier; a peer writes its gradient again only after the allgather's barrier). */
static void shm_reduce_scatter(pt_grad_sync *gs, int64_t lo, int64_t n)
{
    const int64_t off = gs->shard_off + lo;
    float *dst = gs->gshard + lo;
    float *const *pg = gs->peer_g;
    const int p = gs->size;
    for (int64_t i = 0; i < n; i++) {
        float s = pg[0][off + i];
        for (int q = 1; q < p; q++) s += pg[q][off + i];
        dst[i] = s;
    }
}

/* Elements per block of the fused reduce-scatter + update: the block's gradient sum is still
 * in cache when the update reads it (Adam's five streams of 16 KiB plus the peers' reads). */
#define FUSE_BLOCK 4096

/* The reduced shard, whole, for a reader before the update (clipping, the norm, tp sums). */
static void shard_ready(pt_grad_sync *gs)
{
    if (!gs->rs_pending) return;
    const int64_t nb = (gs->shard_count + FUSE_BLOCK - 1) / FUSE_BLOCK;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t lo = b * FUSE_BLOCK, hi = lo + FUSE_BLOCK < gs->shard_count ? lo + FUSE_BLOCK : gs->shard_count;
        shm_reduce_scatter(gs, lo, hi - lo);
    }
    gs->rs_pending = false;
}

float *pt_grad_sync_grad(pt_grad_sync *gs, int64_t *off, int64_t *n)
{
    shard_ready(gs);
    *off = gs->shard_off, *n = gs->shard_count;
    return gs->gshard ? gs->gshard : gs->m->g + gs->shard_off;
}

pt_status pt_grad_sync_sum_squares(pt_grad_sync *gs, double *ss)
{
    int64_t off, n;
    float *g = pt_grad_sync_grad(gs, &off, &n);
    if (!gs->zero || gs->exact || gs->size == 1) { /* the whole reduced gradient is here */
        *ss = gs->m->be->sum_squares(gs->m->g, gs->m->numel);
        return PT_OK;
    }
    *ss = gs->m->be->sum_squares(g, n);
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, ss, 1, MPI_DOUBLE, MPI_SUM, gs->pc->comm,
                            "the gradient norm of the ZeRO shards"));
    return PT_OK;
}

pt_status pt_grad_sync_update(pt_grad_sync *gs, pt_optimizer *opt, float lr)
{
    int64_t off, n;
    if (gs->rs_pending) { /* fused: each block reduced over the ranks, then updated */
        off = gs->shard_off, n = gs->shard_count;
        float *w = gs->m->w + off, *g = gs->gshard;
        pt_optim_advance(opt);
        const int64_t nb = (n + FUSE_BLOCK - 1) / FUSE_BLOCK;
        /* blocks below the kernels' threading threshold: each runs on the thread that owns it */
#pragma omp parallel for schedule(static)
        for (int64_t b = 0; b < nb; b++) {
            const int64_t lo = b * FUSE_BLOCK, hi = lo + FUSE_BLOCK < n ? lo + FUSE_BLOCK : n;
            shm_reduce_scatter(gs, lo, hi - lo);
            pt_optim_apply(opt, w + lo, g + lo, lr, lo, hi - lo);
        }
        gs->rs_pending = false;
    } else {
        float *g = pt_grad_sync_grad(gs, &off, &n);
        pt_optim_step(opt, gs->m->w + off, g, lr);
    }
    if (!gs->zero || gs->size == 1) return PT_OK;
    if (gs->peer_w) { /* shared-memory allgather: copy the peers' updated shards */
        /* every shard is updated */
        PT_TRY(pt_mpi_barrier(gs->pc->node, "the node barrier before the shared-memory allgather"));
        for (int q = 0; q < gs->size; q++)
            if (q != gs->rank && gs->shard_counts[q] > 0)
                memcpy(gs->m->w + gs->shard_offs[q], gs->peer_w[q] + gs->shard_offs[q],
                       sizeof(float) * (size_t)gs->shard_counts[q]);
        /* no barrier after: a peer rewrites its shard only after the next step's first barrier,
         * which this rank reaches once its copies are done */
        return PT_OK;
    }
    if (gs->hg) { /* staged: the updated shard down, the allgather on the host, all of w up */
        const pt_backend *be = gs->m->be;
        be->to_host(gs->hg + off, gs->m->w + off, sizeof(float) * (size_t)n);
        PT_TRY(be->synchronize());
        PT_TRY(pt_allgather(gs->pc, gs->hg + off, gs->hg, gs->shard_counts, PT_F32));
        be->to_device(gs->m->w, gs->hg, sizeof(float) * (size_t)gs->m->numel);
        return be->synchronize();
    }
    /* in place: this rank's block already sits at its offset of w */
    return pt_allgather(gs->pc, gs->m->w + off, gs->m->w, gs->shard_counts, PT_F32);
}
