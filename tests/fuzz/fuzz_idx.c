/* libFuzzer harness: the IDX reader of pt-prep fashion-mnist (read_idx, static in
 * src/io/prep_fashion_mnist.c, included here whole). The first byte picks the expected magic
 * (images, 3 dimensions, or labels, 1); the rest is the file, plain or gzip'd. */
#include "fuzz_common.h"
#include "io/prep_fashion_mnist.c"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_setup(argc, argv, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return -1;
    char path[512];
    fz_write("data-idx-ubyte", data + 1, size - 1, path, sizeof path);
    idx_file f;
    const uint32_t magic = data[0] & 1 ? 0x00000801u : 0x00000803u;
    if (read_idx(path, magic, &f) == PT_OK) {
        size_t total = 1;
        for (int i = 0; i < f.ndim; i++) total *= f.dims[i];
        volatile uint8_t sum = 0; /* touch every byte the header promised */
        for (size_t i = 0; i < total; i++) sum += f.data[i];
        free(f.data);
    }
    pt_error_clear();
    return 0;
}
