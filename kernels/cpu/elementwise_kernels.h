/* The CPU backend's elementwise loops and reductions, once per ISA level (see
 * elementwise_kernels.c and include/paratrain/cpu.h). backend_cpu.c calls them through the table
 * pt_cpu_ew_kernels_get() picks once from pt_cpu_isa(); the signatures are the backend's
 * (paratrain/backend.h). Every level gives the same bits as the baseline for every entry
 * (tests/t_ew_isa.c checks it). */
#ifndef PT_ELEMENTWISE_KERNELS_H
#define PT_ELEMENTWISE_KERNELS_H

#include "paratrain/backend.h"
#include "paratrain/cpu.h"

typedef struct {
    const char *isa; /* what the object was really compiled for: "baseline", "avx2", "avx512" */
    void (*bias_act_forward)(float *y, float *pre, const float *bias, int rows, int cols,
                             pt_act act);
    void (*act_backward)(float *dx, const float *dy, const float *pre, int64_t n, pt_act act);
    void (*bias_backward)(float *db, const float *dy, int rows, int cols);
    double (*sum_squares)(const float *x, int64_t n);
    void (*scale)(float *x, int64_t n, float alpha);
    bool (*all_finite)(const float *x, int64_t n);
    void (*sgd_update)(float *w, const float *g, float *buf, int64_t n, const pt_update_params *p);
    void (*adagrad_update)(float *w, const float *g, float *sum_sq, int64_t n,
                           const pt_update_params *p);
    void (*adam_update)(float *w, const float *g, float *m, float *v, int64_t n,
                        const pt_update_params *p);
    /* the attention entries' tiled kernels (attention_kernels.c calls them; they share the
     * vectorized exp, so they are built per level here) */
    void (*attention_forward)(const pt_attention_desc *d, int rows, const float *qkv, float *y,
                              float *lse);
    void (*attention_backward)(const pt_attention_desc *d, int rows, const float *qkv,
                               const float *y, const float *dy, const float *lse, float beta,
                               float *dqkv);
} pt_cpu_ew_kernels;

/* the table of the level pt_cpu_isa() chose (fixed after the first call) */
const pt_cpu_ew_kernels *pt_cpu_ew_kernels_get(void);
/* the table of one level, NULL if this build has none for it (the CPU may still lack it:
 * compare with pt_cpu_isa_detected() before calling) */
const pt_cpu_ew_kernels *pt_cpu_ew_kernels_for(pt_cpu_isa_t isa);

#endif
