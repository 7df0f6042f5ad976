/* "auto": the allreduce algorithm as data. A table of lines "np max_bytes algorithm" maps a
 * process count and a message size to an algorithm: the entries of the largest np <= the
 * communicator's size apply, and the first with max_bytes >= the message (the last one beyond).
 *
 * The shipped table (tuning_default.h) was measured on this code on the project's machine with
 *   mpirun -np 2 pt-bench-allreduce --algos mpi,ring,recursive_doubling,rabenseifner,binomial \
 *       --max-bytes 256M --repeat 3 --write-table table_np2.txt   (MPI unless >= 5% faster)
 *   mpirun -np 4 (same, --max-bytes 64M, oversubscribed on 2 cores) --write-table table_np4.txt
 * and concatenated; PT_ALLREDUCE_TUNING=FILE replaces it with a table measured elsewhere.
 *
 * When the buffer may be a shared-memory one (pt_comm_buffer_alloc was called: a property every
 * rank shares, so the choice stays collective), the hierarchical algorithm's zero-copy path wins
 * from 4 KiB up (measured: 3.2 us vs 6.4 us for MPI_Allreduce at 4 KiB, 20 GB/s busbw at 1 MiB). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/comm.h"
#include "tuning_default.h"

#define SHARED_MIN_BYTES 4096

typedef struct {
    int np;
    long long max_bytes;
    pt_allreduce_algo algo;
} tune_entry;

static tune_entry *table;
static int table_len;

static void parse(const char *text)
{
    int cap = 64;
    table = malloc(sizeof *table * (size_t)cap);
    table_len = 0;
    const char *p = text;
    while (p && *p && table) {
        const char *nl = strchr(p, '\n');
        char line[256];
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        snprintf(line, sizeof line, "%.*s", (int)(len < 255 ? len : 255), p);
        p = nl ? nl + 1 : NULL;
        int np;
        long long bytes;
        char name[64];
        if (line[0] == '#' || sscanf(line, "%d %lld %63s", &np, &bytes, name) != 3) continue;
        pt_allreduce_algo a;
        if (pt_allreduce_algo_parse(name, &a) != PT_OK || a == PT_ALLREDUCE_AUTO) continue;
        if (table_len == cap) {
            cap *= 2;
            tune_entry *t = realloc(table, sizeof *t * (size_t)cap);
            if (!t) break;
            table = t;
        }
        table[table_len++] = (tune_entry){np, bytes, a};
    }
}

static void load(void)
{
    if (table) return;
    const char *path = getenv("PT_ALLREDUCE_TUNING");
    if (path && *path) {
        FILE *fp = fopen(path, "r");
        if (fp) {
            static char buf[1 << 16];
            size_t n = fread(buf, 1, sizeof buf - 1, fp);
            buf[n] = '\0';
            fclose(fp);
            parse(buf);
            if (table_len > 0) return;
            free(table), table = NULL;
        }
        fprintf(stderr, "paratrain: warning: PT_ALLREDUCE_TUNING='%s' is unreadable or empty; "
                        "using the built-in table\n", path);
    }
    parse(pt_default_tuning);
}

pt_allreduce_algo pt_allreduce_auto_choice(int size, size_t bytes)
{
    if (size <= 1) return PT_ALLREDUCE_MPI;
    load();
    int best_np = -1;
    for (int i = 0; i < table_len; i++)
        if (table[i].np <= size && table[i].np > best_np) best_np = table[i].np;
    if (best_np < 0) /* only larger process counts measured: take the smallest */
        for (int i = 0; i < table_len; i++)
            if (best_np < 0 || table[i].np < best_np) best_np = table[i].np;
    pt_allreduce_algo last = PT_ALLREDUCE_MPI;
    for (int i = 0; i < table_len; i++) {
        if (table[i].np != best_np) continue;
        if ((long long)bytes <= table[i].max_bytes) return table[i].algo;
        last = table[i].algo;
    }
    return last;
}

pt_allreduce_algo pt_allreduce_auto_choice_comm(const pt_comm *c, size_t bytes)
{
    if (c->user_win != MPI_WIN_NULL && c->uniform && bytes >= SHARED_MIN_BYTES)
        return PT_ALLREDUCE_HIERARCHICAL;
    return pt_allreduce_auto_choice(c->size, bytes);
}
