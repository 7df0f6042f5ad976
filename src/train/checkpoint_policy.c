/* Checkpoint policy of training: checking the paths before any work, what a checkpoint records
 * (the grid included), writing one, and resuming (latest, auto, a path). When to write is the
 * loop's decision; the files' layout is src/io/ckpt.c's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paratrain/agree.h"
#include "paratrain/ckpt.h"
#include "paratrain/log.h"
#include "paratrain/strategy.h"
#include "paratrain/watchdog.h"
#include "../io/h5util.h"

/* Creates dir if missing and shows it writable by writing a file there: access(W_OK) would not
 * do, root passes it on a read-only mount. Local (rank 0). */
static pt_status check_writable_dir(const char *dir, const char *what)
{
    struct stat sb;
    if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return PT_ERR(PT_ERR_IO, "give a directory (it is created if missing)",
                      "%s '%s' is not a directory", what, dir);
    PT_TRY(pt_mkdir_p(dir));
    char probe[PT_PATH_MAX + 32];
    snprintf(probe, sizeof probe, "%s/.write-test.%ld", dir, (long)getpid());
    FILE *fp = fopen(probe, "w");
    pt_status st = PT_OK;
    if (!fp || fclose(fp) != 0)
        st = PT_ERR(PT_ERR_IO, "give a writable directory", "cannot write to %s '%s': %s", what,
                    dir, strerror(errno));
    if (fp) remove(probe);
    return st;
}

/* The paths of a run, found unusable before any work instead of at the first save or at the
 * resume: --ckpt-dir (a file, not creatable, not writable), --resume latest with no checkpoint
 * there, --resume PATH that does not exist, the directory of --metrics. World rank 0 checks;
 * all ranks agree. */
pt_status pt_train_check_paths(pt_train_state *s)
{
    const pt_train_config *c = s->cfg;
    pt_status st = PT_OK;
    if (s->world_rank == 0) {
        char probe[PT_PATH_MAX + 32];
        snprintf(probe, sizeof probe, "%s/latest", c->ckpt_dir);
        if (c->ckpt_dir[0] && !strcmp(c->resume, "latest") && access(probe, R_OK) != 0)
            st = PT_ERR(PT_ERR_IO, "use --resume auto to continue from a checkpoint when there is "
                                   "one and start fresh otherwise",
                        "--resume latest: no checkpoint in '%s' (%s: %s)", c->ckpt_dir, probe,
                        strerror(errno));
        else if (c->resume[0] && strcmp(c->resume, "latest") && strcmp(c->resume, "auto"))
            st = pt_ckpt_resolve(c->resume, probe, sizeof probe);
        if (st == PT_OK && c->ckpt_dir[0]) st = check_writable_dir(c->ckpt_dir, "--ckpt-dir");
        const char *slash = strrchr(c->metrics, '/');
        if (st == PT_OK && slash && slash != c->metrics) {
            snprintf(probe, sizeof probe, "%.*s", (int)(slash - c->metrics), c->metrics);
            st = check_writable_dir(probe, "the directory of --metrics");
        }
    }
    return pt_agree(s->world, st, NULL);
}

static void fill_meta(const pt_train_state *s, pt_ckpt_meta *meta)
{
    memset(meta, 0, sizeof *meta);
    meta->step = s->step;
    meta->epoch = s->step / s->steps_per_epoch;
    meta->step_in_epoch = s->step % s->steps_per_epoch;
    meta->seed = s->cfg->seed;
    meta->dp_size = s->dp_size;
    meta->tp_size = s->grid.size[PT_AXIS_TP];
    meta->pp_size = s->grid.size[PT_AXIS_PP];
    meta->zero = pt_train_zero_stage(s->cfg, s->dp_size);
    snprintf(meta->grid_order, sizeof meta->grid_order, "%s", s->grid.order_text);
    meta->es_best = s->es.best;
    meta->es_best_step = s->es.best_step;
    meta->es_bad_evals = s->es.bad_evals;
    pt_train_config_dump(s->cfg, meta->config, sizeof meta->config);
}

/* Where this rank's tensors sit in the grid: its dp and tp coordinates (holds: none). */
static pt_ckpt_dist dist_of(const pt_train_state *s)
{
    return (pt_ckpt_dist){.dp_rank = s->dp_rank, .dp_size = s->dp_size,
                          .tp_rank = s->grid.coord[PT_AXIS_TP], .tp_size = s->grid.size[PT_AXIS_TP],
                          .pp_size = s->grid.size[PT_AXIS_PP]};
}

