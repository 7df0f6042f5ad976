/* Checkpoint save and load (docs/CHECKPOINT_FORMAT.md). Every dataset is a global tensor; all
 * ranks write it collectively, each its hyperslab: its slice of the flat buffers (ZeRO-1's
 * shard), at the global positions of its tensor-parallel shard (pt_ckpt_save_dist). Loading
 * reads each rank's part for whatever grid it runs on. Rank 0 publishes the file (rename, then
 * `latest`) and every rank learns the outcome. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <hdf5.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "h5util.h"
#include "paratrain/agree.h"
#include "paratrain/ckpt.h"
#include "paratrain/lowp.h"
#include "paratrain/crc.h"
#include "paratrain/fault.h"
#include "paratrain/log.h"
#include "paratrain/watchdog.h"

static pt_status fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return PT_ERR(PT_ERR_IO, NULL, "cannot open '%s' to sync: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) return PT_ERR(PT_ERR_IO, "check the file system", "fsync '%s' failed: %s", path, strerror(errno));
    return PT_OK;
}

void pt_shard_range(int64_t n, int parts, int part, int64_t *off, int64_t *count)
{
    int64_t per = (n + parts - 1) / (parts > 0 ? parts : 1);
    per = (per + 15) / 16 * 16; /* shards start on 64-byte boundaries */
    int64_t lo = per * part < n ? per * part : n, hi = lo + per < n ? lo + per : n;
    *off = lo, *count = hi - lo;
}

/* CRC-32 of a float dataset written in pieces: every rank's (crc, elements) in rank order,
 * combined (zlib's crc32_combine). */
static pt_status combine_crc(MPI_Comm comm, uint32_t crc, int64_t elems, uint32_t *out)
{
    const int64_t len = elems * (int64_t)sizeof(float);
    int size;
    MPI_Comm_size(comm, &size);
    uint64_t mine[2] = {crc, (uint64_t)len}, *all = malloc(sizeof(uint64_t) * 2 * (size_t)size);
    PT_ALLOC_CHECK(all, sizeof(uint64_t) * 2 * (size_t)size);
    pt_status st = pt_mpi_allgather(mine, 2, MPI_UINT64_T, all, comm, "the checksums of a checkpoint");
    uint32_t c = 0;
    for (int r = 0; st == PT_OK && r < size; r++) c = pt_crc32_combine(c, (uint32_t)all[2 * r], (int64_t)all[2 * r + 1]);
    free(all);
    PT_TRY(st);
    *out = c;
    return PT_OK;
}

/* ------------------------------------------------------------------ the global layout
 * (design.md #14): every dataset holds a whole global tensor; a rank writes and reads the part
 * of it that its local (tensor-parallel) shard holds. */

/* Whether this rank holds only part of p (split over tp). A tensor with split_dim set at tp = 1
 * holds all of it; buffers may leave gshape unset. */
static bool tp_split(const pt_param *p)
{
    return p->split_dim >= 0 && p->split_dim < p->ndim && p->gnumel > p->numel;
}

static int64_t global_numel(const pt_param *p) { return tp_split(p) ? p->gnumel : p->numel; }

static const int64_t *global_shape(const pt_param *p) { return tp_split(p) ? p->gshape : p->shape; }

/* The global index along split_dim of local index i (paratrain/model.h). */
static int64_t global_index(const pt_param *p, int64_t i)
{
    const int d = p->split_dim, sb = p->split_blocks > 0 ? p->split_blocks : 1;
    const int64_t lb = p->shape[d] / sb;
    return (i / lb) * (p->gshape[d] / sb) + p->split_start + i % lb;
}

/* Adds the box of local indices {start[k]} (k < d) x [r0, r1) (dimension d) x everything (k > d)
 * to the selection, at its global position: one hyperslab per block of the split dimension. */
static herr_t add_box(hid_t sp, const pt_param *p, int d, const hsize_t *start, hsize_t r0,
                      hsize_t r1)
{
    hsize_t gs[H5S_MAX_RANK], gc[H5S_MAX_RANK];
    const int s = p->split_dim;
    for (int k = 0; k < p->ndim; k++) {
        gs[k] = k < d ? start[k] : k == d ? r0 : 0;
        gc[k] = k < d ? 1 : k == d ? r1 - r0 : (hsize_t)p->shape[k];
    }
    const hsize_t i0 = gs[s], i1 = gs[s] + gc[s];
    const hsize_t lb = (hsize_t)(p->shape[s] / (p->split_blocks > 0 ? p->split_blocks : 1));
    herr_t rc = 0;
    for (hsize_t i = i0; i < i1;) {
        const hsize_t end = (i / lb + 1) * lb < i1 ? (i / lb + 1) * lb : i1;
        gs[s] = (hsize_t)global_index(p, (int64_t)i), gc[s] = end - i;
        rc |= H5Sselect_hyperslab(sp, H5S_SELECT_OR, gs, NULL, gc, NULL) < 0;
        i = end;
    }
    return rc;
}

/* Local elements [lo, hi) of the sub-array at local prefix start[0..d-1], as boxes (h5util.c's
 * select_range, over the local shape). */
static herr_t local_boxes(hid_t sp, const pt_param *p, int d, hsize_t *start, int64_t lo,
                          int64_t hi)
{
    int64_t inner = 1;
    for (int k = d + 1; k < p->ndim; k++) inner *= p->shape[k];
    int64_t r0 = lo / inner, r1 = hi / inner;
    if (r0 == r1) { /* inside one row of dimension d */
        start[d] = (hsize_t)r0;
        return local_boxes(sp, p, d + 1, start, lo % inner, hi % inner);
    }
    herr_t rc = 0;
    if (lo % inner) { /* the partial first row */
        start[d] = (hsize_t)r0;
        rc |= local_boxes(sp, p, d + 1, start, lo % inner, inner);
        r0++;
    }
    if (r1 > r0) rc |= add_box(sp, p, d, start, (hsize_t)r0, (hsize_t)r1); /* whole rows */
    if (hi % inner) { /* the partial last row */
        start[d] = (hsize_t)r1;
        rc |= local_boxes(sp, p, d + 1, start, 0, hi % inner);
    }
    return rc;
}

/* Selects in sp (the global tensor's dataspace) where p's local elements [lo, hi) (counted from
 * p's start, in local row-major order) lie. The global index is monotone in the local one, so
 * HDF5's row-major walk of the selection meets them in local order: a contiguous memory buffer
 * of hi - lo elements pairs with it. Unsplit: the linear range itself. */
static pt_status select_local(hid_t sp, const pt_param *p, int64_t lo, int64_t hi)
{
    if (!tp_split(p)) return pt_h5_select_linear(sp, (hsize_t)lo, (hsize_t)hi);
    if (H5Sselect_none(sp) < 0)
        return PT_ERR(PT_ERR_HDF5, "is the HDF5 library intact?", "H5Sselect_none failed for '%s'", p->name);
    hsize_t start[H5S_MAX_RANK] = {0};
    if (lo < hi && local_boxes(sp, p, 0, start, lo, hi) != 0)
        return PT_ERR(PT_ERR_HDF5, "is the HDF5 library intact?",
                      "cannot select local elements [%lld, %lld) of '%s' in its global tensor",
                      (long long)lo, (long long)hi, p->name);
    return PT_OK;
}

/* What one rank wrote or read of a global tensor, as runs contiguous in the global row-major
 * order: global element offset, elements, and the CRC-32 of their bytes. */
typedef struct {
    int64_t g, len;
    uint32_t crc;
} crc_run;
typedef struct {
    crc_run *r;
    int n, cap;
} run_list;

