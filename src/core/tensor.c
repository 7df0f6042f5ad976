#include "paratrain/tensor.h"

#include <stdio.h>

size_t pt_dtype_size(pt_dtype t)
{
    switch (t) {
    case PT_F32: case PT_I32: return 4;
    case PT_F64: case PT_I64: return 8;
    case PT_F16: case PT_BF16: return 2;
    case PT_U8: return 1;
    case PT_I128: return 16;
    }
    return 0;
}

const char *pt_dtype_name(pt_dtype t)
{
    static const char *names[] = {"f32", "f64", "f16", "bf16", "i32", "i64", "u8", "i128"};
    return (unsigned)t < sizeof names / sizeof *names ? names[t] : "?";
}

int64_t pt_tensor_numel(const pt_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

const char *pt_shape_str(int ndim, const int64_t *shape, char *buf, size_t len)
{
    size_t off = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (off < len) snprintf(buf + off, len - off, ")");
    return buf;
}
