/* Run-time choice of the kernels' ISA level: see paratrain/cpu.h. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "paratrain/cpu.h"

#include <stdlib.h>
#include <string.h>

#include "paratrain/log.h"

static const char *const names[] = {"baseline", "avx2", "avx512"};

const char *pt_cpu_isa_name(pt_cpu_isa_t isa)
{
    return (unsigned)isa < sizeof names / sizeof names[0] ? names[isa] : "unknown";
}

int pt_cpu_isa_parse(const char *s)
{
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (s && strcmp(s, names[i]) == 0) return i;
    return -1;
}

pt_cpu_isa_t pt_cpu_isa_detected(void)
{
#if PT_HAVE_X86_KERNELS
    /* __builtin_cpu_supports also checks that the OS saves the wider registers (XCR0) */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
        return PT_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return PT_ISA_AVX2;
#endif
    return PT_ISA_BASELINE;
}

pt_cpu_isa_t pt_cpu_isa(void)
{
    static int chosen = -1;
    int isa = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (isa >= 0) return (pt_cpu_isa_t)isa;
    const pt_cpu_isa_t det = pt_cpu_isa_detected();
    const char *env = getenv("PT_CPU_ISA");
    const char *why = "detected";
    isa = (int)det;
    if (env && *env) {
        const int want = pt_cpu_isa_parse(env);
        if (want < 0)
            pt_log_warn("cpu: PT_CPU_ISA=%s is not one of baseline, avx2, avx512; using %s", env,
                        pt_cpu_isa_name(det));
        else if (want > (int)det)
            pt_log_warn("cpu: PT_CPU_ISA=%s but this CPU (or this build) supports only %s; using %s",
                        env, pt_cpu_isa_name(det), pt_cpu_isa_name(det));
        else isa = want, why = "PT_CPU_ISA";
    }
    int expected = -1;
    if (__atomic_compare_exchange_n(&chosen, &expected, isa, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        pt_log_info("cpu: %s kernels (%s; CPU supports %s)", pt_cpu_isa_name((pt_cpu_isa_t)isa),
                    why, pt_cpu_isa_name(det));
    return (pt_cpu_isa_t)__atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
}