static pt_status push_run(run_list *l, int64_t g, int64_t len, uint32_t crc)
{
    if (l->n == l->cap) {
        const int cap = l->cap ? 2 * l->cap : 4;
        crc_run *r = realloc(l->r, sizeof *r * (size_t)cap);
        PT_ALLOC_CHECK(r, sizeof *r * (size_t)cap);
        l->r = r, l->cap = cap;
    }
    l->r[l->n++] = (crc_run){g, len, crc};
    return PT_OK;
}

/* Appends the runs of p's local elements [lo, hi) (from p's start; `data` holds them). A run
 * ends where a block of the split dimension does: a block of lb = shape[d] / split_blocks local
 * indices along d, at one index of the dimensions before d, is contiguous in the global tensor. */
static pt_status add_runs(run_list *l, const pt_param *p, const float *data, int64_t lo, int64_t hi)
{
    if (hi <= lo) return PT_OK;
    if (!tp_split(p)) return push_run(l, lo, hi - lo, pt_crc32(data, sizeof(float) * (size_t)(hi - lo)));
    const int d = p->split_dim;
    int64_t inner = 1;
    for (int k = d + 1; k < p->ndim; k++) inner *= p->shape[k];
    const int64_t mid = p->shape[d], blk = mid / (p->split_blocks > 0 ? p->split_blocks : 1) * inner;
    for (int64_t e = lo; e < hi;) {
        const int64_t end = (e / blk + 1) * blk < hi ? (e / blk + 1) * blk : hi;
        const int64_t o = e / (mid * inner), i = e / inner % mid, r = e % inner;
        const int64_t g = (o * p->gshape[d] + global_index(p, i)) * inner + r;
        PT_TRY(push_run(l, g, end - e, pt_crc32(data + (e - lo), sizeof(float) * (size_t)(end - e))));
        e = end;
    }
    return PT_OK;
}

static int by_offset(const void *a, const void *b)
{
    const int64_t x = ((const crc_run *)a)->g, y = ((const crc_run *)b)->g;
    return (x > y) - (x < y);
}

/* Collective: the CRC-32 of a global tensor of `numel` elements from every rank's runs, which
 * together cover each element once: gathered, put in global order and combined (zlib's
 * crc32_combine). Every rank gets the same result. */
static pt_status combine_runs(MPI_Comm comm, const run_list *l, int64_t numel, const char *name,
                              uint32_t *out)
{
    int size;
    PT_MPI_CHECK(MPI_Comm_size(comm, &size));
    int64_t n = l->n, *counts = malloc(sizeof(int64_t) * (size_t)size);
    PT_ALLOC_CHECK(counts, sizeof(int64_t) * (size_t)size);
    pt_status st = pt_mpi_allgather(&n, 1, MPI_INT64_T, counts, comm, "the checksums of a checkpoint");
    int64_t most = 1, total = 0;
    for (int r = 0; st == PT_OK && r < size; r++) most = counts[r] > most ? counts[r] : most, total += counts[r];
    uint64_t *mine = st == PT_OK ? calloc((size_t)(3 * most), sizeof(uint64_t)) : NULL;
    uint64_t *all = mine ? malloc(sizeof(uint64_t) * (size_t)(3 * most * size)) : NULL;
    crc_run *runs = all ? malloc(sizeof(crc_run) * (size_t)(total + 1)) : NULL;
    if (st == PT_OK && !runs) st = PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the checksums of '%s'", name);
    for (int i = 0; st == PT_OK && i < l->n; i++)
        mine[3 * i] = (uint64_t)l->r[i].g, mine[3 * i + 1] = (uint64_t)l->r[i].len, mine[3 * i + 2] = l->r[i].crc;
    /* a failed allocation on one rank: the others would wait in the allgather; agree first */
    st = pt_agree(comm, st, NULL);
    if (st == PT_OK)
        st = pt_mpi_allgather(mine, (int)(3 * most), MPI_UINT64_T, all, comm, "the checksums of a checkpoint");
    int64_t k = 0;
    for (int r = 0; st == PT_OK && r < size; r++)
        for (int64_t i = 0; i < counts[r]; i++, k++) {
            const uint64_t *v = all + 3 * (most * r + i);
            runs[k] = (crc_run){(int64_t)v[0], (int64_t)v[1], (uint32_t)v[2]};
        }
    if (st == PT_OK) qsort(runs, (size_t)total, sizeof *runs, by_offset);
    uint32_t c = 0;
    int64_t at = 0;
    for (int64_t i = 0; st == PT_OK && i < total; i++) {
        if (runs[i].len == 0) continue;
        if (runs[i].g != at) break; /* a gap or an overlap: reported below */
        c = pt_crc32_combine(c, runs[i].crc, runs[i].len * (int64_t)sizeof(float));
        at += runs[i].len;
    }
    if (st == PT_OK && at != numel)
        st = PT_ERR(PT_ERR_INTERNAL, "the ranks' shards do not cover the tensor: check the model's "
                    "split fields (paratrain/model.h) and the distribution",
                    "the pieces of '%s' cover %lld of its %lld elements without gap or overlap",
                    name, (long long)at, (long long)numel);
    free(counts), free(mine), free(all), free(runs);
    PT_TRY(st);
    *out = c;
    return PT_OK;
}

/* Elements of the model's global parameter tensors (m->numel at tp = 1). */
static int64_t global_params(const pt_model *m)
{
    int64_t n = 0;
    for (int i = 0; i < m->nparams; i++) n += global_numel(&m->params[i]);
    return n;
}

/* Collective: creates dataset `path` with p's global shape; each rank writes the part of it
 * that lies in its slice [lo, hi) of the local flat buffer (`slice` holds those hi - lo
 * elements) when `writer` (a replicated tensor is written by tp rank 0 alone), and all store
 * the CRC-32 of the whole global tensor. */
static pt_status write_tensor(MPI_Comm comm, hid_t f, hid_t dxpl, const char *path,
                              const pt_param *p, const float *slice, int64_t lo, int64_t hi,
                              bool writer)
{
    pt_status st = pt_h5_make_parents(f, path);
    hsize_t dims[PT_MAX_DIMS];
    for (int i = 0; i < p->ndim; i++) dims[i] = (hsize_t)global_shape(p)[i];
    hid_t fsp = H5Screate_simple(p->ndim, dims, NULL);
    hid_t ds = st == PT_OK ? H5Dcreate2(f, path, H5T_IEEE_F32LE, fsp, H5P_DEFAULT, H5P_DEFAULT,
                                         H5P_DEFAULT) : -1;
    if (st == PT_OK && ds < 0)
        st = PT_ERR(PT_ERR_IO, "check free disk space", "cannot create dataset '%s'", path);
    int64_t a = lo > p->offset ? lo : p->offset;
    int64_t b = hi < p->offset + p->numel ? hi : p->offset + p->numel;
    if (b < a || !writer) b = a;
    if (st == PT_OK) st = select_local(fsp, p, a - p->offset, b - p->offset);
    hsize_t mn = (hsize_t)(b > a ? b - a : 1);
    hid_t msp = H5Screate_simple(1, &mn, NULL);
    if (msp < 0 && st == PT_OK)
        st = PT_ERR(PT_ERR_HDF5, "out of memory?", "H5Screate_simple failed for '%s'", path);
    if (b == a && msp >= 0 && H5Sselect_none(msp) < 0 && st == PT_OK)
        st = PT_ERR(PT_ERR_HDF5, "is the HDF5 library intact?",
                    "H5Sselect_none failed for this rank's empty part of '%s'", path);
    /* every rank takes part in the collective write, with an empty selection if need be */
    if (ds >= 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, msp, fsp, dxpl, slice + (a - lo)) < 0 && st == PT_OK)
        st = PT_ERR(PT_ERR_IO, "check free disk space", "cannot write dataset '%s'", path);
    if (msp >= 0) H5Sclose(msp);
    H5Sclose(fsp);
    run_list runs = {0};
    if (st == PT_OK) st = add_runs(&runs, p, slice + (a - lo), a - p->offset, b - p->offset);
    st = pt_agree(comm, st, NULL);
    uint32_t crc = 0;
    if (st == PT_OK) st = combine_runs(comm, &runs, global_numel(p), path, &crc);
    free(runs.r);
    if (st == PT_OK) st = pt_h5_attr_write_i64(ds, "crc32", crc);
    if (ds >= 0) H5Dclose(ds);
    return pt_agree(comm, st, NULL);
}

