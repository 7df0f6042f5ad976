/* CUDA norm entries (to be written). */
#include "cuda_common.h"

void pt_cuda_register_norm(pt_backend *be) { (void)be; }
