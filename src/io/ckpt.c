/* Checkpoint save and load. Parameters are replicated under pure data parallelism, so rank 0
 * writes the file and broadcasts the outcome; sharded writes arrive with ZeRO ([data-parallel]). */
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

/* Collective: creates dataset `path` with p's real shape; each rank writes the part of it that
 * lies in its slice [lo, hi) of the flat buffer (`slice` holds those hi - lo elements), and all
 * store the CRC-32 of the whole dataset. */
static pt_status write_tensor(MPI_Comm comm, hid_t f, hid_t dxpl, const char *path,
                              const pt_param *p, const float *slice, int64_t lo, int64_t hi)
{
    pt_status st = pt_h5_make_parents(f, path);
    hsize_t dims[PT_MAX_DIMS];
    for (int i = 0; i < p->ndim; i++) dims[i] = (hsize_t)p->shape[i];
    hid_t fsp = H5Screate_simple(p->ndim, dims, NULL);
    hid_t ds = st == PT_OK ? H5Dcreate2(f, path, H5T_IEEE_F32LE, fsp, H5P_DEFAULT, H5P_DEFAULT,
                                         H5P_DEFAULT) : -1;
    if (st == PT_OK && ds < 0)
        st = PT_ERR(PT_ERR_IO, "check free disk space", "cannot create dataset '%s'", path);
    int64_t a = lo > p->offset ? lo : p->offset;
    int64_t b = hi < p->offset + p->numel ? hi : p->offset + p->numel;
    if (b < a) b = a;
    if (st == PT_OK) st = pt_h5_select_linear(fsp, (hsize_t)(a - p->offset), (hsize_t)(b - p->offset));
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
    st = pt_agree(comm, st, NULL);
    uint32_t crc = 0;
    if (st == PT_OK)
        st = combine_crc(comm, pt_crc32(slice + (a - lo), sizeof(float) * (size_t)(b - a)), b - a, &crc);
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

static pt_status write_file(MPI_Comm comm, const char *path, const pt_model *m,
                            const pt_optimizer *opt, const pt_ckpt_meta *meta,
                            const pt_ckpt_rank_states *rs)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int64_t lo, cnt;
    pt_shard_range(m->numel, size, rank, &lo, &cnt);
    const int64_t hi = lo + cnt;
    size_t bytes = sizeof(float) * (size_t)(cnt ? cnt : 1);
    float *host = malloc(bytes);
    pt_status st = host ? PT_OK : PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate %zu bytes", bytes);
    if (st == PT_OK && opt && (lo < opt->offset || hi > opt->offset + opt->n))
        st = PT_ERR(PT_ERR_INTERNAL, NULL, "optimizer shard [%lld, %lld) does not cover [%lld, %lld)",
                    (long long)opt->offset, (long long)(opt->offset + opt->n), (long long)lo,
                    (long long)hi);
    PT_TRY(pt_agree(comm, st, NULL));
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
        free(host);
        if (dxpl >= 0) H5Pclose(dxpl);
        if (f >= 0) H5Fclose(f);
        return st;
    }
    char name[PT_NAME_LEN + 64];
    m->be->to_host(host, m->w + lo, sizeof(float) * (size_t)cnt);
    for (int i = 0; i < m->nparams && st == PT_OK; i++) {
        snprintf(name, sizeof name, "params/%s", m->params[i].name);
        st = write_tensor(comm, f, dxpl, name, &m->params[i], host, lo, hi);
    }
    /* Buffers (batch-norm running statistics) are equal on every rank (the trainer averages them
     * first); each rank writes its slice of them the same way. */
    int64_t blo, bcnt;
    pt_shard_range(m->nbuf, size, rank, &blo, &bcnt);
    for (int i = 0; i < m->nbuffers && st == PT_OK; i++) {
        snprintf(name, sizeof name, "buffers/%s", m->buffers[i].name);
        st = write_tensor(comm, f, dxpl, name, &m->buffers[i], m->buf + blo, blo, blo + bcnt);
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
            st = write_tensor(comm, f, dxpl, name, &m->params[i], host, lo, hi);
        }
    }
    for (int s = 0; rs && s < rs->count && st == PT_OK; s++)
        st = write_rank_state(comm, f, dxpl, rs->name[s], rs->data[s], rs->n);
    free(host);
    H5Pclose(dxpl);
    if (st == PT_OK) { /* attributes: collective, the same values on every rank */
        char grid[64], order[sizeof meta->grid_order];
        const int tp = meta->tp_size > 0 ? meta->tp_size : 1, pp = meta->pp_size > 0 ? meta->pp_size : 1;
        /* the ZeRO stage; a sharded optimizer state is at least stage 1 whatever the caller said */
        const int zero = meta->zero > 0 ? meta->zero : opt && opt->n < m->numel ? 1 : 0;
        snprintf(order, sizeof order, "%s", meta->grid_order[0] ? meta->grid_order : "pp,dp,tp");
        snprintf(grid, sizeof grid, "dp=%d tp=%d pp=%d", meta->dp_size, tp, pp);
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
            pt_h5_attr_write_i64(f, "num_params", m->numel),
            pt_h5_attr_write_str(f, "process_grid", grid),
            pt_h5_attr_write_i64(f, "dp_size", meta->dp_size),
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
    int64_t elems = m->numel + m->nbuf, datasets = m->nparams + m->nbuffers;
    if (opt) elems += (int64_t)opt->nstates * m->numel, datasets += (int64_t)opt->nstates * m->nparams;
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
    pt_h5_quiet();
    int rank;
    PT_MPI_CHECK(MPI_Comm_rank(comm, &rank));
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
    pt_status st = write_file(comm, tmp, m, opt, meta, rs);
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

/* Reads the part of dataset `name` (shape-checked against p) that lies in the flat slice
 * [lo, hi) into dst (which holds flat elements lo..hi-1). *piece is the CRC-32 of what was read
 * (*len elements) and *stored the dataset's crc32 attribute. */
static pt_status read_tensor(hid_t f, const char *file, const char *name, const pt_param *p,
                             float *dst, int64_t lo, int64_t hi, uint32_t *piece, int64_t *len,
                             uint32_t *stored)
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
    for (int i = 0; ok && i < nd; i++) ok = (int64_t)dims[i] == p->shape[i];
    int64_t a = lo > p->offset ? lo : p->offset;
    int64_t b = hi < p->offset + p->numel ? hi : p->offset + p->numel;
    if (b < a) b = a;
    int64_t crc = -1;
    if (!ok) {
        char want[64];
        st = PT_ERR(PT_ERR_MISMATCH, "the checkpoint belongs to another model",
                    "'%s' in '%s' does not have the model's shape %s", name, file,
                    pt_shape_str(p->ndim, p->shape, want, sizeof want));
    } else if ((st = pt_h5_attr_read_i64(ds, "crc32", &crc, file)) == PT_OK && b > a) {
        hsize_t mn = (hsize_t)(b - a);
        hid_t msp = H5Screate_simple(1, &mn, NULL);
        st = pt_h5_select_linear(sp, (hsize_t)(a - p->offset), (hsize_t)(b - p->offset));
        if (st == PT_OK && H5Dread(ds, H5T_NATIVE_FLOAT, msp, sp, H5P_DEFAULT, dst + (a - lo)) < 0)
            st = PT_ERR(PT_ERR_FORMAT, "the checkpoint file is damaged",
                        "cannot read '%s' from '%s'", name, file);
        H5Sclose(msp);
    }
    H5Sclose(sp);
    H5Dclose(ds);
    *piece = st == PT_OK ? pt_crc32(dst + (a - lo), sizeof(float) * (size_t)(b - a)) : 0;
    *len = b - a;
    *stored = (uint32_t)crc;
    return st;
}

