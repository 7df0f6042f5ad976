/* The non-power-of-two fold shared by recursive doubling and Rabenseifner (Thakur, Rabenseifner
 * and Gropp, "Optimization of collective communication operations in MPICH", IJHPCA 2005).
 *
 * With p' the largest power of two <= p and rem = p - p', the first 2*rem ranks pair up: each even
 * rank sends its vector to the odd rank above it and sits out; the odd rank adds it in. The p'
 * remaining ranks run the power-of-two algorithm under new ranks 0..p'-1; at the end each odd rank
 * sends the result back to its even partner. Cost of the fold: 2 alpha + 2 n beta + n gamma. */
#ifndef PT_COMM_FOLD_H
#define PT_COMM_FOLD_H

#include "schedule.h"

typedef struct {
    int pof2, rem;
    int newrank; /* -1: this rank sits out */
} pt_fold;

static inline int pt_fold_real_rank(const pt_fold *f, int newrank)
{
    return newrank < f->rem ? 2 * newrank + 1 : newrank + f->rem;
}

/* Adds the fold-in round (needs n elements of scratch at tmp). */
static inline pt_status pt_fold_in(pt_sched *s, pt_fold *f, void *buf, void *tmp, int64_t n)
{
    const int p = s->group.size, r = s->group.rank;
    f->pof2 = 1;
    while (2 * f->pof2 <= p) f->pof2 *= 2;
    f->rem = p - f->pof2;
    if (r < 2 * f->rem) {
        if (r % 2 == 0) {
            PT_TRY(pt_sched_send(s, r + 1, buf, n));
            f->newrank = -1;
        } else {
            PT_TRY(pt_sched_recv(s, r - 1, tmp, n));
            PT_TRY(pt_sched_reduce(s, buf, tmp, n));
            f->newrank = r / 2;
        }
    } else {
        f->newrank = r - f->rem;
    }
    return pt_sched_end_round(s);
}

static inline pt_status pt_fold_out(pt_sched *s, const pt_fold *f, void *buf, int64_t n)
{
    const int r = s->group.rank;
    if (r < 2 * f->rem) {
        if (r % 2 == 0) PT_TRY(pt_sched_recv(s, r + 1, buf, n));
        else PT_TRY(pt_sched_send(s, r - 1, buf, n));
    }
    return pt_sched_end_round(s);
}

#endif
