/* The CPU backend's op families, one file each (kernels/cpu/<family>_kernels.c). Each file fills its
 * entries of the backend table through its register function; backend_cpu.c owns memory and the
 * process-wide set-up and calls every register function once. OpenMP inside, no MPI or HDF5. */
#ifndef PT_CPU_KERNELS_H
#define PT_CPU_KERNELS_H

#include "paratrain/backend.h"

#define PT_CPU_PAR_MIN 16384 /* elements below which a loop stays on one thread */

void pt_cpu_register_dense(pt_backend *be);       /* dense_kernels.c: gemm */
void pt_cpu_register_elementwise(pt_backend *be); /* elementwise.c: activations, adds, dropout,
                                                     reductions */
void pt_cpu_register_optim(pt_backend *be);       /* optim_kernels.c */
void pt_cpu_register_conv(pt_backend *be);        /* conv_kernels.c: conv2d */
void pt_cpu_register_conv_lowp(pt_backend *be);   /* conv_lowp.c: conv2d in bf16/fp16 */

/* conv_kernels.c's im2col helpers, shared with conv_lowp.c (channels-last x, columns in (ky, kx,
 * c) order). The taps kx of one kernel row that fall inside the image, [*kx0, *kx1): their inputs
 * are (kx1 - kx0) * C contiguous elements, copied or added as one span. */
static inline void pt_cpu_tap_span(int ox, int s, int pad, int k, int H, int *kx0, int *kx1)
{
    const int first = pad - ox * s, last = H + pad - ox * s;
    *kx0 = first > 0 ? first : 0;
    *kx1 = last < k ? last : k;
    if (*kx1 < *kx0) *kx1 = *kx0;
}
/* dx += col2im(col), fp32, sample by sample on the OpenMP threads (disjoint: no races) */
void pt_cpu_col2im_add(const float *col, int rows, int H, int C, int k, int s, int pad, int Ho,
                       float *dx);
void pt_cpu_register_pool(pt_backend *be);        /* pool_kernels.c: pooling, max over time */
void pt_cpu_register_norm(pt_backend *be);        /* norm_kernels.c */
void pt_cpu_register_attention(pt_backend *be);   /* attention_kernels.c: embedding, attention */
void pt_cpu_register_loss(pt_backend *be);        /* loss_kernels.c */

#endif
