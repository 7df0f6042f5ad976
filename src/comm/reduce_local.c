/* Local reductions, the gamma term of every algorithm. 16-bit floats are widened to fp32 for the
 * operation and rounded back (round to nearest even). */
#include <string.h>

#include "half.h"
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

#define REDUCE_HALF(TO_F32, FROM_F32)                                                              \
    do {                                                                                           \
        uint16_t *d = dst;                                                                         \
        const uint16_t *s = src;                                                                   \
        for (int64_t i = 0; i < n; i++) {                                                          \
            float a = TO_F32(d[i]), b = TO_F32(s[i]);                                              \
            float r = op == PT_MAX ? (a > b ? a : b) : op == PT_MIN ? (a < b ? a : b) : a + b;     \
            d[i] = FROM_F32(r);                                                                    \
        }                                                                                          \
    } while (0)

void pt_reduce_local(void *dst, const void *src, int64_t n, pt_dtype t, pt_reduce_op op)
{
    switch (t) {
    case PT_F32: REDUCE_TYPED(float); break;
    case PT_F64: REDUCE_TYPED(double); break;
    case PT_I32: REDUCE_TYPED(int32_t); break;
    case PT_I64: REDUCE_TYPED(int64_t); break;
    case PT_U8: REDUCE_TYPED(uint8_t); break;
    case PT_I128: REDUCE_TYPED(__int128); break;
    case PT_BF16: REDUCE_HALF(bf16_to_f32, f32_to_bf16); break;
    case PT_F16: REDUCE_HALF(f16_to_f32, f32_to_f16); break;
    }
}