/* Writes the whole file at `path`, collectively: rank r writes slice r of pt_shard_range of the
 * flat parameters and of every optimizer state (its own shard under ZeRO-1). */
/* Collective: creates /rank_state/<name> (size, n) and writes row `rank` of it from `row`; the
 * crc32 attribute covers the whole dataset (the rows' checksums combined in rank order). */
static pt_status write_rank_state(MPI_Comm comm, hid_t f, hid_t dxpl, const char *name,
                                  const float *row, int64_t n)
{
    int rank, size;
    PT_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    PT_MPI_CHECK(MPI_Comm_size(comm, &size));
    char path[PT_NAME_LEN + 64];
    snprintf(path, sizeof path, "rank_state/%s", name);
    pt_status st = pt_h5_make_parents(f, path);
    hsize_t dims[2] = {(hsize_t)size, (hsize_t)n}, start[2] = {(hsize_t)rank, 0},
            cnt[2] = {1, (hsize_t)n}, mn = (hsize_t)(n ? n : 1);
    hid_t fsp = H5Screate_simple(2, dims, NULL), msp = H5Screate_simple(1, &mn, NULL);
    if ((fsp < 0 || msp < 0) && st == PT_OK)
        st = PT_ERR(PT_ERR_HDF5, "out of memory?", "H5Screate_simple failed for '%s'", path);
    hid_t ds = st == PT_OK ? H5Dcreate2(f, path, H5T_IEEE_F32LE, fsp, H5P_DEFAULT, H5P_DEFAULT,
                                         H5P_DEFAULT) : -1;
    if (st == PT_OK && ds < 0)
        st = PT_ERR(PT_ERR_IO, "check free disk space", "cannot create dataset '%s'", path);
    if (st == PT_OK && n == 0 && (H5Sselect_none(fsp) < 0 || H5Sselect_none(msp) < 0))
        st = PT_ERR(PT_ERR_HDF5, "is the HDF5 library intact?", "H5Sselect_none failed for '%s'", path);
    else if (st == PT_OK && n > 0 && H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, cnt, NULL) < 0)
        st = PT_ERR(PT_ERR_HDF5, "is the HDF5 library intact?", "cannot select row %d of '%s'", rank, path);
    /* every rank that created the dataset takes part in the collective write */
    if (ds >= 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, msp, fsp, dxpl, row) < 0 && st == PT_OK)
        st = PT_ERR(PT_ERR_IO, "check free disk space", "cannot write dataset '%s'", path);
    if (msp >= 0) H5Sclose(msp);
    if (fsp >= 0) H5Sclose(fsp);
    st = pt_agree(comm, st, NULL);
    uint32_t crc = 0;
    if (st == PT_OK) st = combine_crc(comm, pt_crc32(row, sizeof(float) * (size_t)n), n, &crc);
    if (st == PT_OK) st = pt_h5_attr_write_i64(ds, "crc32", crc);
    if (ds >= 0) H5Dclose(ds);
    return pt_agree(comm, st, NULL);
}

/* Rank 0: allocates `bytes` of disk for the new file before anything is written to it, so a
 * full file system (ENOSPC, EDQUOT) fails here, on one rank, cleanly. An I/O error inside
 * HDF5's collective writes or its collective close on one rank only can leave the ranks in
 * different collectives (seen with ENOSPC on a tmpfs: one rank in the metadata flush barrier,
 * the other in the truncate broadcast), so the write must not be where space runs out. */
static pt_status reserve_space(const char *path, int64_t bytes)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0) return PT_ERR(PT_ERR_IO, NULL, "cannot open '%s': %s", path, strerror(errno));
    int rc = posix_fallocate(fd, 0, (off_t)bytes);
    close(fd);
    if (rc == 0 || rc == EOPNOTSUPP || rc == EINVAL) return PT_OK; /* cannot reserve: not an error */
    return PT_ERR(PT_ERR_IO, "free space there or give another --ckpt-dir; --resume auto continues "
                  "from the previous checkpoint",
                  "cannot allocate %.2f MiB for checkpoint '%s': %s; the previous checkpoint is kept",
                  (double)bytes / 1048576.0, path, strerror(rc));
}

/* Whether this rank writes (its hyperslab of) parameter i: a tp shard on its ranks, a replicated
 * tensor on tp rank 0, and under pipeline parallelism only on the stage that owns it. */
static bool writes(const pt_model *m, const pt_ckpt_dist *dist, int i)
{
    return (tp_split(&m->params[i]) || dist->tp_rank == 0) && (!dist->holds || dist->holds[i]);
}

