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
void pt_cpu_register_pool(pt_backend *be);        /* pool_kernels.c: pooling, max over time */
void pt_cpu_register_norm(pt_backend *be);        /* norm_kernels.c */
void pt_cpu_register_attention(pt_backend *be);   /* attention_kernels.c: embedding, attention */
void pt_cpu_register_loss(pt_backend *be);        /* loss_kernels.c */

#endif
