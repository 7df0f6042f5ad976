/* Small HDF5 helpers shared by the data and checkpoint code (internal header). */
#ifndef PT_IO_H5UTIL_H
#define PT_IO_H5UTIL_H

#include <hdf5.h>
#include <stdint.h>

#include "paratrain/error.h"

/* Silences HDF5's own error-stack printing: paratrain reports one message per failure instead. */
void pt_h5_quiet(void);

pt_status pt_h5_attr_write_i64(hid_t obj, const char *name, int64_t v);
pt_status pt_h5_attr_write_u64(hid_t obj, const char *name, uint64_t v);
pt_status pt_h5_attr_write_f64(hid_t obj, const char *name, double v);
pt_status pt_h5_attr_write_str(hid_t obj, const char *name, const char *s);
/* Readers fail with PT_ERR_FORMAT naming the attribute and `what` (the file) when absent. */
pt_status pt_h5_attr_read_i64(hid_t obj, const char *name, int64_t *v, const char *what);
pt_status pt_h5_attr_read_u64(hid_t obj, const char *name, uint64_t *v, const char *what);
pt_status pt_h5_attr_read_f64(hid_t obj, const char *name, double *v, const char *what);
pt_status pt_h5_attr_read_str(hid_t obj, const char *name, char *buf, size_t len,
                              const char *what);

/* H5Ovisit changed signature in HDF5 1.12; both are supported. */
#if H5_VERSION_GE(1, 12, 0)
typedef H5O_info2_t pt_oinfo;
#define PT_OVISIT(f, cb, data) H5Ovisit3((f), H5_INDEX_NAME, H5_ITER_INC, (cb), (data), H5O_INFO_BASIC)
#else
typedef H5O_info_t pt_oinfo;
#define PT_OVISIT(f, cb, data) H5Ovisit2((f), H5_INDEX_NAME, H5_ITER_INC, (cb), (data), H5O_INFO_BASIC)
#endif

/* Selects the elements [lo, hi) -- row-major linear indices -- of an N-d dataspace, as a union
 * of at most 2N-1 hyperslabs (an empty range selects nothing). */
pt_status pt_h5_select_linear(hid_t space, hsize_t lo, hsize_t hi);

/* Creates the intermediate groups of "a/b/c" under loc (not c itself). */
pt_status pt_h5_make_parents(hid_t loc, const char *path);

/* mkdir -p: creates `path` and its missing parents (mode 0755). */
pt_status pt_mkdir_p(const char *path);

#endif