static pt_status write_file(MPI_Comm comm, const char *path, const pt_model *m,
                            const pt_optimizer *opt, const pt_ckpt_meta *meta,
                            const pt_ckpt_rank_states *rs, const pt_ckpt_dist *dist)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    /* the dp replicas of a tp shard split it as ZeRO-1 does; replicated tensors: tp rank 0 */
    int64_t lo, cnt;
    pt_shard_range(m->numel, dist->dp_size, dist->dp_rank, &lo, &cnt);
    const int64_t hi = lo + cnt;
    size_t bytes = sizeof(float) * (size_t)(cnt ? cnt : 1);
    float *host = malloc(bytes);
    /* the buffers (backend memory) are staged on the host too: this rank's slice of them */
    int64_t blo, bcnt;
    pt_shard_range(m->nbuf, dist->dp_size, dist->dp_rank, &blo, &bcnt);
    float *bhost = malloc(sizeof(float) * (size_t)(bcnt ? bcnt : 1));
    pt_status st = host && bhost ? PT_OK
                                 : PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate %zu bytes", bytes);
    if (st == PT_OK && opt && (lo < opt->offset || hi > opt->offset + opt->n))
        st = PT_ERR(PT_ERR_INTERNAL, NULL, "optimizer shard [%lld, %lld) does not cover [%lld, %lld)",
                    (long long)opt->offset, (long long)(opt->offset + opt->n), (long long)lo,
                    (long long)hi);
    if ((st = pt_agree(comm, st, NULL)) != PT_OK) {
        free(host), free(bhost);
        return st;
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), dxpl = H5Pcreate(H5P_DATASET_XFER), f = -1;
    if (fapl < 0 || dxpl < 0)
        st = PT_ERR(PT_ERR_HDF5, "is the HDF5 library intact?", "H5Pcreate failed for '%s'", path);
    else if (H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) < 0)
        st = PT_ERR(PT_ERR_HDF5, "HDF5 must be the parallel build (libhdf5-openmpi)",
                    "H5Pset_fapl_mpio failed for checkpoint '%s'", path);
    else if (H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE) < 0)
        st = PT_ERR(PT_ERR_HDF5, "HDF5 must be the parallel build (libhdf5-openmpi)",
                    "H5Pset_dxpl_mpio(COLLECTIVE) failed for checkpoint '%s'", path);
    /* every rank reaches the collective create, or none does */
    st = pt_agree(comm, st, NULL);
    if (st == PT_OK) {
        f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
        if (f < 0)
            st = PT_ERR(PT_ERR_IO, "check that the checkpoint directory is writable",
                        "cannot create checkpoint '%s'", path);
    }
    if (fapl >= 0) H5Pclose(fapl);
    if (st == PT_OK && rank == 0) st = reserve_space(path, pt_ckpt_expected_bytes(m, opt, rs, size));
    st = pt_agree(comm, st, NULL);
    if (st != PT_OK) {
        free(host), free(bhost);
        if (dxpl >= 0) H5Pclose(dxpl);
        if (f >= 0) H5Fclose(f);
        return st;
    }
    char name[PT_NAME_LEN + 64];
    m->be->to_host(host, m->w + lo, sizeof(float) * (size_t)cnt);
    for (int i = 0; i < m->nparams && st == PT_OK; i++) {
        snprintf(name, sizeof name, "params/%s", m->params[i].name);
        st = write_tensor(comm, f, dxpl, name, &m->params[i], host, lo, hi,
                          writes(m, dist, i));
    }
    /* Buffers (batch-norm running statistics) are equal on every rank (the trainer averages them
     * first); each rank writes its slice of them the same way. */
    if (st == PT_OK && bcnt) m->be->to_host(bhost, m->buf + blo, sizeof(float) * (size_t)bcnt);
    for (int i = 0; i < m->nbuffers && st == PT_OK; i++) {
        snprintf(name, sizeof name, "buffers/%s", m->buffers[i].name);
        st = write_tensor(comm, f, dxpl, name, &m->buffers[i], bhost, blo, blo + bcnt,
                          tp_split(&m->buffers[i]) || dist->tp_rank == 0);
    }
    /* Test hooks (paratrain/fault.h, docs/FAULTS.md), half-way through the file: "ckpt-save"
     * fails the save (an I/O error); "ckpt-crash" kills a rank as a node failure would;
     * "signal-in-save" raises SIGTERM (the preemption handler takes it); "slow-save" sleeps. */
    if (st == PT_OK && pt_fault_at("ckpt-save", meta->step, rank))
        st = PT_ERR(PT_ERR_IO, "this failure was injected by PT_FAULT_INJECT=ckpt-save",
                    "checkpoint write to '%s' failed half-way", path);
    bool crash = false; /* the flush is collective: every rank flushes, then the victim dies */
    for (int r = 0; r < size && st == PT_OK; r++) crash |= pt_fault_at("ckpt-crash", meta->step, r);
    if (crash) {
        H5Fflush(f, H5F_SCOPE_GLOBAL);
        if (pt_fault_at("ckpt-crash", meta->step, rank)) raise(SIGKILL);
    }
    if (st == PT_OK && pt_fault_at("signal-in-save", meta->step, rank)) raise(SIGTERM);
    if (st == PT_OK) pt_fault_delay("slow-save", rank);
    st = pt_agree(comm, st, NULL); /* an injected failure on one rank stops every rank here */
    pt_fault_stop_point("ckpt-save", meta->step); /* PT_FAULT_STOP: a rank stops half-way */
    for (int s = 0; opt && s < opt->nstates && st == PT_OK; s++) {
        m->be->to_host(host, opt->state[s] + (lo - opt->offset), sizeof(float) * (size_t)cnt);
        for (int i = 0; i < m->nparams && st == PT_OK; i++) {
            snprintf(name, sizeof name, "optim/%s/%s", opt->state_names[s], m->params[i].name);
            st = write_tensor(comm, f, dxpl, name, &m->params[i], host, lo, hi,
                              writes(m, dist, i));
        }
    }
    for (int s = 0; rs && s < rs->count && st == PT_OK; s++)
        st = write_rank_state(comm, f, dxpl, rs->name[s], rs->data[s], rs->n);
    free(host), free(bhost);
    H5Pclose(dxpl);
    if (st == PT_OK) { /* attributes: collective, the same values on every rank */
        char grid[64], order[sizeof meta->grid_order];
        const int tp = dist->tp_size, pp = meta->pp_size > 0 ? meta->pp_size : 1;
        /* the ZeRO stage; a sharded optimizer state is at least stage 1 whatever the caller said */
        const int zero = meta->zero > 0 ? meta->zero : opt && opt->n < m->numel ? 1 : 0;
        snprintf(order, sizeof order, "%s", meta->grid_order[0] ? meta->grid_order : "pp,dp,tp");
        snprintf(grid, sizeof grid, "dp=%d tp=%d pp=%d", dist->dp_size, tp, pp);
        pt_status a[] = {
            pt_h5_attr_write_i64(f, "format_version", PT_CKPT_FORMAT_VERSION),
            pt_h5_attr_write_i64(f, "step", meta->step),
            pt_h5_attr_write_i64(f, "epoch", meta->epoch),
            pt_h5_attr_write_i64(f, "step_in_epoch", meta->step_in_epoch),
            pt_h5_attr_write_u64(f, "seed", meta->seed),
            pt_h5_attr_write_str(f, "rng", "philox4x32-10, counter-based: the state is (seed, step)"),
            pt_h5_attr_write_str(f, "model", m->spec),
            pt_h5_attr_write_str(f, "optimizer", opt ? pt_optim_name(&opt->cfg) : "none"),
            pt_h5_attr_write_i64(f, "optimizer_steps", opt ? opt->t : 0),
            pt_h5_attr_write_i64(f, "num_params", global_params(m)),
            pt_h5_attr_write_str(f, "process_grid", grid),
            pt_h5_attr_write_i64(f, "dp_size", dist->dp_size),
            pt_h5_attr_write_i64(f, "tp_size", tp),
            pt_h5_attr_write_i64(f, "pp_size", pp),
            pt_h5_attr_write_i64(f, "zero", zero),
            pt_h5_attr_write_str(f, "grid_order", order),
            pt_h5_attr_write_i64(f, "writers", size),
            pt_h5_attr_write_i64(f, "optimizer_sharded", opt && opt->n < m->numel),
            pt_h5_attr_write_f64(f, "early_stop_best", meta->es_best),
            pt_h5_attr_write_i64(f, "early_stop_best_step", meta->es_best_step),
            pt_h5_attr_write_i64(f, "early_stop_bad_evals", meta->es_bad_evals),
            pt_h5_attr_write_str(f, "config", meta->config),
            /* mixed precision: /params are the fp32 masters whatever the precision, so the
             * file loads in any; the loss scaler's state for a bitwise resume */
            pt_h5_attr_write_str(f, "precision", pt_precision_name(m->precision)),
            pt_h5_attr_write_f64(f, "loss_scale", m->ls.scale),
            pt_h5_attr_write_i64(f, "loss_scale_good_steps", m->ls.good_steps),
            pt_h5_attr_write_i64(f, "loss_scale_skipped", m->ls.skipped),
        };
        for (size_t i = 0; i < sizeof a / sizeof *a && st == PT_OK; i++) st = a[i];
    }
    errno = 0;
    if (H5Fclose(f) < 0 && st == PT_OK)
        st = PT_ERR(PT_ERR_IO, "check free disk space", "cannot close checkpoint '%s'%s%s", path,
                    errno ? ": " : "", errno ? strerror(errno) : "");
    if (st == PT_OK && rank == 0) st = fsync_path(path);
    return pt_agree(comm, st, NULL);
}

/* Writes `text` to dir/name atomically: temporary file, fsync, rename, fsync of the directory. */
static pt_status replace_small_file(const char *dir, const char *name, const char *text)
{
    char tmp[PT_PATH_MAX + 64], dst[PT_PATH_MAX + 64];
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    FILE *fp = fopen(tmp, "w");
    if (!fp) return PT_ERR(PT_ERR_IO, NULL, "cannot write '%s': %s", tmp, strerror(errno));
    int ok = fputs(text, fp) >= 0;
    ok &= fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    ok &= fclose(fp) == 0;
    if (!ok || rename(tmp, dst) != 0) {
        unlink(tmp);
        return PT_ERR(PT_ERR_IO, "check free disk space", "cannot replace '%s'", dst);
    }
    return fsync_path(dir);
}

