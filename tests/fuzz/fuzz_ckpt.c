/* libFuzzer harness: the checkpoint loader. The input is a checkpoint file (step_NNNNNNNN.h5);
 * the harness verifies it (metadata and every dataset's checksum, pt_ckpt_verify), reads the
 * metadata, and when its model spec names a small model, builds that model and loads the
 * parameters into it (pt_ckpt_load, local: comm MPI_COMM_NULL, no optimizer). */
#include <ctype.h>

#include <hdf5.h>

#include "fuzz_common.h"
#include "io/h5util.h"
#include "paratrain/backend.h"
#include "paratrain/ckpt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_setup(argc, argv, 0); /* local reads (sec2 driver, comm MPI_COMM_NULL): no MPI */
    pt_h5_quiet();
    return 0;
}

/* model sizes the harness builds: every number of the canonical spec at most 1024 (the seed is
 * mlp:784-2-10), at most 64 K parameters */
static int small(const char *canon)
{
    long prod = 1, prev = 0;
    for (const char *p = canon; *p; p++)
        if (isdigit((unsigned char)*p)) {
            char *e;
            long v = strtol(p, &e, 10);
            if (v > 1024) return 0;
            if (prev && prev * v > 65536) return 0;
            prod = v, prev = prod;
            p = e - 1;
        }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    fz_write("step_00000001.h5", data, size, path, sizeof path);
    static pt_ckpt_meta meta;
    (void)pt_ckpt_verify(path, &meta);
    pt_error_clear();
    char spec[256], opt[64], canon[512];
    if (pt_ckpt_read_meta(path, &meta, spec, sizeof spec, opt, sizeof opt) == PT_OK &&
        pt_model_spec_canonical(spec, canon, sizeof canon) == PT_OK && small(canon)) {
        pt_model m;
        pt_model_options o = {0};
        if (pt_model_create(&m, spec, &o, pt_backend_cpu(), 1) == PT_OK) {
            (void)pt_ckpt_load(MPI_COMM_NULL, path, &m, NULL, &meta);
            pt_model_destroy(&m);
        }
    }
    fz_no_open_hdf5();
    pt_error_clear();
    return 0;
}
