/* libFuzzer harness: the data index reader alone (index.h5: format version, shape attributes,
 * the split's `counts` and `files`; read_index in src/io/dataset.c through pt_dataset_open).
 * The input is index.h5; the shards it names are absent, so a valid index ends in "shard file
 * missing". */
#include <hdf5.h>

#include "fuzz_common.h"
#include "io/h5util.h"
#include "paratrain/data.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_setup(argc, argv, 1);
    pt_h5_quiet();
    char p[512];
    snprintf(p, sizeof p, "%s/ix", fz_dir), mkdir(p, 0700);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512], dir[512];
    fz_write("ix/index.h5", data, size, path, sizeof path);
    snprintf(dir, sizeof dir, "%s/ix", fz_dir);
    static const char *const splits[] = {"train", "val", "test"};
    pt_dataset d;
    if (pt_dataset_open(&d, dir, splits[size % 3], MPI_COMM_SELF, false) == PT_OK)
        pt_dataset_close(&d);
    fz_no_open_hdf5();
    pt_error_clear();
    return 0;
}
