/* Rabenseifner's allreduce (R. Rabenseifner, "Optimization of collective reduction operations",
 * ICCS 2004; as in MPICH): a reduce-scatter by recursive halving, then an allgather by recursive
 * doubling. In halving step k a rank sends the half of its current range that its partner keeps,
 * receives the half it keeps and adds it in, so ranges shrink n, n/2, n/4, ...; the allgather
 * retraces the steps in reverse, doubling the range each time.
 *
 * Cost: 2 log2(p') alpha + 2 (p'-1)/p' n beta + (p'-1)/p' n gamma, plus the fold for non-powers
 * of two (fold.h). Bandwidth optimal with logarithmic latency: medium to large vectors. Ranges are
 * split by element count, so n need not divide by p; for n < p' some halves are empty. */
#include "fold.h"

pt_status pt_allreduce_rabenseifner_build(pt_sched *s, void *buf, int64_t n)
{
    if (s->group.size == 1 || n == 0) return PT_OK;
    const size_t es = s->esize;
    char *b = buf;
    char *tmp = pt_sched_scratch(s, es * (size_t)n);
    if (!tmp) return PT_ERR(PT_ERR_NOMEM, NULL, "no scratch for Rabenseifner");
    pt_fold f;
    PT_TRY(pt_fold_in(s, &f, buf, tmp, n));
    if (f.newrank >= 0) {
        int64_t lo = 0, hi = n, plo[32], phi[32];
        int levels = 0;
        for (int mask = f.pof2 / 2; mask >= 1; mask >>= 1, levels++) { /* recursive halving */
            const int peer = pt_fold_real_rank(&f, f.newrank ^ mask);
            const int64_t mid = lo + (hi - lo) / 2;
            plo[levels] = lo, phi[levels] = hi;
            int64_t klo = lo, khi = mid, slo = mid, shi = hi; /* keep the lower half */
            if (f.newrank & mask) klo = mid, khi = hi, slo = lo, shi = mid;
            PT_TRY(pt_sched_send(s, peer, b + es * (size_t)slo, shi - slo));
            PT_TRY(pt_sched_recv(s, peer, tmp, khi - klo));
            PT_TRY(pt_sched_reduce(s, b + es * (size_t)klo, tmp, khi - klo));
            PT_TRY(pt_sched_end_round(s));
            lo = klo, hi = khi;
        }
        for (int mask = 1; mask < f.pof2; mask <<= 1) { /* recursive doubling allgather */
            const int peer = pt_fold_real_rank(&f, f.newrank ^ mask);
            const int lv = --levels; /* the halving step that used this same mask */
            /* The partner holds the other half of that step's range, the one it kept then. */
            const int64_t mid = plo[lv] + (phi[lv] - plo[lv]) / 2;
            int64_t olo = mid, ohi = phi[lv];
            if (f.newrank & mask) olo = plo[lv], ohi = mid;
            PT_TRY(pt_sched_send(s, peer, b + es * (size_t)lo, hi - lo));
            PT_TRY(pt_sched_recv(s, peer, b + es * (size_t)olo, ohi - olo));
            PT_TRY(pt_sched_end_round(s));
            lo = plo[lv], hi = phi[lv];
        }
    }
    return pt_fold_out(s, &f, buf, n);
}
