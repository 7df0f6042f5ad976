/* A tensor is a typed, shaped view of memory owned by a backend. Tensors never own memory:
 * parameters, gradients and optimizer state live in a few flat buffers and tensors point into them. */
#ifndef PARATRAIN_TENSOR_H
#define PARATRAIN_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* PT_I128: 128-bit two's-complement integers (two little-endian 64-bit words), the exact
 * fixed-point accumulator of --reproducible (integer sums do not depend on their order). */
typedef enum { PT_F32 = 0, PT_F64, PT_F16, PT_BF16, PT_I32, PT_I64, PT_U8, PT_I128 } pt_dtype;

#define PT_MAX_DIMS 4

struct pt_backend;

typedef struct {
    pt_dtype dtype;
    int ndim;
    int64_t shape[PT_MAX_DIMS];
    void *data;
    const struct pt_backend *backend;
} pt_tensor;

size_t pt_dtype_size(pt_dtype t);
const char *pt_dtype_name(pt_dtype t);
int64_t pt_tensor_numel(const pt_tensor *t);
/* Writes "(d0, d1, ...)" into buf. */
const char *pt_shape_str(int ndim, const int64_t *shape, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
