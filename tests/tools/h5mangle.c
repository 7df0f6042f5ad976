/* h5mangle: damages HDF5 files in precise ways for the bad-input tests.
 *   h5mangle set-f32 FILE DATASET INDEX VALUE   element INDEX (flat) of a float dataset := VALUE
 *   h5mangle set-i32 FILE DATASET INDEX VALUE   element INDEX (flat) of an int dataset := VALUE
 *   h5mangle reshape FILE DATASET D0 D1 D2 D3   replace a uint8 dataset by zeros of a new shape */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int set_elem(const char *file, const char *ds, long long idx, const char *val, int is_f32)
{
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = f >= 0 ? H5Dopen2(f, ds, H5P_DEFAULT) : -1;
    if (d < 0) return fprintf(stderr, "h5mangle: cannot open %s:%s\n", file, ds), 1;
    hid_t sp = H5Dget_space(d);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[8], coord[8];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    long long rem = idx;
    for (int i = nd - 1; i >= 0; i--) coord[i] = (hsize_t)(rem % (long long)dims[i]), rem /= (long long)dims[i];
    H5Sselect_elements(sp, H5S_SELECT_SET, 1, coord);
    hsize_t one = 1;
    hid_t ms = H5Screate_simple(1, &one, NULL);
    float fv = strtof(val, NULL);
    int iv = atoi(val);
    herr_t rc = H5Dwrite(d, is_f32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT, ms, sp, H5P_DEFAULT,
                         is_f32 ? (void *)&fv : (void *)&iv);
    H5Sclose(ms), H5Sclose(sp), H5Dclose(d), H5Fclose(f);
    return rc < 0;
}

static int reshape(const char *file, const char *ds, char **dimv)
{
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0 || H5Ldelete(f, ds, H5P_DEFAULT) < 0)
        return fprintf(stderr, "h5mangle: cannot delete %s:%s\n", file, ds), 1;
    hsize_t dims[4];
    size_t n = 1;
    for (int i = 0; i < 4; i++) dims[i] = strtoull(dimv[i], NULL, 10), n *= dims[i];
    hid_t sp = H5Screate_simple(4, dims, NULL);
    hid_t d = H5Dcreate2(f, ds, H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    unsigned char *z = calloc(n ? n : 1, 1);
    herr_t rc = H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, z);
    free(z);
    H5Dclose(d), H5Sclose(sp), H5Fclose(f);
    return rc < 0;
}

int main(int argc, char **argv)
{
    if (argc == 6 && !strcmp(argv[1], "set-f32")) return set_elem(argv[2], argv[3], atoll(argv[4]), argv[5], 1);
    if (argc == 6 && !strcmp(argv[1], "set-i32")) return set_elem(argv[2], argv[3], atoll(argv[4]), argv[5], 0);
    if (argc == 8 && !strcmp(argv[1], "reshape")) return reshape(argv[2], argv[3], argv + 4);
    fputs("usage: h5mangle set-f32|set-i32 FILE DATASET INDEX VALUE\n"
          "       h5mangle reshape FILE DATASET D0 D1 D2 D3\n", stderr);
    return 2;
}
