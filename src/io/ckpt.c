/* Checkpoint save and load. Parameters are replicated under pure data parallelism, so rank 0
 * writes the file and broadcasts the outcome; sharded writes arrive with ZeRO ([data-parallel]). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "h5util.h"
#include "paratrain/agree.h"
#include "paratrain/ckpt.h"
#include "paratrain/log.h"

uint32_t pt_crc32(const void *data, size_t bytes)
{
    uLong c = crc32(0L, Z_NULL, 0);
    const Bytef *p = data;
    while (bytes > 0) { /* zlib counts in uInt */
        uInt n = bytes > (1u << 30) ? (1u << 30) : (uInt)bytes;
        c = crc32(c, p, n);
        p += n, bytes -= n;
    }
    return (uint32_t)c;
}

static pt_status fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return PT_ERR(PT_ERR_IO, NULL, "cannot open '%s' to sync: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) return PT_ERR(PT_ERR_IO, "check the file system", "fsync '%s' failed: %s", path, strerror(errno));
    return PT_OK;
}

static pt_status write_tensor(hid_t f, const char *path, const pt_param *p, const float *host)
{
    PT_TRY(pt_h5_make_parents(f, path));
    hsize_t dims[PT_MAX_DIMS];
    for (int i = 0; i < p->ndim; i++) dims[i] = (hsize_t)p->shape[i];
    hid_t sp = H5Screate_simple(p->ndim, dims, NULL);
    hid_t ds = H5Dcreate2(f, path, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(sp);
    if (ds < 0) return PT_ERR(PT_ERR_IO, "check free disk space", "cannot create dataset '%s'", path);
    pt_status st = PT_OK;
    if (H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, host + p->offset) < 0)
        st = PT_ERR(PT_ERR_IO, "check free disk space", "cannot write dataset '%s'", path);
    if (st == PT_OK)
        st = pt_h5_attr_write_i64(ds, "crc32",
                                  pt_crc32(host + p->offset, sizeof(float) * (size_t)p->numel));
    H5Dclose(ds);
    return st;
}

/* Writes the whole file at `path` (rank 0 only). */
static pt_status write_file(const char *path, const pt_model *m, const pt_optimizer *opt,
                            const pt_ckpt_meta *meta)
{
    size_t bytes = sizeof(float) * (size_t)m->numel;
    float *host = malloc(bytes);
    PT_ALLOC_CHECK(host, bytes);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        free(host);
        return PT_ERR(PT_ERR_IO, "check that the checkpoint directory is writable",
                      "cannot create checkpoint '%s'", path);
    }
    pt_status st = PT_OK;
    char name[PT_NAME_LEN + 64];
    m->be->to_host(host, m->w, bytes);
    for (int i = 0; i < m->nparams && st == PT_OK; i++) {
        snprintf(name, sizeof name, "params/%s", m->params[i].name);
        st = write_tensor(f, name, &m->params[i], host);
    }
    /* Fault injection for the tests: "ckpt-save" fails the save half-way (an I/O error);
     * "ckpt-crash" kills the process half-way, as a node failure would (tests/test_fault.sh). */
    const char *fault = getenv("PT_FAULT_INJECT");
    if (st == PT_OK && fault && !strcmp(fault, "ckpt-save"))
        st = PT_ERR(PT_ERR_IO, "this failure was injected by PT_FAULT_INJECT=ckpt-save",
                    "checkpoint write to '%s' failed half-way", path);
    if (st == PT_OK && fault && !strcmp(fault, "ckpt-crash")) {
        H5Fflush(f, H5F_SCOPE_GLOBAL);
        raise(SIGKILL);
    }
    for (int s = 0; opt && s < opt->nstates && st == PT_OK; s++) {
        m->be->to_host(host, opt->state[s], bytes);
        for (int i = 0; i < m->nparams && st == PT_OK; i++) {
            snprintf(name, sizeof name, "optim/%s/%s", opt->state_names[s], m->params[i].name);
            st = write_tensor(f, name, &m->params[i], host);
        }
    }
    free(host);
    if (st == PT_OK) {
        char grid[64];
        snprintf(grid, sizeof grid, "dp=%d tp=1 pp=1", meta->dp_size);
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
            pt_h5_attr_write_f64(f, "early_stop_best", meta->es_best),
            pt_h5_attr_write_i64(f, "early_stop_best_step", meta->es_best_step),
            pt_h5_attr_write_i64(f, "early_stop_bad_evals", meta->es_bad_evals),
            pt_h5_attr_write_str(f, "config", meta->config),
        };
        for (size_t i = 0; i < sizeof a / sizeof *a && st == PT_OK; i++) st = a[i];
    }
    if (H5Fclose(f) < 0 && st == PT_OK)
        st = PT_ERR(PT_ERR_IO, "check free disk space", "cannot close checkpoint '%s'", path);
    if (st == PT_OK) st = fsync_path(path);
    return st;
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

