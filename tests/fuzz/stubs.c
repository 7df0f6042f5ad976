/* The two library functions build.sh leaves out (their files use _Float16, which clang 14 does
 * not support on x86 without AVX512-FP16). The readers under test never call them; the trainer
 * and compressor code that does is linked only because it shares object files with what the
 * readers use. Reaching one is a harness bug: abort. */
#include <stdio.h>
#include <stdlib.h>

void pt_reduce_local(void);
void pt_allreduce_lowp(void);
void pt_reduce_local(void) { fputs("fuzz stub pt_reduce_local reached\n", stderr), abort(); }
void pt_allreduce_lowp(void) { fputs("fuzz stub pt_allreduce_lowp reached\n", stderr), abort(); }