/* Rank 0 puts the finished temporary file in place, then `latest`. */
static pt_status publish(const char *dir, const char *tmp, const char *final_path,
                         const char *base)
{
    if (rename(tmp, final_path) != 0)
        return PT_ERR(PT_ERR_IO, NULL, "cannot rename '%s': %s", tmp, strerror(errno));
    PT_TRY(fsync_path(dir));
    char line[96];
    snprintf(line, sizeof line, "%s\n", base);
    return replace_small_file(dir, "latest", line);
}

int64_t pt_ckpt_expected_bytes(const pt_model *m, const pt_optimizer *opt,
                               const pt_ckpt_rank_states *rs, int writers)
{
    int64_t params = global_params(m), elems = params, datasets = m->nparams + m->nbuffers;
    for (int i = 0; i < m->nbuffers; i++) elems += global_numel(&m->buffers[i]);
    if (opt) elems += (int64_t)opt->nstates * params, datasets += (int64_t)opt->nstates * m->nparams;
    if (rs) elems += (int64_t)rs->count * rs->n * writers, datasets += rs->count;
    /* HDF5's metadata, measured: ~1.7 KiB per dataset and its group, the superblock and the
     * attributes (config up to 8 KiB); rounded up to 4 KiB per dataset + 64 KiB */
    return 4 * elems + 4096 * datasets + 65536;
}

/* Rank 0, before a save: is there room in `dir` for `need` bytes? The temporary file is
 * written next to the previous checkpoint, which is kept until the new one is complete. */
static pt_status check_space(const char *dir, int64_t need, int64_t step)
{
    struct statvfs sv;
    if (pt_fault_at("skip-space-check", -1, 0)) return PT_OK;
    if (statvfs(dir, &sv) != 0)
        return PT_ERR(PT_ERR_IO, "check the checkpoint directory", "statvfs('%s') failed: %s", dir,
                      strerror(errno));
    int64_t avail = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
    const bool injected = pt_fault_at("no-space", step, 0);
    if (injected) avail = 0;
    if (avail >= need) return PT_OK;
    return PT_ERR(PT_ERR_IO,
                  injected ? "this failure was injected by PT_FAULT_INJECT=no-space"
                           : "free space there or give another --ckpt-dir; --resume auto "
                             "continues from the previous checkpoint",
                  "not enough space for checkpoint step %lld in '%s': %s (about %.2f MiB "
                  "needed, %.2f MiB free); the previous checkpoint is kept",
                  (long long)step, dir, strerror(ENOSPC), (double)need / 1048576.0,
                  (double)avail / 1048576.0);
}

pt_status pt_ckpt_save(MPI_Comm comm, const char *dir, const pt_model *m, const pt_optimizer *opt,
                       const pt_ckpt_meta *meta, char *written_path)
{
    return pt_ckpt_save_ex(comm, dir, m, opt, meta, NULL, written_path);
}

pt_status pt_ckpt_save_ex(MPI_Comm comm, const char *dir, const pt_model *m,
                          const pt_optimizer *opt, const pt_ckpt_meta *meta,
                          const pt_ckpt_rank_states *rs, char *written_path)
{
    return pt_ckpt_save_dist(comm, dir, m, opt, meta, rs, NULL, written_path);
}

/* The distribution of a run without tensor parallelism: every rank of comm a dp rank. */
static pt_status dist_of(MPI_Comm comm, const pt_ckpt_dist *given, pt_ckpt_dist *d)
{
    int rank = 0, size = 1;
    if (comm != MPI_COMM_NULL) {
        PT_MPI_CHECK(MPI_Comm_rank(comm, &rank));
        PT_MPI_CHECK(MPI_Comm_size(comm, &size));
    }
    if (!given) {
        *d = (pt_ckpt_dist){.dp_rank = rank, .dp_size = size, .tp_rank = 0, .tp_size = 1};
        return PT_OK;
    }
    *d = *given;
    const int pp = d->pp_size > 0 ? d->pp_size : 1;
    if (d->dp_size < 1 || d->tp_size < 1 || d->dp_rank < 0 || d->dp_rank >= d->dp_size ||
        d->tp_rank < 0 || d->tp_rank >= d->tp_size || d->dp_size * d->tp_size * pp != size)
        return PT_ERR(PT_ERR_ARG, "the grid's dp x tp x pp must be the communicator's size",
                      "bad checkpoint distribution dp %d/%d tp %d/%d pp %d over %d ranks",
                      d->dp_rank, d->dp_size, d->tp_rank, d->tp_size, pp, size);
    return PT_OK;
}

pt_status pt_ckpt_save_dist(MPI_Comm comm, const char *dir, const pt_model *m,
                            const pt_optimizer *opt, const pt_ckpt_meta *meta,
                            const pt_ckpt_rank_states *rs, const pt_ckpt_dist *dist,
                            char *written_path)
{
    pt_h5_quiet();
    int rank;
    PT_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    pt_ckpt_dist d;
    PT_TRY(pt_agree(comm, dist_of(comm, dist, &d), NULL));
    char base[64], tmp[PT_PATH_MAX + 96], path[PT_PATH_MAX + 96];
    snprintf(base, sizeof base, "step_%08lld.h5", (long long)meta->step);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, base);
    snprintf(path, sizeof path, "%s/%s", dir, base);
    if (strlen(path) >= PT_PATH_MAX)
        return PT_ERR(PT_ERR_ARG, "use a shorter --ckpt-dir", "checkpoint path '%s' is too long", path);
    PT_TRY(pt_agree(comm, rank == 0 ? pt_mkdir_p(dir) : PT_OK, NULL));
    int size;
    PT_MPI_CHECK(MPI_Comm_size(comm, &size));
    const int64_t need = pt_ckpt_expected_bytes(m, opt, rs, size);
    PT_TRY(pt_agree(comm, rank == 0 ? check_space(dir, need, meta->step) : PT_OK, NULL));
    pt_status st = write_file(comm, tmp, m, opt, meta, rs, &d);
    if (rank == 0) {
        if (st == PT_OK) st = publish(dir, tmp, path, base);
        if (st != PT_OK) unlink(tmp);
    }
    PT_TRY(pt_agree(comm, st, NULL));
    if (written_path) snprintf(written_path, PT_PATH_MAX, "%s", path);
    return PT_OK;
}

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

pt_status pt_ckpt_list(const char *dir, int64_t **steps, int *n)
{
    *steps = NULL, *n = 0;
    DIR *d = opendir(dir);
    if (!d) return PT_OK;
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long step;
        char tail[8];
        /* temporaries are ".step_...h5.tmp": the leading dot keeps them out */
        if (sscanf(e->d_name, "step_%lld.h5%7s", &step, tail) != 1) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *s = realloc(*steps, sizeof *s * (size_t)cap);
            if (!s) {
                closedir(d);
                free(*steps), *steps = NULL, *n = 0;
                return PT_ERR(PT_ERR_NOMEM, NULL, "cannot list checkpoints");
            }
            *steps = s;
        }
        (*steps)[(*n)++] = step;
    }
    closedir(d);
    if (*n) qsort(*steps, (size_t)*n, sizeof **steps, cmp_desc);
    return PT_OK;
}

