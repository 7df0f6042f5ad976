/* Shared by the libFuzzer harnesses: a private scratch directory (tmpfs when there is one) where
 * the input is written as the file the reader under test opens, and MPI/HDF5 set-up. MPI is
 * initialized once and never finalized: Open MPI frees MPI_Init's allocations only in
 * MPI_Finalize (and not all of them), so while it is live they are reachable and LeakSanitizer
 * reports only what the readers themselves leak. */
#ifndef PT_FUZZ_COMMON_H
#define PT_FUZZ_COMMON_H
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paratrain/error.h"

static char fz_dir[256];

static void fz_setup(int *argc, char ***argv, int need_mpi)
{
    /* FUZZ_SCRATCH: set by run.sh and replay.sh, which remove it afterwards */
    const char *base = getenv("FUZZ_SCRATCH");
    if (!base) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    snprintf(fz_dir, sizeof fz_dir, "%s/pt-fuzz-%d", base, (int)getpid());
    mkdir(fz_dir, 0700);
    if (need_mpi) {
        int provided;
        MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    }
}

/* Writes data to fz_dir/name; returns the path (static buffer of the caller's choosing). */
static const char *fz_write(const char *name, const uint8_t *data, size_t size, char *path,
                            size_t len)
{
    snprintf(path, len, "%s/%s", fz_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    return path;
}

#ifdef H5_VERS_MAJOR
/* A reader must close every HDF5 object it opened, on every error path too: a forgotten one is
 * invisible to LeakSanitizer (HDF5's ID table still points to it), so count them. */
static void fz_no_open_hdf5(void)
{
    ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (n != 0) {
        fprintf(stderr, "fuzz: %zd HDF5 objects left open by the reader\n", n);
        abort();
    }
}
#endif

/* Little-endian 32-bit length prefix: splits data into the part it announces and the rest. */
static int fz_split(const uint8_t *data, size_t size, const uint8_t **a, size_t *na,
                    const uint8_t **b, size_t *nb)
{
    if (size < 4) return -1;
    uint32_t n = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                 (uint32_t)data[3] << 24;
    if (n > size - 4) return -1;
    *a = data + 4, *na = n, *b = data + 4 + n, *nb = size - 4 - n;
    return 0;
}
#endif
