/* h5mangle: damages HDF5 files in precise ways for the bad-input tests.
 *   h5mangle set-f32 FILE DATASET INDEX VALUE   element INDEX (flat) of a float dataset := VALUE
 *   h5mangle set-i32 FILE DATASET INDEX VALUE   element INDEX (flat) of an int dataset := VALUE
 *     In a data shard (a file with /crc32) the edited sample's checksum is updated too: the
 *     result is a well-formed shard holding a bad value, as a faulty converter would write it.
 *   h5mangle reshape FILE DATASET D0 D1 D2 D3   replace a uint8 dataset by zeros of a new shape
 *   h5mangle scribble FILE DATASET OFFSET BYTES SEED
 *     overwrites BYTES bytes of the dataset's storage, from byte OFFSET of it, with pseudo-random
 *     bytes, straight into the file behind HDF5's back (silent corruption on disk)
 *   h5mangle set-attr-i64 FILE ATTR VALUE       root attribute ATTR := VALUE (int64)
 *   h5mangle delete FILE DATASET                unlink a dataset */
#include <fcntl.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paratrain/data.h"

/* Recomputes /crc32[row] of a shard from its image row and label (no-op without /crc32). */
static int rehash_sample(hid_t f, hsize_t row)
{
    if (H5Lexists(f, "crc32", H5P_DEFAULT) <= 0) return 0;
    hid_t di = H5Dopen2(f, "images", H5P_DEFAULT), dl = H5Dopen2(f, "labels", H5P_DEFAULT);
    hid_t dc = H5Dopen2(f, "crc32", H5P_DEFAULT);
    if (di < 0 || dl < 0 || dc < 0) return fprintf(stderr, "h5mangle: not a shard\n"), 1;
    hid_t sp = H5Dget_space(di), t = H5Dget_type(di);
    const int f32 = H5Tget_class(t) == H5T_FLOAT;
    hsize_t dims[4], start[4] = {row, 0, 0, 0};
    H5Sget_simple_extent_dims(sp, dims, NULL);
    hsize_t count[4] = {1, dims[1], dims[2], dims[3]};
    const size_t elems = (size_t)(dims[1] * dims[2] * dims[3]), bytes = elems * (f32 ? 4 : 1);
    unsigned char *img = malloc(bytes);
    int32_t lab = 0;
    uint32_t crc = 0;
    hid_t ms = H5Screate_simple(4, count, NULL), ls = H5Dget_space(dl), one_s;
    hsize_t one = 1;
    one_s = H5Screate_simple(1, &one, NULL);
    int rc = !img || H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
             H5Dread(di, f32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8, ms, sp, H5P_DEFAULT, img) < 0 ||
             H5Sselect_elements(ls, H5S_SELECT_SET, 1, &row) < 0 ||
             H5Dread(dl, H5T_NATIVE_INT32, one_s, ls, H5P_DEFAULT, &lab) < 0;
    if (!rc) {
        crc = pt_shard_sample_crc(img, bytes, f32 ? PT_F32 : PT_U8, lab);
        rc = H5Dwrite(dc, H5T_NATIVE_UINT32, one_s, ls, H5P_DEFAULT, &crc) < 0;
    }
    if (rc) fprintf(stderr, "h5mangle: cannot update /crc32[%llu]\n", (unsigned long long)row);
    free(img);
    H5Sclose(ms), H5Sclose(ls), H5Sclose(one_s), H5Sclose(sp), H5Tclose(t);
    H5Dclose(di), H5Dclose(dl), H5Dclose(dc);
    return rc;
}

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
    hsize_t one = 1;
    hid_t ms = H5Screate_simple(1, &one, NULL);
    float fv = strtof(val, NULL);
    int iv = atoi(val);
    herr_t rc = H5Sselect_elements(sp, H5S_SELECT_SET, 1, coord) < 0 ? -1 : H5Dwrite(d, is_f32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT, ms, sp, H5P_DEFAULT,
                         is_f32 ? (void *)&fv : (void *)&iv);
    H5Sclose(ms), H5Sclose(sp), H5Dclose(d);
    int bad = rc < 0;
    if (!bad && (!strcmp(ds, "images") || !strcmp(ds, "labels"))) bad = rehash_sample(f, coord[0]);
    H5Fclose(f);
    return bad;
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

