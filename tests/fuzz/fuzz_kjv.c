/* libFuzzer harness: the KJV text parser of pt-prep kjv-lm / kjv-books (parse, static in
 * src/io/prep_kjv.c, included whole), then the sample construction of both tools writing their
 * shards to a scratch directory. First byte: bit 0 books/lm, bits 1-5 the context length - 2. */
#include <hdf5.h>

#include "fuzz_common.h"
#include "io/prep_kjv.c"
#include "io/h5util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_setup(argc, argv, 0);
    pt_h5_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536) return -1;
    char path[512], out[512];
    fz_write("kjv.txt", data + 1, size - 1, path, sizeof path);
    char *buf;
    verse *vs;
    int64_t nv;
    if (parse(path, &buf, &vs, &nv) == PT_OK) {
        volatile char sum = 0; /* every verse's text lies inside the buffer */
        for (int64_t i = 0; i < nv; i++)
            for (int j = 0; j < vs[i].len; j++) sum += vs[i].text[j];
        free(buf), free(vs);
        snprintf(out, sizeof out, "%s/out", fz_dir);
        pt_prep_options o = {.src_dir = path, .out_dir = out, .shards = 1, .seed = 1};
        (void)pt_prep_kjv(&o, data[0] & 1, 2 + (data[0] >> 1) % 32);
    }
    fz_no_open_hdf5();
    pt_error_clear();
    return 0;
}