static pt_status checksum_error(const char *name, const char *file)
{
    return PT_ERR(PT_ERR_FORMAT, "the checkpoint file is damaged; use an earlier one",
                  "checksum mismatch for '%s' in '%s'", name, file);
}

pt_status pt_ckpt_load(MPI_Comm comm, const char *path, pt_model *m, pt_optimizer *opt,
                       pt_ckpt_meta *meta)
{
    hid_t f;
    const bool sharded = opt && opt->n < m->numel;
    pt_status st = open_ckpt(path, &f);
    if (sharded) PT_TRY(pt_agree(comm, st, NULL));
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
    char name[PT_NAME_LEN + 64];
    uint32_t piece, stored;
    int64_t len;
    /* parameters: every rank reads them whole and checks them itself */
    for (int i = 0; st == PT_OK && i < m->nparams; i++) {
        snprintf(name, sizeof name, "params/%s", m->params[i].name);
        st = read_tensor(f, path, name, &m->params[i], host, 0, m->numel, &piece, &len, &stored);
        if (st == PT_OK && piece != stored) st = checksum_error(name, path);
    }
    if (st == PT_OK) m->be->to_device(m->w, host, bytes);
    for (int i = 0; st == PT_OK && i < m->nbuffers; i++) {
        snprintf(name, sizeof name, "buffers/%s", m->buffers[i].name);
        st = read_tensor(f, path, name, &m->buffers[i], m->buf, 0, m->nbuf, &piece, &len, &stored);
        if (st == PT_OK && piece != stored) st = checksum_error(name, path);
    }
    /* optimizer state: this rank's slice [offset, offset + n): the checkpoint reshards to any
     * number of ranks. A partial slice is checked by combining every rank's piece checksums. */
    const int ns = opt ? opt->nstates : 0, np = m->nparams;
    uint32_t *pieces = calloc((size_t)(ns * np + 1), 2 * sizeof(uint32_t));
    int64_t *lens = calloc((size_t)(ns * np + 1), sizeof(int64_t));
    if (st == PT_OK && (!pieces || !lens)) st = PT_ERR(PT_ERR_NOMEM, NULL, "no memory for checksums");
    for (int s = 0; st == PT_OK && s < ns; s++) {
        for (int i = 0; st == PT_OK && i < np; i++) {
            snprintf(name, sizeof name, "optim/%s/%s", opt->state_names[s], m->params[i].name);
            const int k = s * np + i;
            st = read_tensor(f, path, name, &m->params[i], host, opt->offset,
                             opt->offset + opt->n, &pieces[2 * k], &lens[k], &pieces[2 * k + 1]);
            if (st == PT_OK && !sharded && pieces[2 * k] != pieces[2 * k + 1])
                st = checksum_error(name, path);
        }
        if (st == PT_OK) m->be->to_device(opt->state[s], host, sizeof(float) * (size_t)opt->n);
    }
    if (st == PT_OK && opt) {
        int64_t t;
        st = pt_h5_attr_read_i64(f, "optimizer_steps", &t, path);
        opt->t = t;
    }
    free(host);
    H5Fclose(f);
    if (sharded) {
        st = pt_agree(comm, st, NULL);
        for (int k = 0; st == PT_OK && k < ns * np; k++) {
            uint32_t whole;
            st = combine_crc(comm, pieces[2 * k], lens[k], &whole);
            if (st == PT_OK && whole != pieces[2 * k + 1]) {
                snprintf(name, sizeof name, "optim/%s/%s", opt->state_names[k / np],
                         m->params[k % np].name);
                st = checksum_error(name, path);
            }
        }
    }
    free(pieces), free(lens);
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
