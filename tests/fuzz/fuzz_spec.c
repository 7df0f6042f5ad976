/* libFuzzer harness: the model-spec parser ("mlp:784-64-10", "gpt:d=32,layers=1", ...):
 * canonical form, comparison, and building the model when it is small. */
#include <ctype.h>

#include "fuzz_common.h"
#include "paratrain/backend.h"
#include "paratrain/model.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_setup(argc, argv, 0);
    return 0;
}

/* Every number of the canonical form (defaults included) at most `max`: building larger models
 * would only measure malloc (a valid spec may ask for 2^48 parameters). */
static int small(const char *canon, long max)
{
    for (const char *p = canon; *p; p++)
        if (isdigit((unsigned char)*p)) {
            char *e;
            if (strtol(p, &e, 10) > max) return 0;
            p = e - 1;
        }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 300) return -1;
    char spec[301];
    memcpy(spec, data, size);
    spec[size] = '\0';
    char canon[512];
    if (pt_model_spec_canonical(spec, canon, sizeof canon) == PT_OK) {
        if (!pt_model_spec_same(spec, canon)) abort(); /* a spec is the same as its canonical form */
        (void)pt_model_spec_uses_activation(spec);
        if (small(canon, 32) && strlen(spec) < sizeof ((pt_model *)0)->spec) {
            pt_model m;
            pt_model_options o = {0};
            if (pt_model_create(&m, spec, &o, pt_backend_cpu(), 2) == PT_OK) pt_model_destroy(&m);
        }
    }
    pt_error_clear();
    return 0;
}
