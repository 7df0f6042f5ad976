#include "h5util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

void pt_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static pt_status attr_write(hid_t obj, const char *name, hid_t type, const void *v)
{
    pt_status st = PT_OK;
    hid_t space = H5Screate(H5S_SCALAR);
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, type, v) < 0)
        st = PT_ERR(PT_ERR_HDF5, "check free disk space", "cannot write attribute '%s'", name);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return st;
}

pt_status pt_h5_attr_write_i64(hid_t obj, const char *name, int64_t v)
{
    return attr_write(obj, name, H5T_NATIVE_INT64, &v);
}
pt_status pt_h5_attr_write_u64(hid_t obj, const char *name, uint64_t v)
{
    return attr_write(obj, name, H5T_NATIVE_UINT64, &v);
}
pt_status pt_h5_attr_write_f64(hid_t obj, const char *name, double v)
{
    return attr_write(obj, name, H5T_NATIVE_DOUBLE, &v);
}

pt_status pt_h5_attr_write_str(hid_t obj, const char *name, const char *s)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(s) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    pt_status st = attr_write(obj, name, t, s);
    H5Tclose(t);
    return st;
}

static pt_status attr_read(hid_t obj, const char *name, hid_t type, void *v, const char *what)
{
    if (H5Aexists(obj, name) <= 0)
        return PT_ERR(PT_ERR_FORMAT, "was the file written by pt-prep / paratrain?",
                      "%s: attribute '%s' is missing", what, name);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    herr_t rc = a >= 0 ? H5Aread(a, type, v) : -1;
    if (a >= 0) H5Aclose(a);
    if (rc < 0)
        return PT_ERR(PT_ERR_FORMAT, NULL, "%s: cannot read attribute '%s'", what, name);
    return PT_OK;
}

pt_status pt_h5_attr_read_i64(hid_t obj, const char *name, int64_t *v, const char *what)
{
    return attr_read(obj, name, H5T_NATIVE_INT64, v, what);
}
pt_status pt_h5_attr_read_u64(hid_t obj, const char *name, uint64_t *v, const char *what)
{
    return attr_read(obj, name, H5T_NATIVE_UINT64, v, what);
}
pt_status pt_h5_attr_read_f64(hid_t obj, const char *name, double *v, const char *what)
{
    return attr_read(obj, name, H5T_NATIVE_DOUBLE, v, what);
}

pt_status pt_h5_attr_read_str(hid_t obj, const char *name, char *buf, size_t len,
                              const char *what)
{
    if (H5Aexists(obj, name) <= 0)
        return PT_ERR(PT_ERR_FORMAT, NULL, "%s: attribute '%s' is missing", what, name);
    pt_status st = PT_OK;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t ft = a >= 0 ? H5Aget_type(a) : -1;
    size_t n = ft >= 0 ? H5Tget_size(ft) : 0;
    if (ft < 0 || H5Tget_class(ft) != H5T_STRING || H5Tis_variable_str(ft) > 0 || n == 0) {
        st = PT_ERR(PT_ERR_FORMAT, NULL, "%s: attribute '%s' is not a fixed-length string", what,
                    name);
    } else {
        char tmp[n + 1];
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, n);
        if (H5Aread(a, mt, tmp) < 0)
            st = PT_ERR(PT_ERR_FORMAT, NULL, "%s: cannot read attribute '%s'", what, name);
        tmp[n] = '\0';
        snprintf(buf, len, "%s", tmp);
        H5Tclose(mt);
    }
    if (ft >= 0) H5Tclose(ft);
    if (a >= 0) H5Aclose(a);
    return st;
}

pt_status pt_h5_make_parents(hid_t loc, const char *path)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = strchr(buf, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (buf[0] && H5Lexists(loc, buf, H5P_DEFAULT) <= 0) {
            hid_t g = H5Gcreate2(loc, buf, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (g < 0) return PT_ERR(PT_ERR_HDF5, NULL, "cannot create group '%s'", buf);
            H5Gclose(g);
        }
        *p = '/';
    }
    return PT_OK;
}

pt_status pt_mkdir_p(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return PT_ERR(PT_ERR_ARG, NULL, "path too long: '%s'", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return PT_ERR(PT_ERR_IO, "check the path and its permissions",
                              "cannot create directory '%s': %s", buf, strerror(errno));
            *p = c;
            if (c == '\0') break;
        }
    }
    return PT_OK;
}

/* Adds elements [lo, hi) of the sub-array that starts at prefix start[0..d-1] (dims d.. free). */
static herr_t select_range(hid_t space, int d, int nd, const hsize_t *dims, hsize_t *start,
                           hsize_t lo, hsize_t hi)
{
    hsize_t inner = 1, count[H5S_MAX_RANK];
    for (int k = d + 1; k < nd; k++) inner *= dims[k];
    hsize_t r0 = lo / inner, r1 = hi / inner;
    if (r0 == r1) { /* inside one row of dimension d */
        start[d] = r0;
        return select_range(space, d + 1, nd, dims, start, lo % inner, hi % inner);
    }
    herr_t rc = 0;
    if (lo % inner) { /* the partial first row */
        start[d] = r0;
        rc |= select_range(space, d + 1, nd, dims, start, lo % inner, inner);
        r0++;
    }
    if (r1 > r0) { /* whole rows r0..r1-1 */
        for (int k = 0; k < nd; k++) count[k] = k < d ? 1 : k == d ? r1 - r0 : dims[k];
        start[d] = r0;
        for (int k = d + 1; k < nd; k++) start[k] = 0;
        rc |= H5Sselect_hyperslab(space, H5S_SELECT_OR, start, NULL, count, NULL) < 0;
    }
    if (hi % inner) { /* the partial last row */
        start[d] = r1;
        rc |= select_range(space, d + 1, nd, dims, start, 0, hi % inner);
    }
    return rc;
}

pt_status pt_h5_select_linear(hid_t space, hsize_t lo, hsize_t hi)
{
    hsize_t dims[H5S_MAX_RANK], start[H5S_MAX_RANK] = {0};
    int nd = H5Sget_simple_extent_ndims(space);
    if (nd < 1 || H5Sget_simple_extent_dims(space, dims, NULL) < 0 || H5Sselect_none(space) < 0)
        return PT_ERR(PT_ERR_INTERNAL, NULL, "bad dataspace for a linear selection");
    if (lo >= hi) return PT_OK;
    /* r0 == r1 recursion ends at the last dimension, where inner == 1 and rows are elements */
    if (select_range(space, 0, nd, dims, start, lo, hi) != 0)
        return PT_ERR(PT_ERR_INTERNAL, NULL, "H5Sselect_hyperslab failed for [%llu, %llu)",
                      (unsigned long long)lo, (unsigned long long)hi);
    return PT_OK;
}
