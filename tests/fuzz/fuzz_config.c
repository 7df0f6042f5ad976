/* libFuzzer harness: the training configuration file parser (pt_train_config_load: "key = value"
 * lines, comments, every option's parser and range check), then the whole-config checks and the
 * dump a checkpoint stores. */
#include "fuzz_common.h"
#include "paratrain/train.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_setup(argc, argv, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    fz_write("train.conf", data, size, path, sizeof path);
    pt_train_config c;
    pt_train_config_defaults(&c);
    if (pt_train_config_load(&c, path) == PT_OK) {
        (void)pt_train_config_check(&c);
        char dump[16384];
        pt_train_config_dump(&c, dump, sizeof dump);
        /* the dump must load back (what a resume does with a checkpoint's config) */
        pt_train_config d;
        pt_train_config_defaults(&d);
        fz_write("dump.conf", (const uint8_t *)dump, strlen(dump), path, sizeof path);
        (void)pt_train_config_load(&d, path);
    }
    pt_error_clear();
    return 0;
}
