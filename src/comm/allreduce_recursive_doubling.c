/* Recursive doubling allreduce (Thakur, Rabenseifner and Gropp, IJHPCA 2005): in round k each
 * rank exchanges its whole vector with the rank whose (new) rank differs in bit k and adds it in;
 * after log2 p' rounds every rank holds the sum. Both partners add the same two operands, and IEEE
 * addition is commutative, so every rank ends with bitwise the same result.
 *
 * Cost: log2(p') (alpha + n beta + n gamma), plus the fold for non-powers of two
 * (2 alpha + 2 n beta + n gamma, see fold.h). Latency optimal: the choice for short vectors. */
#include "fold.h"

pt_status pt_allreduce_recursive_doubling_build(pt_sched *s, void *buf, int64_t n)
{
    if (s->group.size == 1 || n == 0) return PT_OK;
    void *tmp = pt_sched_scratch(s, s->esize * (size_t)n);
    if (!tmp) return PT_ERR(PT_ERR_NOMEM, NULL, "no scratch for recursive doubling");
    pt_fold f;
    PT_TRY(pt_fold_in(s, &f, buf, tmp, n));
    if (f.newrank >= 0)
        for (int mask = 1; mask < f.pof2; mask <<= 1) {
            int peer = pt_fold_real_rank(&f, f.newrank ^ mask);
            PT_TRY(pt_sched_send(s, peer, buf, n));
            PT_TRY(pt_sched_recv(s, peer, tmp, n));
            PT_TRY(pt_sched_reduce(s, buf, tmp, n));
            PT_TRY(pt_sched_end_round(s));
        }
    return pt_fold_out(s, &f, buf, n);
}
