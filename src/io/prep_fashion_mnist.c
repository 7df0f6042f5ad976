/* pt-prep fashion-mnist: IDX files (Debian's dataset-fashion-mnist ships them gzip'd) to shards.
 *
 * IDX: a big-endian header, magic 0x00000803 (uint8, 3 dims) for images and 0x00000801 for
 * labels, one uint32 per dimension, then the data. Everything is checked: magic, dimension
 * sizes, that the file holds exactly the bytes the header promises, and that the image and label
 * files agree on the number of examples. */
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "h5util.h"
#include "paratrain/data.h"
#include "paratrain/rng.h"
#include "prep.h"

typedef struct {
    uint8_t *data;
    uint32_t dims[3];
    int ndim;
} idx_file;

static pt_status find_file(const char *dir, const char *base, char *out, size_t len)
{
    snprintf(out, len, "%s/%s.gz", dir, base);
    if (access(out, R_OK) == 0) return PT_OK;
    snprintf(out, len, "%s/%s", dir, base);
    if (access(out, R_OK) == 0) return PT_OK;
    return PT_ERR(PT_ERR_IO, "install the Debian package dataset-fashion-mnist, or pass --src DIR",
                  "cannot find %s(.gz) in '%s'", base, dir);
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static pt_status read_idx(const char *path, uint32_t magic, idx_file *f)
{
    memset(f, 0, sizeof *f);
    gzFile gz = gzopen(path, "rb");
    if (!gz) return PT_ERR(PT_ERR_IO, NULL, "cannot open '%s': %s", path, strerror(errno));
    pt_status st = PT_OK;
    unsigned char hdr[16];
    f->ndim = (int)(magic & 0xff);
    int hlen = 4 + 4 * f->ndim;
    if (gzread(gz, hdr, (unsigned)hlen) != hlen) {
        st = PT_ERR(PT_ERR_FORMAT, "the file is truncated; reinstall dataset-fashion-mnist",
                    "'%s': too short for an IDX header", path);
        goto out;
    }
    if (be32(hdr) != magic) {
        st = PT_ERR(PT_ERR_FORMAT, "is this the right file?",
                    "'%s': IDX magic number 0x%08x, expected 0x%08x", path, be32(hdr), magic);
        goto out;
    }
    size_t total = 1;
    for (int i = 0; i < f->ndim; i++) {
        f->dims[i] = be32(hdr + 4 + 4 * i);
        if (f->dims[i] == 0 || f->dims[i] > (1u << 26)) {
            st = PT_ERR(PT_ERR_FORMAT, NULL, "'%s': implausible dimension %u", path, f->dims[i]);
            goto out;
        }
        total *= f->dims[i];
        /* The header is allocated for before the data is read: a damaged one must not ask for
         * up to 2^78 bytes (size_t wraps) or for gigabytes that are not there (fuzz_idx found
         * malloc(3356212100) from a 20-byte file). Fashion-MNIST's largest file is 47 MB. */
        if (total > (1u << 30)) {
            st = PT_ERR(PT_ERR_FORMAT, NULL, "'%s': implausible size: the header promises more "
                        "than 1 GiB", path);
            goto out;
        }
    }
    f->data = malloc(total);
    if (!f->data) {
        st = PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate %zu bytes for '%s'", total, path);
        goto out;
    }
    size_t got = 0;
    while (got < total) {
        unsigned chunk = total - got > (1u << 30) ? (1u << 30) : (unsigned)(total - got);
        int r = gzread(gz, f->data + got, chunk);
        if (r <= 0) break;
        got += (size_t)r;
    }
    unsigned char extra;
    if (got != total) {
        st = PT_ERR(PT_ERR_FORMAT, "the file is truncated; reinstall dataset-fashion-mnist",
                    "'%s': header promises %zu data bytes, file holds %zu", path, total, got);
    } else if (gzread(gz, &extra, 1) > 0) {
        st = PT_ERR(PT_ERR_FORMAT, NULL, "'%s': trailing bytes after the %zu data bytes", path,
                    total);
    }
out:
    gzclose(gz);
    if (st != PT_OK) free(f->data), f->data = NULL;
    return st;
}

static pt_status write_shard(const char *path, const char *split, const pt_prep_options *o,
                             const pt_prep_meta *meta, const uint8_t *images,
                             const uint8_t *labels, const int64_t *rows, int64_t n, int64_t first)
{
    pt_status st = PT_OK;
    const int h = meta->h, w = meta->w;
    const int64_t S = (int64_t)h * w;
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return PT_ERR(PT_ERR_IO, "check that the output directory is writable",
                             "cannot create '%s'", path);
    hsize_t dims[4] = {(hsize_t)n, 1, (hsize_t)h, (hsize_t)w};
    hid_t sp = H5Screate_simple(4, dims, NULL), lsp = H5Screate_simple(1, dims, NULL);
    hid_t ti = o->float32 ? H5T_IEEE_F32LE : H5T_STD_U8LE;
    hid_t di = H5Dcreate2(f, "images", ti, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t dl = H5Dcreate2(f, "labels", H5T_STD_I32LE, lsp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t dc = H5Dcreate2(f, "crc32", H5T_STD_U32LE, lsp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const size_t esize = o->float32 ? 4 : 1;
    void *buf = malloc((size_t)(n > 0 ? n : 1) * (size_t)S * esize);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    uint32_t *crc = malloc(sizeof(uint32_t) * (size_t)(n > 0 ? n : 1));
    if (di < 0 || dl < 0 || dc < 0 || !buf || !lab || !crc) {
        st = PT_ERR(PT_ERR_IO, "check free disk space", "cannot create datasets in '%s'", path);
        goto out;
    }
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *src = images + rows[i] * S;
        if (o->float32)
            for (int64_t k = 0; k < S; k++) ((float *)buf)[i * S + k] = (float)src[k] / 255.0f;
        else
            memcpy((uint8_t *)buf + i * S, src, (size_t)S);
        lab[i] = labels[rows[i]];
        /* computed from the buffer that is written, so the checksum covers the stored bytes */
        crc[i] = pt_shard_sample_crc((const uint8_t *)buf + (size_t)i * (size_t)S * esize,
                                     (size_t)S * esize, o->float32 ? PT_F32 : PT_U8, lab[i]);
    }
    PT_H5_CHECK_GOTO(st, H5Dwrite(di, o->float32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8, H5S_ALL,
                                  H5S_ALL, H5P_DEFAULT, buf),
                     "check free disk space", out);
    PT_H5_CHECK_GOTO(st, H5Dwrite(dl, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, lab),
                     "check free disk space", out);
    PT_H5_CHECK_GOTO(st, H5Dwrite(dc, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, crc),
                     "check free disk space", out);
    PT_TRY_GOTO(st, pt_h5_attr_write_i64(f, "format_version", PT_DATA_FORMAT_VERSION), out);
    PT_TRY_GOTO(st, pt_h5_attr_write_str(f, "source", meta->source), out);
    PT_TRY_GOTO(st, pt_h5_attr_write_str(f, "split", split), out);
    PT_TRY_GOTO(st, pt_h5_attr_write_i64(f, "count", n), out);
    PT_TRY_GOTO(st, pt_h5_attr_write_i64(f, "first_index", first), out);
out:
    free(buf), free(lab), free(crc);
    if (di >= 0) H5Dclose(di);
    if (dl >= 0) H5Dclose(dl);
    if (dc >= 0) H5Dclose(dc);
    H5Sclose(sp), H5Sclose(lsp);
    if (H5Fclose(f) < 0 && st == PT_OK)
        st = PT_ERR(PT_ERR_IO, "check free disk space", "cannot close '%s'", path);
    return st;
}

/* Writes one split as min(shards, n) files; fills names and counts for the index. */
static pt_status write_split(const pt_prep_options *o, const pt_prep_meta *meta, const char *split,
                             const uint8_t *images, const uint8_t *labels, const int64_t *rows,
                             int64_t n, hid_t index)
{
    char dir[PT_PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/%s", o->out_dir, split);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return PT_ERR(PT_ERR_IO, NULL, "cannot create directory '%s': %s", dir, strerror(errno));
    int nsh = o->shards < n ? o->shards : (int)(n > 0 ? n : 1);
    char(*names)[256] = calloc((size_t)nsh, sizeof *names);
    int64_t *counts = calloc((size_t)nsh, sizeof *counts);
    if (!names || !counts) {
        free(names), free(counts);
        return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate the shard list");
    }
    pt_status st = PT_OK;
    for (int s = 0; s < nsh && st == PT_OK; s++) {
        int64_t off, cnt;
        pt_batch_share(n, s, nsh, &off, &cnt);
        snprintf(names[s], sizeof names[s], "%s/shard_%05d.h5", split, s);
        char path[PT_PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", o->out_dir, names[s]);
        counts[s] = cnt;
        st = write_shard(path, split, o, meta, images, labels, rows + off, cnt, off);
    }
    if (st == PT_OK) {
        hid_t g = H5Gcreate2(index, split, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hsize_t dn = (hsize_t)nsh;
        hid_t sp = H5Screate_simple(1, &dn, NULL);
        hid_t ft = H5Tcopy(H5T_C_S1);
        H5Tset_size(ft, 256);
        hid_t df = H5Dcreate2(g, "files", ft, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hid_t dc = H5Dcreate2(g, "counts", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0 || df < 0 || dc < 0 || H5Dwrite(df, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, names) < 0 ||
            H5Dwrite(dc, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, counts) < 0)
            st = PT_ERR(PT_ERR_IO, "check free disk space", "cannot write the index of '%s'", split);
        if (df >= 0) H5Dclose(df);
        if (dc >= 0) H5Dclose(dc);
        H5Tclose(ft), H5Sclose(sp);
        if (g >= 0) H5Gclose(g);
    }
    free(names), free(counts);
    return st;
}

/* Writes the three splits and, last, the index (docs/DATA_FORMAT.md). Shared by every pt-prep
 * dataset. */
pt_status pt_prep_write(const pt_prep_options *o, const pt_prep_split sp[3], const pt_prep_meta *meta)
{
    pt_h5_quiet();
    if (o->shards < 1) return PT_ERR(PT_ERR_ARG, NULL, "--shards must be at least 1");
    pt_status st = PT_OK;
    hid_t index = -1;
    if (mkdir(o->out_dir, 0755) != 0 && errno != EEXIST) {
        st = PT_ERR(PT_ERR_IO, NULL, "cannot create '%s': %s", o->out_dir, strerror(errno));
        goto out;
    }
    /* The index is written last under a temporary name: a prep that dies half-way leaves no index,
     * so the reader refuses the directory instead of reading half of it. */
    char ipath[PT_PATH_MAX + 32], itmp[PT_PATH_MAX + 40];
    snprintf(ipath, sizeof ipath, "%s/index.h5", o->out_dir);
    snprintf(itmp, sizeof itmp, "%s/.index.h5.tmp", o->out_dir);
    unlink(ipath);
    index = H5Fcreate(itmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (index < 0) {
        st = PT_ERR(PT_ERR_IO, "check that the output directory is writable", "cannot create '%s'",
                    itmp);
        goto out;
    }
    PT_TRY_GOTO(st, write_split(o, meta, "train", sp[0].data, sp[0].labels, sp[0].rows, sp[0].n, index), out);
    PT_TRY_GOTO(st, write_split(o, meta, "val", sp[1].data, sp[1].labels, sp[1].rows, sp[1].n, index), out);
    PT_TRY_GOTO(st, write_split(o, meta, "test", sp[2].data, sp[2].labels, sp[2].rows, sp[2].n, index), out);
    PT_TRY_GOTO(st, pt_h5_attr_write_i64(index, "format_version", PT_DATA_FORMAT_VERSION), out);
    PT_TRY_GOTO(st, pt_h5_attr_write_str(index, "source", meta->source), out);
    PT_TRY_GOTO(st, pt_h5_attr_write_i64(index, "num_classes", meta->num_classes), out);
    PT_TRY_GOTO(st, pt_h5_attr_write_i64(index, "channels", 1), out);
    PT_TRY_GOTO(st, pt_h5_attr_write_i64(index, "height", meta->h), out);
    PT_TRY_GOTO(st, pt_h5_attr_write_i64(index, "width", meta->w), out);
    PT_TRY_GOTO(st, pt_h5_attr_write_u64(index, "split_seed", o->seed), out);
    PT_TRY_GOTO(st, pt_h5_attr_write_str(index, "class_names", meta->class_names), out);
    PT_TRY_GOTO(st, pt_h5_attr_write_i64(index, "tokens", meta->tokens), out);
    if (H5Fclose(index) < 0) {
        index = -1;
        st = PT_ERR(PT_ERR_IO, "check free disk space", "cannot close '%s'", itmp);
        goto out;
    }
    index = -1;
    if (rename(itmp, ipath) != 0)
        st = PT_ERR(PT_ERR_IO, NULL, "cannot rename '%s' to '%s': %s", itmp, ipath, strerror(errno));
out:
    if (index >= 0) H5Fclose(index);
    return st;
}

pt_status pt_prep_fashion_mnist(const pt_prep_options *o)
{
    char p[4][PT_PATH_MAX + 64];
    const char *base[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    for (int i = 0; i < 4; i++) PT_TRY(find_file(o->src_dir, base[i], p[i], sizeof p[i]));
    idx_file tri = {0}, trl = {0}, tei = {0}, tel = {0};
    pt_status st = PT_OK;
    int64_t *rows = NULL;
    PT_TRY_GOTO(st, read_idx(p[0], 0x00000803, &tri), out);
    PT_TRY_GOTO(st, read_idx(p[1], 0x00000801, &trl), out);
    PT_TRY_GOTO(st, read_idx(p[2], 0x00000803, &tei), out);
    PT_TRY_GOTO(st, read_idx(p[3], 0x00000801, &tel), out);
    if (tri.dims[0] != trl.dims[0] || tei.dims[0] != tel.dims[0]) {
        st = PT_ERR(PT_ERR_FORMAT, "the image and label files do not belong together",
                    "image/label counts differ: train %u vs %u, test %u vs %u", tri.dims[0],
                    trl.dims[0], tei.dims[0], tel.dims[0]);
        goto out;
    }
    if (tri.dims[1] != tei.dims[1] || tri.dims[2] != tei.dims[2]) {
        st = PT_ERR(PT_ERR_FORMAT, NULL, "train and test image sizes differ");
        goto out;
    }
    for (uint32_t i = 0; i < trl.dims[0]; i++)
        if (trl.data[i] > 9) {
            st = PT_ERR(PT_ERR_FORMAT, NULL, "'%s': label %u of example %u is not a class 0-9",
                        p[1], trl.data[i], i);
            goto out;
        }
    for (uint32_t i = 0; i < tel.dims[0]; i++)
        if (tel.data[i] > 9) {
            st = PT_ERR(PT_ERR_FORMAT, NULL, "'%s': label %u of example %u is not a class 0-9",
                        p[3], tel.data[i], i);
            goto out;
        }

    const int h = (int)tri.dims[1], w = (int)tri.dims[2];
    int64_t ntrain_all = tri.dims[0];
    if (o->limit > 0 && o->limit < ntrain_all) ntrain_all = o->limit;
    /* never clamped silently: a validation split that leaves no training example is refused */
    if (o->val_count < 0 || o->val_count >= ntrain_all) {
        st = PT_ERR(PT_ERR_ARG, "give --val N below the training examples (0: no validation split)",
                    "--val %lld leaves no training examples: '%s' %s %lld", (long long)o->val_count,
                    p[0], o->limit > 0 && o->limit <= (int64_t)tri.dims[0] ? "limited by --limit to" : "holds",
                    (long long)ntrain_all);
        goto out;
    }
    int64_t nval = o->val_count;
    int64_t ntest = tei.dims[0];
    if (o->limit > 0 && o->limit < ntest) ntest = o->limit;

    /* Validation: a seeded random subset of the training examples; both splits keep file order. */
    rows = malloc(sizeof(int64_t) * (size_t)(ntrain_all + ntest));
    uint8_t *is_val = calloc((size_t)ntrain_all, 1);
    if (!rows || !is_val) {
        free(is_val);
        st = PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate split tables");
        goto out;
    }
    for (int64_t i = 0; i < ntrain_all; i++) rows[i] = i;
    for (int64_t i = 0; i < nval; i++) { /* partial Fisher-Yates: the first nval are validation */
        int64_t j = i + (int64_t)pt_rng_below(o->seed, PT_STREAM_SPLIT, (uint64_t)i,
                                              (uint64_t)(ntrain_all - i));
        int64_t t = rows[i];
        rows[i] = rows[j], rows[j] = t;
    }
    for (int64_t i = 0; i < nval; i++) is_val[rows[i]] = 1;
    int64_t *trainrows = rows, *valrows = rows + (ntrain_all - nval);
    int64_t a = 0, b = 0;
    int64_t *tmp = malloc(sizeof(int64_t) * (size_t)ntrain_all);
    if (!tmp) {
        free(is_val);
        st = PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate split tables");
        goto out;
    }
    for (int64_t i = 0; i < ntrain_all; i++) {
        if (is_val[i]) tmp[ntrain_all - nval + b++] = i;
        else tmp[a++] = i;
    }
    memcpy(rows, tmp, sizeof(int64_t) * (size_t)ntrain_all);
    free(tmp), free(is_val);
    int64_t *testrows = rows + ntrain_all;
    for (int64_t i = 0; i < ntest; i++) testrows[i] = i;

    {
        const pt_prep_meta meta = {.source = "fashion-mnist", .num_classes = 10, .h = h, .w = w,
                                   .class_names = "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,"
                                                  "Shirt,Sneaker,Bag,Ankle boot"};
        const pt_prep_split sp[3] = {{tri.data, trl.data, trainrows, ntrain_all - nval},
                                     {tri.data, trl.data, valrows, nval},
                                     {tei.data, tel.data, testrows, ntest}};
        st = pt_prep_write(o, sp, &meta);
    }
out:
    free(rows);
    free(tri.data), free(trl.data), free(tei.data), free(tel.data);
    return st;
}