/* dist_of, plus which tensors this rank's pipeline stage owns (it alone writes and reads them);
 * holds (PT_MAX_PARAMS bytes) is the caller's storage. */
static pt_ckpt_dist dist_with_holds(const pt_train_state *s, unsigned char *holds)
{
    pt_ckpt_dist dist = dist_of(s);
    if (s->strategy->owns) {
        for (int i = 0; i < s->model.nparams; i++) holds[i] = (unsigned char)s->strategy->owns(s, i);
        dist.holds = holds;
    }
    return dist;
}

/* The per-rank state a bitwise resume needs (compression's residual and DGC momentum). */
static void rank_states(pt_train_state *s, pt_ckpt_rank_states *rs)
{
    memset(rs, 0, sizeof *rs);
    rs->n = s->model.numel;
    rs->count = s->strategy->rank_states(s, rs->name, rs->data, PT_CKPT_MAX_RANK_STATES);
}

pt_status pt_train_save_checkpoint(pt_train_state *s, char *path_out)
{
    char path[PT_PATH_MAX]; /* the written file, for the log and the metrics record */
    pt_ckpt_meta meta;
    fill_meta(s, &meta);
    PT_TRY(pt_train_average_buffers(s));
    pt_ckpt_rank_states rs;
    rank_states(s, &rs);
    /* collective HDF5 writes and closes cannot be bounded one by one: the armed watchdog bounds
     * the save (every agreement inside it that completes counts as progress). Every dataset is
     * a global tensor; each rank writes its hyperslab (design.md #14), so any grid loads it. */
    unsigned char holds[PT_MAX_PARAMS];
    const pt_ckpt_dist dist = dist_with_holds(s, holds);
    pt_optimizer *opt = &s->opt; /* or the strategy's stand-in in the checkpoint layout */
    if (s->strategy->ckpt_state) PT_TRY(s->strategy->ckpt_state(s, true, &opt));
    pt_watchdog_arm("collective HDF5 I/O", "writing a checkpoint (pt_ckpt_save)", -1);
    pt_status st = pt_ckpt_save_dist(s->world, s->cfg->ckpt_dir, &s->model, opt, &meta, &rs,
                                     &dist, path);
    pt_watchdog_disarm();
    PT_TRY(st);
    pt_metrics_write(&s->metrics, "checkpoint", "\"step\": %lld, \"epoch\": %.4f, \"path\": \"%s\"",
                     (long long)s->step, (double)s->step / (double)s->steps_per_epoch, path);
    if (!s->cfg->quiet) pt_log_info("checkpoint %s", path);
    if (path_out) memcpy(path_out, path, strlen(path) + 1);
    return PT_OK;
}

/* Checks that a checkpoint's metadata fits this run (local). */
static pt_status check_meta(pt_train_state *s, const char *path, const pt_ckpt_meta *m)
{
    const pt_train_config *c = s->cfg;
    const pt_ckpt_meta meta = *m;
    pt_status st = PT_OK;
    if (meta.seed != c->seed)
        st = PT_ERR(PT_ERR_MISMATCH, "resume with the same --seed",
                    "checkpoint '%s' was trained with seed %llu, this run has seed %llu", path,
                    (unsigned long long)meta.seed, (unsigned long long)c->seed);
    char act[32] = "relu"; /* checkpoints store it in the config as "activation = NAME" */
    const char *a = strstr(meta.config, "\nactivation = ");
    if (a) sscanf(a + 14, "%31s", act);
    if (st == PT_OK && pt_model_spec_uses_activation(c->model) && strcmp(act, c->activation))
        st = PT_ERR(PT_ERR_MISMATCH, "resume with the --activation the checkpoint was trained with",
                    "checkpoint '%s' was trained with --activation %s, this run uses %s", path,
                    act, c->activation);
    if (st == PT_OK && meta.step_in_epoch != meta.step % s->steps_per_epoch)
        st = PT_ERR(PT_ERR_MISMATCH, "resume with the same --batch and data",
                    "checkpoint '%s' stopped at step %lld of epoch %lld, which does not fit %lld "
                    "steps per epoch",
                    path, (long long)meta.step, (long long)meta.epoch, (long long)s->steps_per_epoch);
    return st;
}

/* Loads a checkpoint on every rank (each its tensor-parallel shard and its slice of the
 * optimizer state, whatever grid wrote it) and checks that it fits this run. Collective. */
