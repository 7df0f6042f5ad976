/* Backend lookup. The CUDA backend (kernels/cuda/) is built with --with-cuda; without it "cuda"
 * is unavailable and asking for it gives a clear error (see build_model). */
#include "config.h"

#include "paratrain/backend.h"

#include <stdlib.h>
#include <string.h>

#if !HAVE_CUDA /* kernels/cuda/backend_cuda.cu has the real ones */
const pt_backend *pt_backend_cuda(void) { return NULL; }
const char *pt_backend_cuda_why(void)
{
    return "paratrain was built without CUDA: configure --with-cuda[=DIR] on a machine with nvcc";
}
pt_status pt_backend_cuda_select(int local_rank)
{
    (void)local_rank;
    return PT_ERR(PT_ERR_CUDA, "configure --with-cuda[=DIR], or run with --backend cpu",
                  "%s", pt_backend_cuda_why());
}
#endif

const pt_backend *pt_backend_by_name(const char *name)
{
    if (!strcmp(name, "cpu")) return pt_backend_cpu();
    if (!strcmp(name, "cuda")) return pt_backend_cuda();
    return NULL;
}

void *pt_host_alloc(const pt_backend *be, size_t bytes)
{
    return be->host_alloc ? be->host_alloc(bytes) : malloc(bytes);
}

void pt_host_free(const pt_backend *be, void *p)
{
    if (!p) return;
    if (be->host_free) be->host_free(p);
    else free(p);
}
