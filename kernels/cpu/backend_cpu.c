/* CPU backend: memory, the process-wide set-up (denormals, OpenBLAS threads, the ISA level of
 * the kernels) and the table, whose entries each op family's file fills (cpu_kernels.h):
 * OpenMP loops and OpenBLAS cblas_sgemm, no MPI and no HDF5 here (design.md).
 *
 * Elementwise loops run on OpenMP threads only above a size where the fork/join pays for itself;
 * reductions accumulate in double with a static schedule, so a run with a fixed thread count is
 * bitwise repeatable. Device memory is host memory, so to_device / to_host are copies. */
#include "config.h"

#include "paratrain/backend.h"

#include <cblas.h>
#include <omp.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h> /* _mm_setcsr: SSE, part of every x86-64 baseline */
#endif
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "elementwise_kernels.h"
#include "paratrain/cpu.h"
#include "paratrain/log.h"

static void *cpu_alloc(size_t bytes)
{
    if (bytes == 0) return NULL;
    void *p = NULL;
    /* 64-byte alignment for AVX-512 loads; round up so aligned_alloc's size rule holds. */
    if (posix_memalign(&p, 64, (bytes + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}
static void cpu_free(void *p) { free(p); }
static void cpu_zero(void *p, size_t bytes) { if (bytes) memset(p, 0, bytes); }
static void cpu_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes && dst != src) memcpy(dst, src, bytes);
}
static pt_status cpu_synchronize(void) { return PT_OK; }

static pt_backend cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .copy = cpu_copy,
    .synchronize = cpu_synchronize,
    /* host_alloc / host_free NULL: staging buffers are plain malloc */
};

/* OpenBLAS (pthreads build) sizes its own thread pool from the machine, not from the rank's core
 * binding or OMP_NUM_THREADS: align it with OpenMP once, so a rank never runs more GEMM threads
 * than the cores it was given. */
const pt_backend *pt_backend_cpu(void)
{
    static int threads_set = 0;
    if (!threads_set) {
        threads_set = 1;
        pt_cpu_register_dense(&cpu_backend);
        pt_cpu_register_elementwise(&cpu_backend);
        pt_cpu_register_optim(&cpu_backend);
        pt_cpu_register_conv(&cpu_backend);
        pt_cpu_register_conv_lowp(&cpu_backend);
        pt_cpu_register_pool(&cpu_backend);
        pt_cpu_register_norm(&cpu_backend);
        pt_cpu_register_attention(&cpu_backend);
        pt_cpu_register_loss(&cpu_backend);
        /* Flush denormals to zero (FTZ) and read them as zero (DAZ) on every thread of the pool.
         * Optimizer state of parameters whose gradient is always zero (e.g. weights of blank
         * border pixels) decays geometrically into the denormal range after a few hundred steps,
         * and x86 computes on denormals through microcode assists: without this, AdamW on
         * Fashion-MNIST slowed from 13k to 4.4k samples/s after ~800 steps. Values below 1.2e-38
         * are irrelevant to training; the fixture tests are unaffected. */
#if defined(__x86_64__) || defined(__i386__)
#pragma omp parallel
        _mm_setcsr(_mm_getcsr() | 0x8040);
#elif defined(__aarch64__)
        /* the same on AArch64: FPCR.FZ (bit 24) flushes denormal inputs and outputs to zero */
#pragma omp parallel
        __builtin_aarch64_set_fpcr(__builtin_aarch64_get_fpcr() | (1u << 24));
#endif
        (void)pt_cpu_ew_kernels_get(); /* choose the kernels' ISA level now, and log it once */
        const int nt = omp_get_max_threads();
#if HAVE_OPENBLAS_SET_NUM_THREADS
        openblas_set_num_threads(nt);
#endif
#if HAVE_OPENBLAS_GET_PARALLEL
        /* openblas_get_parallel(): 0 sequential, 1 pthreads, 2 OpenMP. */
        if (nt > 1 && openblas_get_parallel() == 1 && !getenv("OMP_WAIT_POLICY"))
            pt_log_warn("OpenBLAS uses its own pthreads next to %d OpenMP threads, and the two "
                        "pools compete for cores: configure with the OpenMP OpenBLAS "
                        "(libopenblas-openmp-dev) or set OMP_WAIT_POLICY=PASSIVE",
                        nt);
#endif
    }
    return &cpu_backend;
}
