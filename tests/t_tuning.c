/* "auto": the built-in measured table parses and covers every size; a PT_ALLREDUCE_TUNING file
 * replaces it, with the lookup rules of src/comm/tuning.c (largest np <= size, first entry with
 * max_bytes >= message, the last entry beyond). */
#include <stdlib.h>

#include "paratrain/comm.h"
#include "testutil.h"

int main(void)
{
    const char *file = getenv("TUNING_FILE");
    if (!file) {
        for (size_t b = 4; b <= (256u << 20); b *= 2)
            for (int p = 2; p <= 64; p *= 2) {
                pt_allreduce_algo a = pt_allreduce_auto_choice(p, b);
                CHECK(a != PT_ALLREDUCE_AUTO && a < PT_ALLREDUCE_NALGOS, "np %d %zu B: %d", p, b, a);
            }
        CHECK(pt_allreduce_auto_choice(1, 100) == PT_ALLREDUCE_MPI, "np 1");
        return test_exit_code("t_tuning (built-in table)");
    }
    /* the file holds: 2 100 ring / 2 1000 binomial / 4 100 rabenseifner / 4 1000000 mpi */
    CHECK(pt_allreduce_auto_choice(2, 50) == PT_ALLREDUCE_RING, "np 2, 50 B");
    CHECK(pt_allreduce_auto_choice(2, 100) == PT_ALLREDUCE_RING, "np 2, 100 B (inclusive)");
    CHECK(pt_allreduce_auto_choice(2, 101) == PT_ALLREDUCE_BINOMIAL, "np 2, 101 B");
    CHECK(pt_allreduce_auto_choice(2, 1 << 30) == PT_ALLREDUCE_BINOMIAL, "np 2 beyond the table");
    CHECK(pt_allreduce_auto_choice(3, 50) == PT_ALLREDUCE_RING, "np 3 uses the np 2 rows");
    CHECK(pt_allreduce_auto_choice(4, 50) == PT_ALLREDUCE_RABENSEIFNER, "np 4, 50 B");
    CHECK(pt_allreduce_auto_choice(64, 5000) == PT_ALLREDUCE_MPI, "np 64 uses the np 4 rows");
    return test_exit_code("t_tuning (file)");
}