pt_status pt_ckpt_resolve(const char *arg, char *path, size_t len)
{
    struct stat sb;
    char latest[PT_PATH_MAX + 16];
    const char *dir = NULL;
    char dirbuf[PT_PATH_MAX];
    size_t al = strlen(arg);
    if (stat(arg, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        dir = arg;
    } else if (al >= 6 && !strcmp(arg + al - 6, "latest")) {
        snprintf(dirbuf, sizeof dirbuf, "%.*s", (int)(al > 7 ? al - 7 : 1), al > 7 ? arg : ".");
        dir = dirbuf;
    }
    if (!dir) {
        if (stat(arg, &sb) != 0)
            return PT_ERR(PT_ERR_IO, "give a checkpoint file or a checkpoint directory",
                          "checkpoint '%s' not found", arg);
        snprintf(path, len, "%s", arg);
        return PT_OK;
    }
    snprintf(latest, sizeof latest, "%s/latest", dir);
    FILE *fp = fopen(latest, "r");
    if (!fp)
        return PT_ERR(PT_ERR_IO, "no checkpoint has been written there yet",
                      "cannot read '%s'", latest);
    char name[256] = "";
    if (!fgets(name, sizeof name, fp)) name[0] = '\0';
    fclose(fp);
    name[strcspn(name, "\r\n")] = '\0';
    if (!name[0] || strchr(name, '/'))
        return PT_ERR(PT_ERR_FORMAT, NULL, "'%s' does not name a checkpoint file", latest);
    snprintf(path, len, "%s/%s", dir, name);
    return PT_OK;
}

static pt_status open_ckpt(const char *path, hid_t *f)
{
    pt_h5_quiet();
    if (access(path, R_OK) != 0)
        return PT_ERR(PT_ERR_IO, NULL, "checkpoint '%s' not found", path);
    *f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*f < 0)
        return PT_ERR(PT_ERR_FORMAT, "the file is truncated or not a paratrain checkpoint",
                      "cannot open checkpoint '%s'", path);
    int64_t v = 0;
    pt_status st = pt_h5_attr_read_i64(*f, "format_version", &v, path);
    if (st == PT_OK && v != PT_CKPT_FORMAT_VERSION)
        st = PT_ERR(PT_ERR_FORMAT, NULL, "checkpoint '%s' has format version %lld, expected %d",
                    path, (long long)v, PT_CKPT_FORMAT_VERSION);
    if (st != PT_OK) H5Fclose(*f);
    return st;
}

static pt_status read_meta(hid_t f, const char *path, pt_ckpt_meta *meta, char *spec,
                           size_t spec_len, char *optname, size_t opt_len)
{
    int64_t v;
    memset(meta, 0, sizeof *meta);
    PT_TRY(pt_h5_attr_read_i64(f, "step", &meta->step, path));
    PT_TRY(pt_h5_attr_read_i64(f, "epoch", &meta->epoch, path));
    PT_TRY(pt_h5_attr_read_i64(f, "step_in_epoch", &meta->step_in_epoch, path));
    PT_TRY(pt_h5_attr_read_u64(f, "seed", &meta->seed, path));
    PT_TRY(pt_h5_attr_read_f64(f, "early_stop_best", &meta->es_best, path));
    PT_TRY(pt_h5_attr_read_i64(f, "early_stop_best_step", &meta->es_best_step, path));
    PT_TRY(pt_h5_attr_read_i64(f, "early_stop_bad_evals", &v, path));
    meta->es_bad_evals = (int)v;
    PT_TRY(pt_h5_attr_read_str(f, "config", meta->config, sizeof meta->config, path));
    char grid[64];
    PT_TRY(pt_h5_attr_read_str(f, "process_grid", grid, sizeof grid, path));
    if (sscanf(grid, "dp=%d", &meta->dp_size) != 1) meta->dp_size = 0;
    /* the grid (format_version 1 files before tensor parallelism have only process_grid and
     * optimizer_sharded: tp = pp = 1, ZeRO 1 when sharded) */
    meta->tp_size = meta->pp_size = 1;
    snprintf(meta->grid_order, sizeof meta->grid_order, "pp,dp,tp");
    if (H5Aexists(f, "optimizer_sharded") > 0) {
        PT_TRY(pt_h5_attr_read_i64(f, "optimizer_sharded", &v, path));
        meta->zero = v ? 1 : 0;
    }
    if (H5Aexists(f, "tp_size") > 0) {
        PT_TRY(pt_h5_attr_read_i64(f, "dp_size", &v, path));
        meta->dp_size = (int)v;
        PT_TRY(pt_h5_attr_read_i64(f, "tp_size", &v, path));
        meta->tp_size = (int)v;
        PT_TRY(pt_h5_attr_read_i64(f, "pp_size", &v, path));
        meta->pp_size = (int)v;
        PT_TRY(pt_h5_attr_read_i64(f, "zero", &v, path));
        meta->zero = (int)v;
        PT_TRY(pt_h5_attr_read_str(f, "grid_order", meta->grid_order, sizeof meta->grid_order, path));
    }
    if (meta->tp_size < 1 || meta->pp_size < 1 || meta->dp_size < 0 || meta->zero < 0)
        return PT_ERR(PT_ERR_FORMAT, "the checkpoint file is damaged",
                      "checkpoint '%s' has a bad process grid: dp=%d tp=%d pp=%d zero=%d", path,
                      meta->dp_size, meta->tp_size, meta->pp_size, meta->zero);
    if (spec) PT_TRY(pt_h5_attr_read_str(f, "model", spec, spec_len, path));
    if (optname) PT_TRY(pt_h5_attr_read_str(f, "optimizer", optname, opt_len, path));
    return PT_OK;
}

pt_status pt_ckpt_read_meta(const char *path, pt_ckpt_meta *meta, char *spec, size_t spec_len,
                            char *optname, size_t opt_len)
{
    hid_t f;
    PT_TRY(open_ckpt(path, &f));
    pt_status st = read_meta(f, path, meta, spec, spec_len, optname, opt_len);
    H5Fclose(f);
    return st;
}

/* Reads the part of dataset `name` (shape-checked against p's global shape) that this rank's
 * local elements in the flat slice [lo, hi) hold into dst (which holds flat elements
 * lo..hi-1), appending their runs (add_runs) to *runs; *stored is the dataset's crc32. */
static pt_status read_tensor(hid_t f, const char *file, const char *name, const pt_param *p,
                             float *dst, int64_t lo, int64_t hi, run_list *runs, uint32_t *stored)
{
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0)
        return PT_ERR(PT_ERR_MISMATCH, "the checkpoint belongs to another model",
                      "checkpoint '%s' has no dataset '%s'", file, name);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) return PT_ERR(PT_ERR_FORMAT, NULL, "cannot open '%s' in '%s'", name, file);
    pt_status st = PT_OK;
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[8];
    int nd = H5Sget_simple_extent_ndims(sp);
    int ok = nd == p->ndim;
    if (ok) H5Sget_simple_extent_dims(sp, dims, NULL);
    for (int i = 0; ok && i < nd; i++) ok = (int64_t)dims[i] == global_shape(p)[i];
    int64_t a = lo > p->offset ? lo : p->offset;
    int64_t b = hi < p->offset + p->numel ? hi : p->offset + p->numel;
    if (b < a) b = a;
    int64_t crc = -1;
    if (!ok) {
        char want[64];
        st = PT_ERR(PT_ERR_MISMATCH, "the checkpoint belongs to another model",
                    "'%s' in '%s' does not have the model's shape %s", name, file,
                    pt_shape_str(p->ndim, global_shape(p), want, sizeof want));
    } else if ((st = pt_h5_attr_read_i64(ds, "crc32", &crc, file)) == PT_OK && b > a) {
        hsize_t mn = (hsize_t)(b - a);
        hid_t msp = H5Screate_simple(1, &mn, NULL);
        st = select_local(sp, p, a - p->offset, b - p->offset);
        if (st == PT_OK && H5Dread(ds, H5T_NATIVE_FLOAT, msp, sp, H5P_DEFAULT, dst + (a - lo)) < 0)
            st = PT_ERR(PT_ERR_FORMAT, "the checkpoint file is damaged",
                        "cannot read '%s' from '%s'", name, file);
        H5Sclose(msp);
    }
    H5Sclose(sp);
    H5Dclose(ds);
    if (st == PT_OK) st = add_runs(runs, p, dst + (a - lo), a - p->offset, b - p->offset);
    *stored = (uint32_t)crc;
    return st;
}

