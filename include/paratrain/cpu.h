/* Which instruction-set level the CPU kernels run with, chosen once at run time.
 *
 * The library is built for the architecture's baseline (x86-64: SSE2) unless configured with
 * --enable-native; the kernels that gain from wider vectors (kernels/cpu/conv_direct_isa.c, the CPU
 * backend's elementwise loops in kernels/cpu/elementwise_kernels.c, src/comm/half_kernels.c) are
 * compiled once per ISA level with that level's flags, and the level is picked from CPUID on
 * first use.
 * The environment variable PT_CPU_ISA=baseline|avx2|avx512 forces a lower level (tests run every
 * kernel set the CPU supports this way); a level the CPU lacks is refused with a warning and the
 * detected one is used. The choice is logged once: "cpu: <isa> kernels (...)". */
#ifndef PARATRAIN_CPU_H
#define PARATRAIN_CPU_H

/* Whether the x86 kernel variants are built: configure decides (config.h, included first); a
 * file compiled outside configure (tests/test_comm_standalone.sh, smpicc) decides from the
 * compiler's target. */
#ifndef PT_HAVE_X86_KERNELS /* compiled outside configure (tests/test_comm_standalone.sh, smpicc) */
#if defined(__x86_64__) && defined(__GNUC__)
#define PT_HAVE_X86_KERNELS 1
#else
#define PT_HAVE_X86_KERNELS 0
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    PT_ISA_BASELINE = 0, /* the architecture's baseline: no dispatched kernels */
    PT_ISA_AVX2 = 1,     /* x86-64 AVX2 + FMA */
    PT_ISA_AVX512 = 2    /* x86-64 AVX-512F (+ AVX2, FMA) */
} pt_cpu_isa_t;

/* the highest level this CPU (and OS) supports and this build has kernels for */
pt_cpu_isa_t pt_cpu_isa_detected(void);
/* the level in use: detected, or lowered by PT_CPU_ISA; fixed after the first call */
pt_cpu_isa_t pt_cpu_isa(void);
/* "baseline", "avx2", "avx512" */
const char *pt_cpu_isa_name(pt_cpu_isa_t isa);
/* parses a PT_CPU_ISA value; -1 if unknown */
int pt_cpu_isa_parse(const char *s);

#ifdef __cplusplus
}
#endif
#endif
