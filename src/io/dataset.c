/* Reading shards: the index, collective open of every shard with the MPI-IO driver, and reads of
 * arbitrary sample sets as one hyperslab union per shard. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5util.h"
#include "paratrain/agree.h"
#include "paratrain/crc.h"
#include "paratrain/data.h"

#define HINT_PREP "prepare the data with: pt-prep fashion-mnist --out DIR"
#define HINT_REPREP "the shard is damaged: re-run pt-prep to re-create the data directory"
#define HINT_OLD "version 1 shards carry no checksums: re-run pt-prep of this paratrain to re-create the data directory"

uint32_t pt_shard_sample_crc(const void *image, size_t bytes, pt_dtype dtype, int32_t label)
{
    uint32_t c;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    /* the checksum is of the stored little-endian bytes, so swap 4-byte elements first */
    if (dtype == PT_F32) {
        const uint8_t *p = image;
        c = 0;
        for (size_t i = 0; i + 4 <= bytes; i += 4) {
            uint8_t le[4] = {p[i + 3], p[i + 2], p[i + 1], p[i]};
            c = pt_crc32_update(c, le, 4);
        }
    } else {
        c = pt_crc32(image, bytes);
    }
    const uint32_t u = (uint32_t)label;
    const uint8_t lab[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    return pt_crc32_update(c, lab, 4);
#else
    (void)dtype;
    c = pt_crc32(image, bytes);
    return pt_crc32_update(c, &label, sizeof label);
#endif
}