static int scribble(const char *file, const char *ds, long long off, long long bytes, unsigned seed)
{
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f >= 0 ? H5Dopen2(f, ds, H5P_DEFAULT) : -1;
    if (d < 0) return fprintf(stderr, "h5mangle: cannot open %s:%s\n", file, ds), 1;
    haddr_t base = H5Dget_offset(d); /* contiguous storage only */
    hsize_t size = H5Dget_storage_size(d);
    H5Dclose(d), H5Fclose(f);
    if (base == HADDR_UNDEF || off < 0 || bytes < 0 || (hsize_t)(off + bytes) > size)
        return fprintf(stderr, "h5mangle: %s:%s is not contiguous or has fewer than %lld bytes\n",
                       file, ds, off + bytes), 1;
    unsigned char *junk = malloc((size_t)bytes + 1);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (long long i = 0; i < bytes; i++) { /* xorshift64: reproducible junk */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        junk[i] = (unsigned char)(x >> 32);
    }
    int fd = open(file, O_WRONLY);
    int bad = fd < 0 || pwrite(fd, junk, (size_t)bytes, (off_t)(base + (haddr_t)off)) != bytes;
    if (fd >= 0) bad |= close(fd) != 0;
    free(junk);
    if (bad) fprintf(stderr, "h5mangle: cannot write into %s\n", file);
    return bad;
}

static int set_attr(const char *file, const char *name, long long v)
{
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = f >= 0 ? H5Aopen(f, name, H5P_DEFAULT) : -1;
    int64_t x = v;
    int bad = a < 0 || H5Awrite(a, H5T_NATIVE_INT64, &x) < 0;
    if (a >= 0) H5Aclose(a);
    if (f >= 0) H5Fclose(f);
    if (bad) fprintf(stderr, "h5mangle: cannot set attribute %s of %s\n", name, file);
    return bad;
}

static int delete_ds(const char *file, const char *ds)
{
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    int bad = f < 0 || H5Ldelete(f, ds, H5P_DEFAULT) < 0;
    if (f >= 0) H5Fclose(f);
    if (bad) fprintf(stderr, "h5mangle: cannot delete %s:%s\n", file, ds);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc == 6 && !strcmp(argv[1], "set-f32")) return set_elem(argv[2], argv[3], atoll(argv[4]), argv[5], 1);
    if (argc == 6 && !strcmp(argv[1], "set-i32")) return set_elem(argv[2], argv[3], atoll(argv[4]), argv[5], 0);
    if (argc == 8 && !strcmp(argv[1], "reshape")) return reshape(argv[2], argv[3], argv + 4);
    if (argc == 7 && !strcmp(argv[1], "scribble"))
        return scribble(argv[2], argv[3], atoll(argv[4]), atoll(argv[5]), (unsigned)atoi(argv[6]));
    if (argc == 5 && !strcmp(argv[1], "set-attr-i64")) return set_attr(argv[2], argv[3], atoll(argv[4]));
    if (argc == 4 && !strcmp(argv[1], "delete")) return delete_ds(argv[2], argv[3]);
    fputs("usage: h5mangle set-f32|set-i32 FILE DATASET INDEX VALUE\n"
          "       h5mangle reshape FILE DATASET D0 D1 D2 D3\n"
          "       h5mangle scribble FILE DATASET OFFSET BYTES SEED\n"
          "       h5mangle set-attr-i64 FILE ATTR VALUE\n"
          "       h5mangle delete FILE DATASET\n", stderr);
    return 2;
}
