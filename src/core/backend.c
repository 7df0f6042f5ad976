/* Backend lookup. The CUDA backend exists only in builds configured --with-cuda. */
#include "paratrain/backend.h"

#include <string.h>

#include "config.h"

#ifndef PT_HAVE_CUDA
const pt_backend *pt_backend_cuda(void) { return NULL; }
#endif

const pt_backend *pt_backend_by_name(const char *name)
{
    if (!strcmp(name, "cpu")) return pt_backend_cpu();
    if (!strcmp(name, "cuda")) return pt_backend_cuda();
    return NULL;
}
