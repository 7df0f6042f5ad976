/* The 16-bit float loops, one set per ISA level (half_kernels.c); internal to src/comm. bf: 1 for
 * bf16, 0 for IEEE fp16. */
#ifndef PT_COMM_HALF_KERNELS_H
#define PT_COMM_HALF_KERNELS_H

#include <stdint.h>

typedef struct {
    void (*from_f32)(const float *x, uint16_t *h, int64_t n, int bf);
    void (*to_f32)(const uint16_t *h, float *x, int64_t n, int bf);
    /* out[i] = the sum, in rank order, of blocks[q * stride + i] over q < p, rounded once; i < len */
    void (*sum_blocks)(const uint16_t *blocks, int64_t stride, int64_t len, int p, uint16_t *out, int bf);
    void (*reduce)(uint16_t *d, const uint16_t *s, int64_t n, int bf, int op);
} pt_half_kernels;

/* the set for pt_cpu_isa() (PT_CPU_ISA can force a lower level) */
const pt_half_kernels *pt_half_kernels_get(void);

#endif
