/* CUDA attention entries (to be written). */
#include "cuda_common.h"

void pt_cuda_register_attention(pt_backend *be) { (void)be; }