static pt_status checksum_error(const char *name, const char *file)
{
    return PT_ERR(PT_ERR_FORMAT, "the checkpoint file is damaged; use an earlier one",
                  "checksum mismatch for '%s' in '%s'", name, file);
}

/* A dataset's checksum that one rank cannot check alone (it read part of the tensor): checked
 * once every rank has read, from all ranks' runs. */
typedef struct {
    char name[PT_NAME_LEN + 64];
    uint32_t stored;
    int64_t numel;
    run_list runs;
} pending_check;

/* Reads dataset `name` for p (flat slice [lo, hi) of dst, see read_tensor). `whole`: this rank
 * read all of the global tensor and checks it here; otherwise the check goes to *pc, with this
 * rank's runs when `contributes` (the ranks that contribute cover the tensor once). */
static pt_status read_checked(hid_t f, const char *file, const char *name, const pt_param *p,
                              float *dst, int64_t lo, int64_t hi, bool whole, bool contributes,
                              pending_check *pc, int *npc)
{
    run_list runs = {0};
    uint32_t stored = 0;
    pt_status st = read_tensor(f, file, name, p, dst, lo, hi, &runs, &stored);
    if (st == PT_OK && whole) {
        uint32_t c = 0;
        for (int i = 0; i < runs.n; i++) c = pt_crc32_combine(c, runs.r[i].crc, runs.r[i].len * (int64_t)sizeof(float));
        if (c != stored) st = checksum_error(name, file);
    }
    if (st == PT_OK && !whole) {
        pending_check *q = &pc[(*npc)++];
        snprintf(q->name, sizeof q->name, "%s", name);
        q->stored = stored, q->numel = global_numel(p);
        q->runs = contributes ? runs : (run_list){0};
        if (contributes) return PT_OK; /* the runs now belong to q */
    }
    free(runs.r);
    return st;
}

/* Whether this rank's pipeline stage holds tensor i (every tensor without pipeline stages): the
 * checksum of a tensor read in pieces combines the pieces of one stage, the one that wrote it
 * (each stage reads every tensor, so without this the pieces of all stages would overlap). */
static bool held(const pt_ckpt_dist *d, int i) { return !d->holds || d->holds[i]; }

pt_status pt_ckpt_load(MPI_Comm comm, const char *path, pt_model *m, pt_optimizer *opt,
                       pt_ckpt_meta *meta)
{
    return pt_ckpt_load_dist(comm, path, m, opt, meta, NULL);
}

pt_status pt_ckpt_load_dist(MPI_Comm comm, const char *path, pt_model *m, pt_optimizer *opt,
                            pt_ckpt_meta *meta, const pt_ckpt_dist *dist)
{
    hid_t f;
    const bool sharded = opt && opt->n < m->numel;
    bool split = false; /* some tensor is split over tp: its checksum needs the other shards */
    for (int i = 0; i < m->nparams; i++) split |= tp_split(&m->params[i]);
    for (int i = 0; i < m->nbuffers; i++) split |= tp_split(&m->buffers[i]);
    const bool collective = sharded || split;
    pt_ckpt_dist d;
    pt_status st = dist_of(comm, dist, &d);
    if (st == PT_OK && collective && comm == MPI_COMM_NULL)
        st = PT_ERR(PT_ERR_ARG, NULL, "loading a sharded model from '%s' needs a communicator", path);
    if (st == PT_OK) st = open_ckpt(path, &f);
    if (collective && comm != MPI_COMM_NULL) PT_TRY(pt_agree(comm, st, NULL));
    else if (st != PT_OK) return st;
    char spec[256], optname[32];
    st = read_meta(f, path, meta, spec, sizeof spec, optname, sizeof optname);
    if (st == PT_OK && !pt_model_spec_same(spec, m->spec)) /* the architecture, not the text */
        st = PT_ERR(PT_ERR_MISMATCH, "pass the --model the checkpoint was trained with",
                    "checkpoint '%s' holds model '%s', this run builds '%s'", path, spec, m->spec);
    if (st == PT_OK && opt && strcmp(optname, pt_optim_name(&opt->cfg)) != 0)
        st = PT_ERR(PT_ERR_MISMATCH, "resume with the same --optimizer",
                    "checkpoint '%s' was trained with optimizer '%s', this run uses '%s'", path,
                    optname, pt_optim_name(&opt->cfg));
    size_t bytes = sizeof(float) * (size_t)m->numel;
    float *host = st == PT_OK ? malloc(bytes) : NULL;
    if (st == PT_OK && !host) st = PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate %zu bytes", bytes);
    const int ns = opt ? opt->nstates : 0, np = m->nparams;
    pending_check *pc = calloc((size_t)((ns + 1) * np + m->nbuffers + 1), sizeof *pc);
    int npc = 0;
    if (st == PT_OK && !pc) st = PT_ERR(PT_ERR_NOMEM, NULL, "no memory for checksums");
    char name[PT_NAME_LEN + 64];
    /* parameters: every rank reads its local tensors whole (a tp shard, or all of a replicated
     * one); a shard's checksum is combined from the shards of dp rank 0's tp group */
    for (int i = 0; st == PT_OK && i < m->nparams; i++) {
        const pt_param *p = &m->params[i];
        snprintf(name, sizeof name, "params/%s", p->name);
        st = read_checked(f, path, name, p, host, 0, m->numel, !tp_split(p),
                          d.dp_rank == 0 && held(&d, i), pc, &npc);
    }
    if (st == PT_OK) m->be->to_device(m->w, host, bytes);
    /* buffers (backend memory): read on the host, then moved */
    float *bhost = st == PT_OK && m->nbuf ? malloc(sizeof(float) * (size_t)m->nbuf) : NULL;
    if (st == PT_OK && m->nbuf && !bhost)
        st = PT_ERR(PT_ERR_NOMEM, NULL, "no memory to stage the batch-norm statistics");
    for (int i = 0; st == PT_OK && i < m->nbuffers; i++) {
        const pt_param *p = &m->buffers[i];
        snprintf(name, sizeof name, "buffers/%s", p->name);
        st = read_checked(f, path, name, p, bhost, 0, m->nbuf, !tp_split(p), d.dp_rank == 0, pc, &npc);
    }
    if (st == PT_OK && m->nbuf) m->be->to_device(m->buf, bhost, sizeof(float) * (size_t)m->nbuf);
    free(bhost);
    /* optimizer state: this rank's slice [offset, offset + n) of its local flat buffer, read from
     * the global tensors' matching positions: the checkpoint reshards to any grid. The ranks
     * that contribute a partial tensor's runs cover it once: under ZeRO-1 every dp rank (its
     * slice), else dp rank 0; of a replicated tensor, tp rank 0 alone; of the stages, the one
     * that holds it. */
    for (int s = 0; st == PT_OK && s < ns; s++) {
        for (int i = 0; st == PT_OK && i < np; i++) {
            const pt_param *p = &m->params[i];
            snprintf(name, sizeof name, "optim/%s/%s", opt->state_names[s], p->name);
            st = read_checked(f, path, name, p, host, opt->offset, opt->offset + opt->n,
                              !sharded && !tp_split(p),
                              (sharded || d.dp_rank == 0) && (tp_split(p) || d.tp_rank == 0) &&
                                  held(&d, i),
                              pc, &npc);
        }
        if (st == PT_OK) m->be->to_device(opt->state[s], host, sizeof(float) * (size_t)opt->n);
    }
    if (st == PT_OK && opt) {
        int64_t t;
        st = pt_h5_attr_read_i64(f, "optimizer_steps", &t, path);
        opt->t = t;
    }
    /* a dynamic loss scale continues where the file left it (files from before mixed precision,
     * or from a run without a scaler, keep the fresh scaler); a fixed or no scale is the run's */
    if (st == PT_OK && m->ls.mode == PT_LOSS_SCALE_DYNAMIC && H5Aexists(f, "loss_scale_good_steps") > 0) {
        char prec[16] = "";
        st = pt_h5_attr_read_str(f, "precision", prec, sizeof prec, path);
        if (st == PT_OK && !strcmp(prec, "fp16")) {
            double v;
            int64_t good, skipped;
            st = pt_h5_attr_read_f64(f, "loss_scale", &v, path);
            if (st == PT_OK) st = pt_h5_attr_read_i64(f, "loss_scale_good_steps", &good, path);
            if (st == PT_OK) st = pt_h5_attr_read_i64(f, "loss_scale_skipped", &skipped, path);
            if (st == PT_OK) m->ls.scale = v, m->ls.good_steps = good, m->ls.skipped = skipped;
        }
    }
    free(host);
    H5Fclose(f);
    if (collective) { /* every rank has the same list of pending checks, or has failed */
        st = pt_agree(comm, st, NULL);
        for (int k = 0; st == PT_OK && k < npc; k++) {
            uint32_t whole;
            st = combine_runs(comm, &pc[k].runs, pc[k].numel, pc[k].name, &whole);
            if (st == PT_OK && whole != pc[k].stored) st = checksum_error(pc[k].name, path);
        }
    }
    for (int k = 0; pc && k < npc; k++) free(pc[k].runs.r);
    free(pc);
    return st;
}

