/* libFuzzer harness: the data reader, index and shard together (pt_dataset_open with
 * validation, then pt_dataset_read of a few samples), over MPI_COMM_SELF with the MPI-IO driver.
 * Input: a 4-byte little-endian length, that many bytes of index.h5, then one shard file, written
 * where the seed's index names its first training shard (train/shard_00000.h5). Seeds:
 * tests/fuzz/make-seeds.sh. */
#include <hdf5.h>

#include "fuzz_common.h"
#include "io/h5util.h"
#include "paratrain/data.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_setup(argc, argv, 1);
    pt_h5_quiet();
    char p[512];
    snprintf(p, sizeof p, "%s/ds", fz_dir), mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/ds/train", fz_dir), mkdir(p, 0700);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *idx, *shard;
    size_t nidx, nshard;
    if (fz_split(data, size, &idx, &nidx, &shard, &nshard)) return -1;
    char path[512], dir[512];
    fz_write("ds/index.h5", idx, nidx, path, sizeof path);
    fz_write("ds/train/shard_00000.h5", shard, nshard, path, sizeof path);
    snprintf(dir, sizeof dir, "%s/ds", fz_dir);
    pt_dataset d;
    if (pt_dataset_open(&d, dir, "train", MPI_COMM_SELF, true) == PT_OK) {
        enum { N = 5 };
        int64_t ids[N];
        for (int i = 0; i < N; i++) ids[i] = d.count > 0 ? (int64_t)(i * 7919) % d.count : 0;
        /* a valid index may describe large samples: read only what fits in 16 MiB */
        if (d.count > 0 && d.sample_size <= (4 << 20) / N) {
            float *x = malloc(sizeof(float) * (size_t)(N * d.sample_size));
            int32_t y[N];
            if (x) (void)pt_dataset_read(&d, ids, N, x, y);
            free(x);
        }
        pt_dataset_close(&d);
    }
    fz_no_open_hdf5();
    pt_error_clear();
    return 0;
}
