/* "auto": the built-in measured table parses and covers every size; a PT_ALLREDUCE_TUNING file
 * replaces it, with the lookup rules of src/comm/tuning.c (largest np <= size, first entry with
 * max_bytes >= message, the last entry beyond). */
#include <stdlib.h>
#include <string.h>

#include "paratrain/comm.h"
#include "testutil.h"

/* The built-in table, read by this test's own parser from the text it was generated into
 * (src/comm/tuning_default.h): every line must name a known algorithm (the library skips a line
 * it cannot parse, which would silently hand its sizes to the next entry), sizes must increase per
 * np, and every entry must be what the lookup returns at both of its boundaries. */
#include "../src/comm/tuning_default.h"

static void check_builtin(void)
{
    enum { MAXE = 256 };
    int np[MAXE], n = 0;
    long long mb[MAXE];
    pt_allreduce_algo al[MAXE];
    const char *p = pt_default_tuning;
    while (*p) {
        const char *nl = strchr(p, '\n');
        const size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[256], name[64];
        snprintf(line, sizeof line, "%.*s", (int)(len < 255 ? len : 255), p);
        p = nl ? nl + 1 : p + len;
        if (line[0] == '#' || line[0] == '\0') continue;
        CHECK(n < MAXE, "table longer than %d entries", MAXE);
        if (n >= MAXE) break;
        if (sscanf(line, "%d %lld %63s", &np[n], &mb[n], name) != 3) {
            CHECK(0, "built-in table line '%s' does not parse", line);
            continue;
        }
        const int ok = pt_allreduce_algo_parse(name, &al[n]) == PT_OK && al[n] != PT_ALLREDUCE_AUTO;
        CHECK(ok, "built-in table line '%s': unknown algorithm", line);
        if (ok) n++;
    }
    int have2 = 0, have4 = 0;
    for (int i = 0; i < n; i++) {
        const int first = i == 0 || np[i - 1] != np[i], last = i == n - 1 || np[i + 1] != np[i];
        have2 |= np[i] == 2, have4 |= np[i] == 4;
        if (!first) CHECK(mb[i] > mb[i - 1], "np %d: max_bytes %lld after %lld", np[i], mb[i], mb[i - 1]);
        const long long lo = first ? 1 : mb[i - 1] + 1;
        const pt_allreduce_algo at_hi = pt_allreduce_auto_choice(np[i], (size_t)mb[i]),
                                at_lo = pt_allreduce_auto_choice(np[i], (size_t)lo),
                                next_np = pt_allreduce_auto_choice(np[i] + 1, (size_t)mb[i]);
        CHECK(at_hi == al[i] && at_lo == al[i], "np %d: %lld..%lld B should be %s, lookup gives %s/%s",
              np[i], lo, mb[i], pt_allreduce_algo_name(al[i]), pt_allreduce_algo_name(at_lo),
              pt_allreduce_algo_name(at_hi));
        /* np + 1, when it has no rows of its own, uses these */
        int own = 0;
        for (int j = 0; j < n; j++) own |= np[j] == np[i] + 1;
        if (!own)
            CHECK(next_np == al[i], "np %d: %lld B should use the np %d rows (%s), gives %s",
                  np[i] + 1, mb[i], np[i], pt_allreduce_algo_name(al[i]),
                  pt_allreduce_algo_name(next_np));
        if (last) {
            const pt_allreduce_algo beyond = pt_allreduce_auto_choice(np[i], (size_t)mb[i] * 4);
            CHECK(beyond == al[i], "np %d beyond %lld B should be the last entry %s, gives %s", np[i],
                  mb[i], pt_allreduce_algo_name(al[i]), pt_allreduce_algo_name(beyond));
        }
    }
    CHECK(have2 && have4 && n >= 40, "built-in table: %d entries, np 2 %s, np 4 %s", n,
          have2 ? "present" : "missing", have4 ? "present" : "missing");
    CHECK(pt_allreduce_auto_choice(1, 100) == PT_ALLREDUCE_MPI, "np 1");
}

int main(void)
{
    const char *file = getenv("TUNING_FILE");
    if (!file) {
        check_builtin();
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