typedef struct {
    const char *path;
    pt_status st;
} verify_ctx;

static herr_t verify_one(hid_t obj, const char *name, const pt_oinfo *info, void *op)
{
    verify_ctx *v = op;
    if (info->type != H5O_TYPE_DATASET || v->st != PT_OK) return 0;
    hid_t ds = H5Dopen2(obj, name, H5P_DEFAULT);
    hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    float *buf = n >= 0 ? malloc(sizeof(float) * (size_t)(n + 1)) : NULL;
    int64_t crc = -1;
    if (!buf || H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        v->st = PT_ERR(PT_ERR_FORMAT, "the checkpoint file is damaged; use an earlier one",
                       "cannot read '%s' in '%s'", name, v->path);
    else if ((v->st = pt_h5_attr_read_i64(ds, "crc32", &crc, v->path)) == PT_OK &&
             (uint32_t)crc != pt_crc32(buf, sizeof(float) * (size_t)n))
        v->st = checksum_error(name, v->path);
    free(buf);
    if (sp >= 0) H5Sclose(sp);
    if (ds >= 0) H5Dclose(ds);
    return 0;
}

pt_status pt_ckpt_verify(const char *path, pt_ckpt_meta *meta)
{
    hid_t f;
    PT_TRY(open_ckpt(path, &f));
    verify_ctx v = {path, read_meta(f, path, meta, NULL, 0, NULL, 0)};
    if (v.st == PT_OK && PT_OVISIT(f, verify_one, &v) < 0 && v.st == PT_OK)
        v.st = PT_ERR(PT_ERR_FORMAT, "the checkpoint file is damaged", "cannot walk '%s'", path);
    H5Fclose(f);
    return v.st;
}

pt_status pt_ckpt_load_rank_states(MPI_Comm comm, const char *path, pt_ckpt_rank_states *rs,
                                   int *found)
{
    *found = 0;
    int rank, size;
    PT_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    PT_MPI_CHECK(MPI_Comm_size(comm, &size));
    if (!rs || rs->count == 0) return PT_OK;
    hid_t f = -1;
    pt_status st = open_ckpt(path, &f);
    PT_TRY(pt_agree(comm, st, NULL));
    const size_t n = (size_t)rs->n;
    float *rows = malloc(sizeof(float) * (n * (size_t)rs->count + 1));
    if (!rows) st = PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the rank states");
    uint32_t piece[PT_CKPT_MAX_RANK_STATES] = {0}, stored[PT_CKPT_MAX_RANK_STATES] = {0};
    /* every rank sees the same file, so `have` is the same on every rank */
    int have = st == PT_OK && H5Lexists(f, "rank_state", H5P_DEFAULT) > 0;
    for (int s = 0; st == PT_OK && have && s < rs->count; s++) {
        char name[PT_NAME_LEN + 64];
        snprintf(name, sizeof name, "rank_state/%s", rs->name[s]);
        if (H5Lexists(f, name, H5P_DEFAULT) <= 0) {
            have = 0;
            break;
        }
        hid_t ds = H5Dopen2(f, name, H5P_DEFAULT), sp = ds >= 0 ? H5Dget_space(ds) : -1;
        hsize_t dims[2] = {0, 0}, start[2] = {(hsize_t)rank, 0}, cnt[2] = {1, (hsize_t)n},
                mn = n ? n : 1;
        hid_t msp = H5Screate_simple(1, &mn, NULL);
        int64_t crc = -1;
        if (ds < 0 || sp < 0) {
            st = PT_ERR(PT_ERR_FORMAT, "the checkpoint file is damaged", "cannot open '%s' in '%s'",
                        name, path);
        } else if (H5Sget_simple_extent_ndims(sp) != 2 || H5Sget_simple_extent_dims(sp, dims, NULL) != 2 ||
                   dims[0] != (hsize_t)size || dims[1] != (hsize_t)n) {
            have = 0; /* written by another number of ranks (or for another model) */
        } else if ((st = pt_h5_attr_read_i64(ds, "crc32", &crc, path)) == PT_OK && n > 0 &&
                   (H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, cnt, NULL) < 0 ||
                    H5Dread(ds, H5T_NATIVE_FLOAT, msp, sp, H5P_DEFAULT, rows + (size_t)s * n) < 0)) {
            st = PT_ERR(PT_ERR_FORMAT, "the checkpoint file is damaged",
                        "cannot read row %d of '%s' from '%s'", rank, name, path);
        }
        piece[s] = st == PT_OK && have ? pt_crc32(rows + (size_t)s * n, sizeof(float) * n) : 0;
        stored[s] = (uint32_t)crc;
        H5Sclose(msp);
        if (sp >= 0) H5Sclose(sp);
        if (ds >= 0) H5Dclose(ds);
    }
    if (f >= 0) H5Fclose(f);
    st = pt_agree(comm, st, NULL);
    for (int s = 0; have && st == PT_OK && s < rs->count; s++) {
        uint32_t whole;
        st = combine_crc(comm, piece[s], rs->n, &whole);
        if (st == PT_OK && whole != stored[s]) {
            char name[PT_NAME_LEN + 64];
            snprintf(name, sizeof name, "rank_state/%s", rs->name[s]);
            st = checksum_error(name, path);
        }
        st = pt_agree(comm, st, NULL);
    }
    if (have && st == PT_OK) { /* only a fully checked file replaces the caller's state */
        for (int s = 0; s < rs->count; s++) memcpy(rs->data[s], rows + (size_t)s * n, sizeof(float) * n);
        *found = 1;
    }
    free(rows);
    return st;
}