static pt_status save_rank0(const char *dir, const pt_model *m, const pt_optimizer *opt,
                            const pt_ckpt_meta *meta, char *final_path)
{
    PT_TRY(pt_mkdir_p(dir));
    char base[64], tmp[PT_PATH_MAX + 96];
    snprintf(base, sizeof base, "step_%08lld.h5", (long long)meta->step);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, base);
    snprintf(final_path, PT_PATH_MAX, "%s/%s", dir, base);
    pt_status st = write_file(tmp, m, opt, meta);
    if (st == PT_OK && rename(tmp, final_path) != 0)
        st = PT_ERR(PT_ERR_IO, NULL, "cannot rename '%s': %s", tmp, strerror(errno));
    if (st != PT_OK) {
        unlink(tmp);
        return st;
    }
    PT_TRY(fsync_path(dir));
    char line[96];
    snprintf(line, sizeof line, "%s\n", base);
    return replace_small_file(dir, "latest", line);
}

pt_status pt_ckpt_save(MPI_Comm comm, const char *dir, const pt_model *m, const pt_optimizer *opt,
                       const pt_ckpt_meta *meta, char *written_path)
{
    pt_h5_quiet();
    int rank;
    PT_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    char path[PT_PATH_MAX];
    pt_status st = rank == 0 ? save_rank0(dir, m, opt, meta, path) : PT_OK;
    st = pt_agree(comm, st, NULL);
    if (st == PT_OK && written_path) {
        snprintf(path, sizeof path, "%s/step_%08lld.h5", dir, (long long)meta->step);
        snprintf(written_path, PT_PATH_MAX, "%s", path);
    }
    return st;
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

static pt_status read_tensor(hid_t f, const char *file, const char *name, const pt_param *p,
                             float *host)
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
    H5Sclose(sp);
    int64_t crc = -1;
    if (!ok) {
        char want[64];
        st = PT_ERR(PT_ERR_MISMATCH, "the checkpoint belongs to another model",
                    "'%s' in '%s' does not have the model's shape %s", name, file,
                    pt_shape_str(p->ndim, p->shape, want, sizeof want));
    } else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, host + p->offset) < 0) {
        st = PT_ERR(PT_ERR_FORMAT, "the checkpoint file is damaged", "cannot read '%s' from '%s'",
                    name, file);
    } else if ((st = pt_h5_attr_read_i64(ds, "crc32", &crc, file)) == PT_OK &&
               (uint32_t)crc != pt_crc32(host + p->offset, sizeof(float) * (size_t)p->numel)) {
        st = PT_ERR(PT_ERR_FORMAT, "the checkpoint file is damaged; use an earlier one",
                    "checksum mismatch for '%s' in '%s'", name, file);
    }
    H5Dclose(ds);
    return st;
}

pt_status pt_ckpt_load(const char *path, pt_model *m, pt_optimizer *opt, pt_ckpt_meta *meta)
{
    hid_t f;
    PT_TRY(open_ckpt(path, &f));
    char spec[256], optname[32];
    pt_status st = read_meta(f, path, meta, spec, sizeof spec, optname, sizeof optname);
    if (st == PT_OK && strcmp(spec, m->spec) != 0)
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
    for (int i = 0; st == PT_OK && i < m->nparams; i++) {
        snprintf(name, sizeof name, "params/%s", m->params[i].name);
        st = read_tensor(f, path, name, &m->params[i], host);
    }
    if (st == PT_OK) m->be->to_device(m->w, host, bytes);
    for (int s = 0; st == PT_OK && opt && s < opt->nstates; s++) {
        for (int i = 0; st == PT_OK && i < m->nparams; i++) {
            snprintf(name, sizeof name, "optim/%s/%s", opt->state_names[s], m->params[i].name);
            st = read_tensor(f, path, name, &m->params[i], host);
        }
        if (st == PT_OK) m->be->to_device(opt->state[s], host, bytes);
    }
    if (st == PT_OK && opt) {
        int64_t t;
        st = pt_h5_attr_read_i64(f, "optimizer_steps", &t, path);
        opt->t = t;
    }
    free(host);
    H5Fclose(f);
    return st;
}
