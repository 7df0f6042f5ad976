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
