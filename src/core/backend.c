/* Backend lookup. The CUDA backend (kernels/cuda/) is not written yet, so "cuda" is unavailable
 * in every build and asking for it gives a clear error (see build_model). */
#include "paratrain/backend.h"

#include <string.h>

const pt_backend *pt_backend_cuda(void) { return NULL; }

const pt_backend *pt_backend_by_name(const char *name)
{
    if (!strcmp(name, "cpu")) return pt_backend_cpu();
    if (!strcmp(name, "cuda")) return pt_backend_cuda();
    return NULL;
}