static pt_status read_index(pt_dataset *d, char (**files)[256])
{
    char path[PT_PATH_MAX + 32], what[PT_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/index.h5", d->dir);
    snprintf(what, sizeof what, "%s", path);
    if (access(path, R_OK) != 0)
        return PT_ERR(PT_ERR_IO, HINT_PREP, "data index '%s' not found", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return PT_ERR(PT_ERR_FORMAT, "the file is truncated or not HDF5; run pt-prep again",
                      "cannot open data index '%s'", path);
    pt_status st = PT_OK;
    hid_t g = -1, ds = -1, sp = -1, ft = -1;
    int64_t v, version, *counts = NULL;
    PT_TRY_GOTO(st, pt_h5_attr_read_i64(f, "format_version", &version, what), out);
    if (version != PT_DATA_FORMAT_VERSION) {
        st = PT_ERR(PT_ERR_FORMAT,
                    version == 1 ? HINT_OLD : "re-run pt-prep of this paratrain to re-create the data directory",
                    "%s: data format version %lld, this paratrain reads version %d", path,
                    (long long)version, PT_DATA_FORMAT_VERSION);
        goto out;
    }
    PT_TRY_GOTO(st, pt_h5_attr_read_i64(f, "num_classes", &v, what), out);
    d->num_classes = (int)v;
    PT_TRY_GOTO(st, pt_h5_attr_read_i64(f, "channels", &v, what), out);
    d->channels = (int)v;
    PT_TRY_GOTO(st, pt_h5_attr_read_i64(f, "height", &v, what), out);
    d->height = (int)v;
    PT_TRY_GOTO(st, pt_h5_attr_read_i64(f, "width", &v, what), out);
    d->width = (int)v;
    PT_TRY_GOTO(st, pt_h5_attr_read_str(f, "source", d->source, sizeof d->source, what), out);
    /* optional (older indexes lack it): samples are byte tokens, read as their values */
    d->tokens = false;
    if (H5Aexists(f, "tokens") > 0) {
        PT_TRY_GOTO(st, pt_h5_attr_read_i64(f, "tokens", &v, what), out);
        d->tokens = v != 0;
    }
    d->sample_size = (int64_t)d->channels * d->height * d->width;
    if (d->num_classes <= 0 || d->sample_size <= 0) {
        st = PT_ERR(PT_ERR_FORMAT, HINT_PREP, "%s: bad shape attributes", path);
        goto out;
    }
    if (H5Lexists(f, d->split, H5P_DEFAULT) <= 0) {
        st = PT_ERR(PT_ERR_FORMAT, "splits are train, val and test", "%s has no split '%s'",
                    path, d->split);
        goto out;
    }
    g = H5Gopen2(f, d->split, H5P_DEFAULT);
    ds = H5Dopen2(g, "counts", H5P_DEFAULT);
    sp = ds >= 0 ? H5Dget_space(ds) : -1;
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (n <= 0 || n > 100000) {
        st = PT_ERR(PT_ERR_FORMAT, HINT_PREP, "%s: /%s/counts is missing or empty", path, d->split);
        goto out;
    }
    d->nshards = (int)n;
    counts = malloc(sizeof *counts * (size_t)n);
    *files = calloc((size_t)n, sizeof **files);
    d->shards = calloc((size_t)n, sizeof *d->shards);
    if (!counts || !*files || !d->shards) {
        st = PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate the shard table");
        goto out;
    }
    PT_H5_CHECK_GOTO(st, H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, counts),
                     "the index is damaged; run pt-prep again", out);
    H5Dclose(ds), ds = -1;
    ds = H5Dopen2(g, "files", H5P_DEFAULT);
    ft = H5Tcopy(H5T_C_S1);
    H5Tset_size(ft, 256);
    PT_H5_CHECK_GOTO(st, ds, "the index is damaged; run pt-prep again", out);
    PT_H5_CHECK_GOTO(st, H5Dread(ds, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, *files),
                     "the index is damaged; run pt-prep again", out);
    int64_t first = 0;
    for (int i = 0; i < d->nshards; i++) {
        /* counts come from the file: a negative one, or a sum past INT64_MAX (signed overflow,
         * undefined), would make every later index computation wrong */
        if (counts[i] < 0 || counts[i] > INT64_MAX - first) {
            st = PT_ERR(PT_ERR_FORMAT, "the index is damaged; run pt-prep again",
                        "%s: /%s/counts[%d] = %lld is not a shard size", path, d->split, i,
                        (long long)counts[i]);
            goto out;
        }
        d->shards[i].first = first, d->shards[i].count = counts[i];
        d->shards[i].hid_file = d->shards[i].hid_images = d->shards[i].hid_labels = -1;
        d->shards[i].hid_crc = -1;
        first += counts[i];
    }
    d->count = first;
out:
    free(counts);
    if (ft >= 0) H5Tclose(ft);
    if (sp >= 0) H5Sclose(sp);
    if (ds >= 0) H5Dclose(ds);
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    return st;
}

/* Opens shard i (collective) and checks it against the index. */
static pt_status open_shard(pt_dataset *d, int i, const char *file, MPI_Comm comm)
{
    pt_shard *s = &d->shards[i];
    char path[PT_PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/%s", d->dir, file);
    /* Every rank checks existence itself, then all agree before the collective open. */
    pt_status st = access(path, R_OK) == 0
                       ? PT_OK
                       : PT_ERR(PT_ERR_IO, HINT_PREP, "shard file '%s' is missing", path);
    PT_TRY(pt_agree(comm, st, NULL));

    snprintf(s->name, sizeof s->name, "%s", file);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    PT_H5_CHECK(fapl, "is the HDF5 library intact?");
    if (H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) < 0) {
        H5Pclose(fapl);
        return PT_ERR(PT_ERR_HDF5, "HDF5 must be the parallel build (libhdf5-openmpi)",
                      "H5Pset_fapl_mpio failed for shard '%s'", path);
    }
    s->hid_file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (s->hid_file < 0)
        return PT_ERR(PT_ERR_FORMAT, "the file is truncated or not HDF5; run pt-prep again",
                      "cannot open shard '%s'", path);

    /* A version 1 shard (no checksums) copied into a version 2 directory is refused too. */
    int64_t version = -1;
    if (H5Aexists(s->hid_file, "format_version") > 0)
        PT_TRY(pt_h5_attr_read_i64(s->hid_file, "format_version", &version, path));
    if (version != PT_DATA_FORMAT_VERSION)
        return PT_ERR(PT_ERR_FORMAT, version == 1 ? HINT_OLD : HINT_PREP,
                      "shard '%s': data format version %lld, this paratrain reads version %d", path,
                      (long long)version, PT_DATA_FORMAT_VERSION);

    s->hid_images = H5Dopen2(s->hid_file, "images", H5P_DEFAULT);
    s->hid_labels = H5Dopen2(s->hid_file, "labels", H5P_DEFAULT);
    s->hid_crc = H5Dopen2(s->hid_file, "crc32", H5P_DEFAULT);
    if (s->hid_images < 0 || s->hid_labels < 0 || s->hid_crc < 0)
        return PT_ERR(PT_ERR_FORMAT, HINT_PREP, "shard '%s' lacks /images, /labels or /crc32", path);

    hid_t sp = H5Dget_space(s->hid_images);
    hsize_t dims[8] = {0};
    int nd = H5Sget_simple_extent_ndims(sp);
    if (nd == 4) H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    if (nd != 4 || (int64_t)dims[0] != s->count || (int)dims[1] != d->channels ||
        (int)dims[2] != d->height || (int)dims[3] != d->width)
        return PT_ERR(PT_ERR_FORMAT, "the shard does not match its index; run pt-prep again",
                      "shard '%s': /images has shape %s(%llu, %llu, %llu, %llu), expected "
                      "(%lld, %d, %d, %d) from the index",
                      path, nd == 4 ? "" : "of wrong rank ", (unsigned long long)dims[0],
                      (unsigned long long)dims[1], (unsigned long long)dims[2],
                      (unsigned long long)dims[3], (long long)s->count, d->channels, d->height,
                      d->width);

    sp = H5Dget_space(s->hid_labels);
    nd = H5Sget_simple_extent_ndims(sp);
    hssize_t nl = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    if (nd != 1 || nl != s->count)
        return PT_ERR(PT_ERR_FORMAT, "the shard does not match its index; run pt-prep again",
                      "shard '%s': /labels has %lld entries, expected %lld", path,
                      (long long)nl, (long long)s->count);
    sp = H5Dget_space(s->hid_crc);
    nd = H5Sget_simple_extent_ndims(sp);
    nl = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    hid_t ct = H5Dget_type(s->hid_crc);
    const int crc_ok = H5Tget_class(ct) == H5T_INTEGER && H5Tget_size(ct) == 4;
    H5Tclose(ct);
    if (nd != 1 || nl != s->count || !crc_ok)
        return PT_ERR(PT_ERR_FORMAT, HINT_REPREP,
                      "shard '%s': /crc32 has %lld entries%s, expected %lld uint32", path,
                      (long long)nl, crc_ok ? "" : " of a wrong type", (long long)s->count);

    hid_t t = H5Dget_type(s->hid_images);
    H5T_class_t cls = H5Tget_class(t);
    size_t tsize = H5Tget_size(t);
    H5T_sign_t sign = cls == H5T_INTEGER ? H5Tget_sign(t) : H5T_SGN_ERROR;
    H5Tclose(t);
    pt_dtype dt;
    if (cls == H5T_INTEGER && tsize == 1 && sign == H5T_SGN_NONE) dt = PT_U8;
    else if (cls == H5T_FLOAT && tsize == 4) dt = PT_F32;
    else
        return PT_ERR(PT_ERR_FORMAT, "images must be uint8 or float32",
                      "shard '%s': /images has an unsupported element type", path);
    if (i > 0 && dt != d->image_dtype)
        return PT_ERR(PT_ERR_FORMAT, NULL, "shard '%s': image type differs from shard 0", path);
    d->image_dtype = dt;
    return PT_OK;
}

static pt_status grow(pt_dataset *d, int64_t n)
{
    if (n <= d->stage_cap) return PT_OK;
    size_t esize = pt_dtype_size(d->image_dtype);
    void *s = realloc(d->stage, esize * (size_t)(n * d->sample_size));
    if (!s) return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate a read buffer of %lld samples", (long long)n);
    d->stage = s;
    int32_t *l = realloc(d->stage_labels, sizeof(int32_t) * (size_t)n);
    if (!l) return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate a label buffer");
    d->stage_labels = l;
    uint32_t *c = realloc(d->stage_crc, sizeof(uint32_t) * (size_t)n);
    if (!c) return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate a checksum buffer");
    d->stage_crc = c;
    int64_t *o = realloc(d->order, sizeof(int64_t) * 2 * (size_t)n);
    if (!o) return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate an index buffer");
    d->order = o;
    int64_t *u = realloc(d->uniq, sizeof(int64_t) * (size_t)n);
    if (!u) return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate an index buffer");
    d->uniq = u;
    int *sl = realloc(d->slot, sizeof(int) * (size_t)n);
    if (!sl) return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate an index buffer");
    d->slot = sl;
    d->stage_cap = n;
    return PT_OK;
}

static int cmp_pair(const void *a, const void *b)
{
    const int64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : (x[1] > y[1]) - (x[1] < y[1]);
}

static int shard_of(const pt_dataset *d, int64_t idx)
{
    int lo = 0, hi = d->nshards - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (d->shards[mid].first <= idx) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* The stored checksums of the sorted samples u[0..nu) of shard s into stage_crc[row0..). When
 * the samples lie close together, one contiguous read of /crc32 from the first to the last of
 * them: HDF5 spends far longer on a selection of nu scattered runs than on copying the few KB
 * between them (a random batch of 128 from a 13500-sample shard: benchmarks/RESULTS.md, "Shard
 * checksums"). Otherwise the label selection (lsp, the same shape) serves. */
static pt_status read_crcs(pt_dataset *d, const pt_shard *s, const int64_t *u, int64_t nu,
                           int64_t row0, hid_t mlsp, hid_t lsp)
{
    const char *hint = "the shard file may be truncated or damaged; run pt-prep again";
    const int64_t span = u[nu - 1] - u[0] + 1;
    if (span > 64 * nu + 4096) {
        PT_H5_CHECK(H5Dread(s->hid_crc, H5T_NATIVE_UINT32, mlsp, lsp, H5P_DEFAULT,
                            d->stage_crc + row0), hint);
        return PT_OK;
    }
    if (span > d->crc_span_cap) {
        uint32_t *p = realloc(d->crc_span, sizeof(uint32_t) * (size_t)span);
        if (!p) return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate a checksum buffer of %lld", (long long)span);
        d->crc_span = p, d->crc_span_cap = span;
    }
    pt_status st = PT_OK;
    hsize_t start = (hsize_t)(u[0] - s->first), count = (hsize_t)span;
    hid_t fsp = H5Dget_space(s->hid_crc), msp = H5Screate_simple(1, &count, NULL);
    PT_H5_CHECK_GOTO(st, fsp, hint, out);
    PT_H5_CHECK_GOTO(st, msp, "out of memory?", out);
    PT_H5_CHECK_GOTO(st, H5Sselect_hyperslab(fsp, H5S_SELECT_SET, &start, NULL, &count, NULL),
                     "the index may not match its shards; run pt-prep again", out);
    PT_H5_CHECK_GOTO(st, H5Dread(s->hid_crc, H5T_NATIVE_UINT32, msp, fsp, H5P_DEFAULT, d->crc_span),
                     hint, out);
    for (int64_t k = 0; k < nu; k++) d->stage_crc[row0 + k] = d->crc_span[u[k] - u[0]];
out:
    if (fsp >= 0) H5Sclose(fsp);
    if (msp >= 0) H5Sclose(msp);
    return st;
}

/* Reads unique sorted indices u[0..nu) (all in shard si) into stage rows [row0, row0 + nu). */
static pt_status read_runs(pt_dataset *d, int si, const int64_t *u, int64_t nu, int64_t row0)
{
    const pt_shard *s = &d->shards[si];
    pt_status st = PT_OK;
    hid_t fsp = H5Dget_space(s->hid_images), lsp = H5Dget_space(s->hid_labels);
    hsize_t mdims[4] = {(hsize_t)nu, (hsize_t)d->channels, (hsize_t)d->height, (hsize_t)d->width};
    hid_t msp = H5Screate_simple(4, mdims, NULL), mlsp = H5Screate_simple(1, mdims, NULL);
    PT_H5_CHECK_GOTO(st, fsp, "the shard file may be damaged; run pt-prep again", out);
    PT_H5_CHECK_GOTO(st, lsp, "the shard file may be damaged; run pt-prep again", out);
    PT_H5_CHECK_GOTO(st, msp, "out of memory?", out);
    PT_H5_CHECK_GOTO(st, mlsp, "out of memory?", out);
    PT_H5_CHECK_GOTO(st, H5Sselect_none(fsp), "the shard file may be damaged", out);
    PT_H5_CHECK_GOTO(st, H5Sselect_none(lsp), "the shard file may be damaged", out);
    for (int64_t a = 0; a < nu;) {
        int64_t b = a + 1;
        while (b < nu && u[b] == u[b - 1] + 1) b++;
        hsize_t start[4] = {(hsize_t)(u[a] - s->first), 0, 0, 0};
        hsize_t count[4] = {(hsize_t)(b - a), (hsize_t)d->channels, (hsize_t)d->height,
                            (hsize_t)d->width};
        PT_H5_CHECK_GOTO(st, H5Sselect_hyperslab(fsp, H5S_SELECT_OR, start, NULL, count, NULL),
                         "a sample index outside the shard? the index may not match its shards", out);
        PT_H5_CHECK_GOTO(st, H5Sselect_hyperslab(lsp, H5S_SELECT_OR, start, NULL, count, NULL),
                         "a sample index outside the shard? the index may not match its shards", out);
        a = b;
    }
    hid_t mtype = d->image_dtype == PT_U8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
    char *dst = (char *)d->stage + pt_dtype_size(d->image_dtype) * (size_t)(row0 * d->sample_size);
    PT_H5_CHECK_GOTO(st, H5Dread(s->hid_images, mtype, msp, fsp, H5P_DEFAULT, dst),
                     "the shard file may be truncated or damaged; run pt-prep again", out);
    PT_H5_CHECK_GOTO(st,
                     H5Dread(s->hid_labels, H5T_NATIVE_INT32, mlsp, lsp, H5P_DEFAULT,
                             d->stage_labels + row0),
                     "the shard file may be truncated or damaged; run pt-prep again", out);
    if (d->verify) st = read_crcs(d, s, u, nu, row0, mlsp, lsp);
out:
    if (msp >= 0) H5Sclose(msp);
    if (mlsp >= 0) H5Sclose(mlsp);
    if (fsp >= 0) H5Sclose(fsp);
    if (lsp >= 0) H5Sclose(lsp);
    return st;
}

pt_status pt_dataset_read(pt_dataset *d, const int64_t *idx, int n, float *x, int32_t *y)
{
    if (n <= 0) return PT_OK;
    PT_TRY(grow(d, n));
    /* (index, position) pairs sorted by index; duplicates collapse to one staged row. */
    int64_t *pairs = d->order;
    for (int i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= d->count)
            return PT_ERR(PT_ERR_ARG, NULL, "sample index %lld outside the %s split (%lld samples)",
                          (long long)idx[i], d->split, (long long)d->count);
        pairs[2 * i] = idx[i], pairs[2 * i + 1] = i;
    }
    qsort(pairs, (size_t)n, 2 * sizeof(int64_t), cmp_pair);

    int64_t *uniq = d->uniq; /* sorted distinct indices: one staged row each */
    int *slot = d->slot;      /* slot[position] = staged row of the sample at that position */
    int64_t nu = 0;
    for (int i = 0; i < n; i++) {
        if (i == 0 || pairs[2 * i] != pairs[2 * (i - 1)]) uniq[nu++] = pairs[2 * i];
        slot[pairs[2 * i + 1]] = (int)(nu - 1);
    }
    pt_status st = PT_OK;
    for (int64_t a = 0; a < nu && st == PT_OK;) {
        int si = shard_of(d, uniq[a]);
        int64_t end = d->shards[si].first + d->shards[si].count, b = a;
        while (b < nu && uniq[b] < end) b++;
        st = read_runs(d, si, uniq + a, b - a, a);
        a = b;
    }
    if (st != PT_OK) goto out;

    /* Check what was read, then convert into the caller's order. The checksums come first: a
     * damaged label or pixel is reported as damage, not as a bad value. */
    if (d->verify) {
        const size_t bytes = pt_dtype_size(d->image_dtype) * (size_t)d->sample_size;
        for (int64_t r = 0; r < nu; r++) {
            const uint32_t c = pt_shard_sample_crc((const char *)d->stage + (size_t)r * bytes,
                                                   bytes, d->image_dtype, d->stage_labels[r]);
            if (c != d->stage_crc[r]) {
                const pt_shard *sh = &d->shards[shard_of(d, uniq[r])];
                st = PT_ERR(PT_ERR_DATA, HINT_REPREP,
                            "shard '%s/%s' is damaged: sample %lld of the shard (%s sample %lld) "
                            "fails its checksum (stored 0x%08x, computed 0x%08x)",
                            d->dir, sh->name, (long long)(uniq[r] - sh->first), d->split,
                            (long long)uniq[r], d->stage_crc[r], c);
                goto out;
            }
        }
    }
    for (int64_t r = 0; r < nu; r++) {
        int32_t lab = d->stage_labels[r];
        if (lab < 0 || lab >= d->num_classes) {
            st = PT_ERR(PT_ERR_DATA, "labels must lie in [0, num_classes); re-create the shards",
                        "%s sample %lld has label %d, outside [0, %d)", d->split,
                        (long long)uniq[r], lab, d->num_classes);
            goto out;
        }
    }
    const int64_t S = d->sample_size;
    if (d->image_dtype == PT_F32) {
        const float *src = d->stage;
        for (int64_t r = 0; r < nu; r++)
            for (int64_t k = 0; k < S; k++)
                if (!isfinite(src[r * S + k])) {
                    st = PT_ERR(PT_ERR_DATA, "the input data contain NaN or inf; clean the shards",
                                "%s sample %lld: pixel %lld is %g", d->split, (long long)uniq[r],
                                (long long)k, src[r * S + k]);
                    goto out;
                }
    }
    for (int i = 0; i < n; i++) {
        int r = slot[i];
        y[i] = d->stage_labels[r];
        float *xi = x + (int64_t)i * S;
        if (d->image_dtype == PT_U8) {
            const uint8_t *src = (const uint8_t *)d->stage + (int64_t)r * S;
            const float scale = d->tokens ? 1.0f : 1.0f / 255.0f;
            for (int64_t k = 0; k < S; k++) xi[k] = (float)src[k] * scale;
        } else {
            memcpy(xi, (const float *)d->stage + (int64_t)r * S, sizeof(float) * (size_t)S);
        }
    }
out:
    return st;
}

static pt_status validate_share(pt_dataset *d, MPI_Comm comm)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    enum { CHUNK = 4096 };
    int64_t *idx = malloc(sizeof(int64_t) * CHUNK);
    float *x = malloc(sizeof(float) * (size_t)(CHUNK * d->sample_size));
    int32_t *y = malloc(sizeof(int32_t) * CHUNK);
    pt_status st = idx && x && y ? PT_OK : PT_ERR(PT_ERR_NOMEM, NULL, "no memory to validate data");
    for (int s = 0; s < d->nshards && st == PT_OK; s++) {
        int64_t off, cnt;
        pt_batch_share(d->shards[s].count, rank, size, &off, &cnt);
        for (int64_t a = 0; a < cnt && st == PT_OK; a += CHUNK) {
            int n = (int)(cnt - a < CHUNK ? cnt - a : CHUNK);
            for (int i = 0; i < n; i++) idx[i] = d->shards[s].first + off + a + i;
            st = pt_dataset_read(d, idx, n, x, y);
        }
    }
    free(idx), free(x), free(y);
    return st;
}

pt_status pt_dataset_open(pt_dataset *d, const char *dir, const char *split, MPI_Comm comm,
                          bool validate)
{
    memset(d, 0, sizeof *d);
    pt_h5_quiet();
    /* on unless PT_SHARD_VERIFY=0: the switch exists to measure what verification costs */
    const char *env = getenv("PT_SHARD_VERIFY");
    d->verify = !(env && !strcmp(env, "0"));
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    snprintf(d->split, sizeof d->split, "%s", split);
    char(*files)[256] = NULL;
    pt_status st = read_index(d, &files);
    PT_TRY_GOTO(st, pt_agree(comm, st, NULL), out);
    for (int i = 0; i < d->nshards && st == PT_OK; i++) {
        st = open_shard(d, i, files[i], comm);
        st = pt_agree(comm, st, NULL);
    }
    if (st == PT_OK && validate) st = pt_agree(comm, validate_share(d, comm), NULL);
out:
    free(files);
    if (st != PT_OK) pt_dataset_close(d);
    return st;
}

void pt_dataset_close(pt_dataset *d)
{
    for (int i = 0; d->shards && i < d->nshards; i++) {
        pt_shard *s = &d->shards[i];
        if (s->hid_images > 0) H5Dclose(s->hid_images);
        if (s->hid_labels > 0) H5Dclose(s->hid_labels);
        if (s->hid_crc > 0) H5Dclose(s->hid_crc);
        if (s->hid_file > 0) H5Fclose(s->hid_file);
    }
    free(d->shards);
    free(d->stage);
    free(d->stage_labels);
    free(d->stage_crc);
    free(d->crc_span);
    free(d->order);
    free(d->uniq);
    free(d->slot);
    d->shards = NULL, d->stage = NULL, d->stage_labels = NULL, d->stage_crc = NULL, d->order = NULL;
    d->crc_span = NULL, d->crc_span_cap = 0;
    d->uniq = NULL, d->slot = NULL;
    d->nshards = 0, d->stage_cap = 0;
}
