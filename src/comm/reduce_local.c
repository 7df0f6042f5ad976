/* Local reductions, the gamma term of every algorithm. 16-bit floats are widened to fp32 for the
 * operation and rounded back (round to nearest even). */
#include <string.h>

#include "half_kernels.h"
#include "schedule.h"

#define REDUCE_LOOP(T, OPEXPR)                                                                     \
    do {                                                                                           \
        T *d = dst;                                                                                \
        const T *s = src;                                                                          \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T a = d[i], b = s[i];                                                                  \
            d[i] = OPEXPR;                                                                         \
        }                                                                                          \
    } while (0)

#define REDUCE_TYPED(T)                                                                            \
    switch (op) {                                                                                  \
    case PT_SUM: case PT_AVG: REDUCE_LOOP(T, a + b); break;                                        \
    case PT_MAX: REDUCE_LOOP(T, a > b ? a : b); break;                                             \
    case PT_MIN: REDUCE_LOOP(T, a < b ? a : b); break;                                             \
    }

void pt_reduce_local(void *dst, const void *src, int64_t n, pt_dtype t, pt_reduce_op op)
{
    switch (t) {
    case PT_F32: REDUCE_TYPED(float); break;
    case PT_F64: REDUCE_TYPED(double); break;
    case PT_I32: REDUCE_TYPED(int32_t); break;
    case PT_I64: REDUCE_TYPED(int64_t); break;
    case PT_U8: REDUCE_TYPED(uint8_t); break;
    case PT_I128: REDUCE_TYPED(__int128); break;
    case PT_BF16:
    case PT_F16: /* the ISA-dispatched loops of half_kernels.c */
        pt_half_kernels_get()->reduce(dst, src, n, t == PT_BF16,
                                      op == PT_MAX ? 1 : op == PT_MIN ? 2 : 0);
        break;
    }
}