static pt_status load_checked(pt_train_state *s, const char *path, pt_ckpt_meta *meta)
{
    unsigned char holds[PT_MAX_PARAMS];
    const pt_ckpt_dist dist = dist_with_holds(s, holds);
    pt_optimizer *opt = &s->opt; /* or the strategy's stand-in in the checkpoint layout */
    if (s->strategy->ckpt_state) PT_TRY(s->strategy->ckpt_state(s, false, &opt));
    pt_status st = pt_ckpt_load_dist(s->world, path, &s->model, opt, meta, &dist);
    if (st == PT_OK) st = check_meta(s, path, meta);
    PT_TRY(pt_agree(s->world, st, NULL));
    return s->strategy->ckpt_loaded ? s->strategy->ckpt_loaded(s) : PT_OK;
}

/* --resume auto: world rank 0 verifies the checkpoints of --ckpt-dir newest first (every
 * checksum, and the metadata against this run) and skips, with a warning, any that fails; every
 * rank then loads the one chosen. None: start fresh. */
static pt_status choose_auto(pt_train_state *s, char *path)
{
    const pt_train_config *c = s->cfg;
    path[0] = '\0';
    pt_status st = PT_OK;
    if (s->world_rank == 0) {
        int64_t *steps;
        int n;
        st = pt_ckpt_list(c->ckpt_dir, &steps, &n);
        for (int i = 0; st == PT_OK && i < n && !path[0]; i++) {
            char cand[PT_PATH_MAX + 32];
            snprintf(cand, sizeof cand, "%s/step_%08lld.h5", c->ckpt_dir, (long long)steps[i]);
            pt_ckpt_meta meta;
            if (strlen(cand) < PT_PATH_MAX && pt_ckpt_verify(cand, &meta) == PT_OK &&
                check_meta(s, cand, &meta) == PT_OK)
                memcpy(path, cand, strlen(cand) + 1);
            else
                pt_log_warn("--resume auto: skipping %s: %s", cand, pt_error_message());
        }
        free(steps);
    }
    PT_TRY(pt_agree(s->world, st, NULL));
    PT_TRY(pt_mpi_bcast(path, PT_PATH_MAX, MPI_CHAR, 0, s->world, "the checkpoint --resume auto chose"));
    return PT_OK;
}

pt_status pt_train_resume(pt_train_state *s)
{
    const pt_train_config *c = s->cfg;
    char path[PT_PATH_MAX];
    pt_status st = PT_OK;
    if ((!strcmp(c->resume, "latest") || !strcmp(c->resume, "auto")) && !c->ckpt_dir[0])
        return PT_ERR(PT_ERR_ARG, "give --ckpt-dir DIR", "--resume %s needs --ckpt-dir", c->resume);
    if (!strcmp(c->resume, "auto")) {
        PT_TRY(choose_auto(s, path));
        if (!path[0]) {
            if (!c->quiet) pt_log_info("--resume auto: no usable checkpoint in %s; starting at step 0", c->ckpt_dir);
            return PT_OK;
        }
    } else if (!strcmp(c->resume, "latest")) {
        st = pt_ckpt_resolve(c->ckpt_dir, path, sizeof path); /* checked in check_paths */
    } else {
        st = pt_ckpt_resolve(c->resume, path, sizeof path);
    }
    pt_ckpt_meta meta;
    PT_TRY(pt_agree(s->world, st, NULL));
    PT_TRY(load_checked(s, path, &meta));
    pt_ckpt_rank_states rs;
    rank_states(s, &rs);
    int found = 0;
    PT_TRY(pt_ckpt_load_rank_states(s->world, path, &rs, &found));
    if (rs.count && !found) {
        bool momentum = false;
        for (int i = 0; i < rs.count; i++) momentum |= !strcmp(rs.name[i], "dgc_velocity");
        s->strategy->reset_rank_states(s);
        if (!c->quiet && s->world_rank == 0)
            pt_log_warn("--resume: %s has no error-feedback residual%s for %d ranks; %s from zero",
                        path, momentum ? " and DGC momentum" : "", s->world_size,
                        momentum ? "they start" : "it starts");
    }
    s->step = meta.step;
    s->es.best = meta.es_best, s->es.best_step = meta.es_best_step;
    s->es.bad_evals = meta.es_bad_evals;
    if (!c->quiet)
        pt_log_info("resumed from %s at step %lld (written by dp %d x tp %d, read by dp %d x tp %d)",
                    path, (long long)s->step, meta.dp_size, meta.tp_size > 0 ? meta.tp_size : 1,
                    s->dp_size, s->grid.size[PT_AXIS_TP]);
    return PT_OK;
}
