/* Data-parallel training loop, evaluation, and checkpoint evaluation.
 *
 * One step: read this rank's share of the global batch -> forward -> backward (gradient scaled by
 * 1/global batch; gradient buckets are reduced while backward runs) -> clip -> optimizer update
 * (of this rank's shard and an allgather under ZeRO-1). Gradient synchronization lives in
 * grad_sync.c. The step's loss and an error flag travel in one small allreduce, so a rank that
 * fails mid-run (an I/O error on its share) stops every rank at the same step instead of leaving
 * them in a collective. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paratrain/agree.h"
#include "paratrain/ckpt.h"
#include "paratrain/comm.h"
#include "paratrain/fault.h"
#include "paratrain/log.h"
#include "paratrain/metrics.h"
#include "paratrain/optim.h"
#include "paratrain/rng.h"
#include "paratrain/train.h"
#include "paratrain/watchdog.h"
#include "grad_sync.h"
#include "../io/h5util.h"

static pt_status parse_act(const char *s, pt_act *a)
{
    if (!strcmp(s, "relu")) *a = PT_ACT_RELU;
    else if (!strcmp(s, "gelu")) *a = PT_ACT_GELU;
    else if (!strcmp(s, "tanh")) *a = PT_ACT_TANH;
    else return PT_ERR(PT_ERR_ARG, "choose relu, gelu or tanh", "unknown activation '%s'", s);
    return PT_OK;
}

static pt_status build_model(pt_model *m, const pt_train_config *c, const pt_dataset *d,
                             int max_batch)
{
    const pt_backend *be = pt_backend_by_name(c->backend);
    if (!be)
        return PT_ERR(PT_ERR_ARG,
                      strcmp(c->backend, "cuda") ? "choose cpu or cuda"
                                                 : "configure with --with-cuda on a GPU machine",
                      "backend '%s' is not available in this build", c->backend);
    /* --reproducible promises the same bits for any thread count too, which GEMM alone breaks */
    if (be->set_deterministic) be->set_deterministic(c->reproducible);
    pt_model_options mo = {.dropout = (float)c->dropout, .sync_bn = c->sync_bn};
    PT_TRY(parse_act(c->activation, &mo.act));
    if (!strcmp(c->conv_algo, "im2col")) mo.conv_algo = PT_CONV_ALGO_IM2COL;
    else if (strcmp(c->conv_algo, "auto"))
        return PT_ERR(PT_ERR_ARG, "choose auto or im2col", "unknown --conv-algo '%s'", c->conv_algo);
    PT_TRY(pt_model_create(m, c->model, &mo, be, max_batch));
    if (pt_model_input_size(m) != d->sample_size) {
        /* each model kind takes its input size from a different key */
        const char *hint = "the model's first width must equal channels*height*width";
        if (!strncmp(c->model, "gpt", 3))
            hint = "gpt's ctx must be one less than the tokens per sample (pt-prep kjv-lm --ctx)";
        else if (!strncmp(c->model, "textcnn", 7))
            hint = "textcnn's len must equal the tokens per sample (pt-prep kjv-books --ctx)";
        else if (!strncmp(c->model, "cnn", 3) || !strncmp(c->model, "resnet", 6))
            hint = "the model's size=S must match the S x S images";
        pt_status st = PT_ERR(PT_ERR_ARG, hint,
                              "model '%s' takes %d inputs, but the samples of '%s' have %lld "
                              "values (%d x %d x %d)",
                              c->model, pt_model_input_size(m), d->dir, (long long)d->sample_size,
                              d->channels, d->height, d->width);
        pt_model_destroy(m);
        return st;
    }
    if (pt_model_classes(m) != d->num_classes) {
        pt_status st = PT_ERR(PT_ERR_ARG, "the model's last width must equal the number of classes",
                              "model '%s' has %d outputs, but '%s' has %d classes", c->model,
                              pt_model_classes(m), d->dir, d->num_classes);
        pt_model_destroy(m);
        return st;
    }
    return PT_OK;
}

/* Synchronized batch norm: sums the statistics over the data-parallel group. */
static int sum_over_ranks(void *arg, double *x, int n)
{
    pt_status st = pt_mpi_allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, *(MPI_Comm *)arg,
                                    "the statistics of synchronized batch norm");
    return st == PT_OK ? MPI_SUCCESS : MPI_ERR_OTHER;
}

/* Running statistics of per-rank batch norm differ between ranks; evaluation and checkpoints
 * use their average, so every rank predicts alike and the checkpoint holds one model. */
static pt_status average_buffers(pt_model *m, MPI_Comm comm)
{
    int size;
    MPI_Comm_size(comm, &size);
    if (!m->nbuf || size == 1) return PT_OK;
    double *s = malloc(sizeof(double) * (size_t)m->nbuf);
    if (!s) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for batch-norm statistics");
    for (int64_t i = 0; i < m->nbuf; i++) s[i] = m->buf[i];
    pt_status st = pt_mpi_allreduce(MPI_IN_PLACE, s, (int)m->nbuf, MPI_DOUBLE, MPI_SUM, comm,
                                    "averaging the batch-norm running statistics");
    for (int64_t i = 0; st == PT_OK && i < m->nbuf; i++) m->buf[i] = (float)(s[i] / size);
    free(s);
    return st;
}

pt_status pt_evaluate(pt_model *m, pt_dataset *d, MPI_Comm comm, int64_t batch, double *loss,
                      double *accuracy)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (batch < 1)
        return PT_ERR(PT_ERR_ARG, "give --eval-batch 1 or more",
                      "evaluation batch %lld is not positive", (long long)batch);
    PT_TRY(average_buffers(m, comm));
    if (batch > m->max_batch) batch = m->max_batch;
    int64_t off, cnt;
    pt_batch_share(d->count, rank, size, &off, &cnt);
    float *x = malloc(sizeof(float) * (size_t)(batch * d->sample_size));
    int32_t *y = malloc(sizeof(int32_t) * (size_t)batch);
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)batch);
    pt_status st = x && y && idx ? PT_OK : PT_ERR(PT_ERR_NOMEM, NULL, "no memory for evaluation");
    double acc[3] = {0, 0, (double)cnt}; /* loss sum, correct, samples */
    pt_fwd_ctx ctx = {0};
    for (int64_t a = 0; a < cnt && st == PT_OK; a += batch) {
        int n = (int)(cnt - a < batch ? cnt - a : batch);
        for (int i = 0; i < n; i++) idx[i] = off + a + i;
        st = pt_dataset_read(d, idx, n, x, y);
        if (st != PT_OK) break;
        pt_model_forward(m, x, n, &ctx);
        int64_t correct = 0;
        acc[0] += pt_model_loss_backward(m, y, n, &ctx, 0.0f, &correct);
        acc[1] += (double)correct;
        if ((st = pt_model_status(m)) != PT_OK) break;
    }
    free(x), free(y), free(idx);
    PT_TRY(pt_agree(comm, st, NULL));
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, acc, 3, MPI_DOUBLE, MPI_SUM, comm,
                            "the loss and accuracy of an evaluation"));
    *loss = acc[2] > 0 ? acc[0] / acc[2] : NAN;
    *accuracy = acc[2] > 0 ? acc[1] / (acc[2] * pt_model_targets(m)) : NAN;
    return PT_OK;
}

static void fmt_duration(double s, char *buf, size_t len)
{
    if (!(s >= 0) || s > 1e7) s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

typedef struct {
    const pt_train_config *cfg;
    MPI_Comm comm;
    pt_comm pc;
    int rank, size;
    pt_dataset train, val, test;
    bool have_val, have_test;
    pt_model model;
    pt_optimizer opt;
    pt_schedule sched;
    pt_sampler sampler;
    pt_early_stop es;
    pt_metrics metrics;
    pt_grad_sync gs;
    pt_compressor z;
    bool aug_flip;
    int aug_crop; /* --augment: flip, and shifts of up to aug_crop pixels */
    float *aug_tmp;
    float dgc_momentum; /* --dgc: the optimizer's momentum, applied by the compressor instead */
    int64_t step, steps_per_epoch, total_steps;
    float *x;
    int32_t *y;
    int64_t *idx;
} trainer;

static pt_status make_optimizer(trainer *t)
{
    const pt_train_config *c = t->cfg;
    pt_optim_config oc;
    PT_TRY(pt_optim_config_parse(&oc, c->optimizer));
    if (c->lr >= 0) oc.lr = (float)c->lr;
    if (c->momentum >= 0) oc.momentum = (float)c->momentum;
    if (c->dgc) { /* momentum correction: the ranks keep the momentum, the update has none */
        if (oc.kind != PT_OPT_SGD)
            return PT_ERR(PT_ERR_ARG, "use --optimizer momentum (or sgd) with --dgc",
                          "--dgc corrects SGD momentum; '%s' is not SGD", c->optimizer);
        t->dgc_momentum = oc.momentum;
        oc.momentum = 0.0f, oc.nesterov = false;
    }
    if (c->weight_decay >= 0) oc.weight_decay = (float)c->weight_decay;
    if (c->beta1 >= 0) oc.beta1 = (float)c->beta1;
    if (c->beta2 >= 0) oc.beta2 = (float)c->beta2;
    if (c->eps >= 0) oc.eps = (float)c->eps;
    /* ZeRO-1: the state of this rank's shard only */
    PT_TRY(pt_optim_create(&t->opt, &oc, t->model.be, t->gs.shard_count));
    t->opt.offset = t->gs.shard_off;
    memset(&t->sched, 0, sizeof t->sched);
    PT_TRY(pt_schedule_parse(&t->sched, c->schedule));
    t->sched.base_lr = oc.lr;
    t->sched.min_lr = (float)c->min_lr;
    t->sched.warmup_steps = c->warmup_steps;
    t->sched.step_size = c->step_size;
    t->sched.gamma = (float)c->gamma;
    t->sched.total_steps = t->total_steps;
    if (t->sched.kind == PT_SCHED_STEP && c->step_size <= 0)
        return PT_ERR(PT_ERR_ARG, "give --step-size N", "the step schedule needs --step-size > 0");
    return PT_OK;
}

/* --augment: "none", "flip", "crop:P", "flip,crop:P" (either order). */
static pt_status parse_augment(trainer *t)
{
    const char *spec = t->cfg->augment;
    t->aug_flip = false, t->aug_crop = 0;
    if (!strcmp(spec, "none") || !spec[0]) return PT_OK;
    char buf[32];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char *end = NULL;
        if (!strcmp(tok, "flip")) t->aug_flip = true;
        else if (!strncmp(tok, "crop:", 5) && (t->aug_crop = (int)strtol(tok + 5, &end, 10), 1) &&
                 end != tok + 5 && !*end && t->aug_crop > 0 && t->aug_crop < t->train.width)
            ;
        else
            return PT_ERR(PT_ERR_ARG, "give none, flip, crop:P or flip,crop:P (P pixels, 0 < P < width)",
                          "bad --augment '%s'", spec);
    }
    if (t->train.tokens || t->train.height < 2)
        return PT_ERR(PT_ERR_ARG, "drop --augment for text data",
                      "--augment flips and shifts images; '%s' holds %s", t->cfg->data,
                      t->train.tokens ? "tokens" : "1-D samples");
    t->aug_tmp = malloc(sizeof(float) * (size_t)t->train.sample_size);
    if (!t->aug_tmp) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for augmentation");
    return PT_OK;
}

/* Flips and shifts this rank's rows of the global batch. The draws are keyed by (seed, step,
 * position in the global batch), so a sample is augmented the same way whatever the rank count,
 * and a resumed run repeats them. Samples are (C, H, W); shifted-in pixels are 0. */
static void augment_batch(trainer *t, int64_t rows, int64_t first_row)
{
    const int C = t->train.channels, H = t->train.height, W = t->train.width, P = t->aug_crop;
    for (int64_t r = 0; r < rows; r++) {
        uint32_t w[4];
        pt_rng_block(t->cfg->seed, PT_STREAM_AUGMENT,
                     (uint64_t)t->step * (uint64_t)t->cfg->batch + (uint64_t)(first_row + r), w);
        const bool flip = t->aug_flip && (w[0] & 1u);
        const int dy = P ? (int)(w[1] % (uint32_t)(2 * P + 1)) - P : 0;
        const int dx = P ? (int)(w[2] % (uint32_t)(2 * P + 1)) - P : 0;
        if (!flip && !dy && !dx) continue;
        float *x = t->x + r * t->train.sample_size, *o = t->aug_tmp;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int xx = 0; xx < W; xx++) {
                    const int sy = y + dy, sx0 = xx + dx, sx = flip ? W - 1 - sx0 : sx0;
                    o[((int64_t)c * H + y) * W + xx] =
                        sy < 0 || sy >= H || sx0 < 0 || sx0 >= W ? 0.0f : x[((int64_t)c * H + sy) * W + sx];
                }
        memcpy(x, o, sizeof(float) * (size_t)t->train.sample_size);
    }
}

/* --compress: the compressor replaces the gradient allreduce (compress.h). */
static pt_status make_compressor(trainer *t)
{
    const pt_train_config *c = t->cfg;
    pt_compress_config zc;
    PT_TRY(pt_compress_parse(c->compress, &zc));
    if (zc.kind == PT_COMPRESS_NONE) {
        if (c->dgc) return PT_ERR(PT_ERR_ARG, "add --compress topk:D", "--dgc needs top-k compression");
        return PT_OK;
    }
    if (c->zero || c->bucket_mb > 0 || c->reproducible)
        return PT_ERR(PT_ERR_ARG, "drop --zero, --bucket-mb and --reproducible, or --compress",
                      "--compress %s replaces the whole-gradient allreduce, so it does not combine "
                      "with ZeRO-1, buckets or the exact reduction", c->compress);
    PT_TRY(pt_sparse_algo_parse(c->sparse_allreduce, &zc.algo));
    if (!(c->sparcml_switch > 0 && c->sparcml_switch <= 0.5))
        return PT_ERR(PT_ERR_ARG, "give a density in (0, 0.5]",
                      "--sparcml-switch %g: past 0.5 a sparse vector is larger than the dense one",
                      c->sparcml_switch);
    if (!(c->density_warmup_epochs >= 0))
        return PT_ERR(PT_ERR_ARG, NULL, "--density-warmup-epochs must be >= 0");
    zc.dense_switch = c->sparcml_switch;
    zc.error_feedback = c->error_feedback;
    zc.dgc = c->dgc;
    zc.momentum = t->dgc_momentum;
    zc.clip_norm = c->clip_norm;
    zc.warmup_epochs = c->density_warmup_epochs;
    PT_TRY(pt_compressor_init(&t->z, &zc, &t->model));
    t->gs.z = &t->z;
    if (!c->quiet) {
        char what[128] = "";
        if (zc.kind == PT_COMPRESS_TOPK)
            snprintf(what, sizeof what, " (density %g, %s%s%s)", zc.density,
                     pt_sparse_algo_name(zc.algo), zc.error_feedback ? ", error feedback" : "",
                     zc.dgc ? ", DGC" : "");
        else if (zc.kind == PT_COMPRESS_SIGN)
            snprintf(what, sizeof what, "%s", zc.error_feedback ? " (error feedback)" : "");
        pt_log_info("gradient compression: %s%s", pt_compress_kind_name(zc.kind), what);
    }
    return PT_OK;
}

/* Memory per rank of the model's flat buffers, on the log and in the metrics' start record. */
static void report_memory(trainer *t)
{
    const double mib = 1048576.0;
    const double p = 4.0 * (double)t->model.numel, g = p + (t->gs.gshard ? 4.0 * (double)t->gs.shard_count : 0);
    const double o = 4.0 * (double)t->opt.n * t->opt.nstates;
    const double x = t->gs.acc ? 16.0 * (double)t->model.numel : 0.0;
    pt_metrics_write(&t->metrics, "memory",
                     "\"param_bytes\": %.0f, \"grad_bytes\": %.0f, \"optim_bytes\": %.0f, "
                     "\"exact_acc_bytes\": %.0f, \"zero\": %lld",
                     p, g, o, x, (long long)t->cfg->zero);
    if (!t->cfg->quiet)
        pt_log_info("memory per rank: parameters %.1f MiB, gradients %.1f MiB, optimizer state "
                    "%.1f MiB (%s)%s",
                    p / mib, g / mib, o / mib,
                    t->cfg->zero ? "ZeRO-1: this rank's shard" : "replicated",
                    t->gs.acc ? ", exact accumulator" : "");
    if (!t->cfg->quiet && t->gs.acc) pt_log_info("  exact accumulator %.1f MiB", x / mib);
}

static void fill_meta(const trainer *t, pt_ckpt_meta *meta)
{
    memset(meta, 0, sizeof *meta);
    meta->step = t->step;
    meta->epoch = t->step / t->steps_per_epoch;
    meta->step_in_epoch = t->step % t->steps_per_epoch;
    meta->seed = t->cfg->seed;
    meta->dp_size = t->size;
    meta->es_best = t->es.best;
    meta->es_best_step = t->es.best_step;
    meta->es_bad_evals = t->es.bad_evals;
    pt_train_config_dump(t->cfg, meta->config, sizeof meta->config);
}

static pt_status save_checkpoint(trainer *t, char *path_out)
{
    char path[PT_PATH_MAX]; /* the written file, for the log and the metrics record */
    pt_ckpt_meta meta;
    fill_meta(t, &meta);
    PT_TRY(average_buffers(&t->model, t->comm));
    /* per-rank state a bitwise resume needs: compression's residual and DGC momentum */
    pt_ckpt_rank_states rs = {.n = t->model.numel};
    rs.count = pt_compressor_states(&t->z, rs.name, rs.data, PT_CKPT_MAX_RANK_STATES);
    /* collective HDF5 writes and closes cannot be bounded one by one: the armed watchdog bounds
     * the save (every agreement inside it that completes counts as progress) */
    pt_watchdog_arm("collective HDF5 I/O", "writing a checkpoint (pt_ckpt_save)", -1);
    pt_status st = pt_ckpt_save_ex(t->comm, t->cfg->ckpt_dir, &t->model, &t->opt, &meta, &rs, path);
    pt_watchdog_disarm();
    PT_TRY(st);
    pt_metrics_write(&t->metrics, "checkpoint", "\"step\": %lld, \"epoch\": %.4f, \"path\": \"%s\"",
                     (long long)t->step, (double)t->step / (double)t->steps_per_epoch, path);
    if (!t->cfg->quiet) pt_log_info("checkpoint %s", path);
    if (path_out) memcpy(path_out, path, strlen(path) + 1);
    return PT_OK;
}

/* Checks that a checkpoint's metadata fits this run (local). */
static pt_status check_meta(trainer *t, const char *path, const pt_ckpt_meta *m)
{
    const pt_train_config *c = t->cfg;
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
    if (st == PT_OK && meta.step_in_epoch != meta.step % t->steps_per_epoch)
        st = PT_ERR(PT_ERR_MISMATCH, "resume with the same --batch and data",
                    "checkpoint '%s' stopped at step %lld of epoch %lld, which does not fit %lld "
                    "steps per epoch",
                    path, (long long)meta.step, (long long)meta.epoch, (long long)t->steps_per_epoch);
    return st;
}

/* Loads a checkpoint on every rank (resharding the optimizer state to this run's ranks) and
 * checks that it fits this run. Collective. */
static pt_status load_checked(trainer *t, const char *path, pt_ckpt_meta *meta)
{
    pt_status st = pt_ckpt_load(t->comm, path, &t->model, &t->opt, meta);
    if (st == PT_OK) st = check_meta(t, path, meta);
    return pt_agree(t->comm, st, NULL);
}

/* --resume auto: rank 0 verifies the checkpoints of --ckpt-dir newest first (every checksum,
 * and the metadata against this run) and skips, with a warning, any that fails; every rank then
 * loads the one chosen. None: start fresh. */
static pt_status choose_auto(trainer *t, char *path)
{
    const pt_train_config *c = t->cfg;
    path[0] = '\0';
    pt_status st = PT_OK;
    if (t->rank == 0) {
        int64_t *steps;
        int n;
        st = pt_ckpt_list(c->ckpt_dir, &steps, &n);
        for (int i = 0; st == PT_OK && i < n && !path[0]; i++) {
            char cand[PT_PATH_MAX + 32];
            snprintf(cand, sizeof cand, "%s/step_%08lld.h5", c->ckpt_dir, (long long)steps[i]);
            pt_ckpt_meta meta;
            if (strlen(cand) < PT_PATH_MAX && pt_ckpt_verify(cand, &meta) == PT_OK &&
                check_meta(t, cand, &meta) == PT_OK)
                memcpy(path, cand, strlen(cand) + 1);
            else
                pt_log_warn("--resume auto: skipping %s: %s", cand, pt_error_message());
        }
        free(steps);
    }
    PT_TRY(pt_agree(t->comm, st, NULL));
    PT_TRY(pt_mpi_bcast(path, PT_PATH_MAX, MPI_CHAR, 0, t->comm, "the checkpoint --resume auto chose"));
    return PT_OK;
}

static pt_status resume(trainer *t)
{
    const pt_train_config *c = t->cfg;
    char path[PT_PATH_MAX];
    pt_status st = PT_OK;
    if ((!strcmp(c->resume, "latest") || !strcmp(c->resume, "auto")) && !c->ckpt_dir[0])
        return PT_ERR(PT_ERR_ARG, "give --ckpt-dir DIR", "--resume %s needs --ckpt-dir", c->resume);
    if (!strcmp(c->resume, "auto")) {
        PT_TRY(choose_auto(t, path));
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
    PT_TRY(pt_agree(t->comm, st, NULL));
    PT_TRY(load_checked(t, path, &meta));
    pt_ckpt_rank_states rs = {.n = t->model.numel};
    rs.count = pt_compressor_states(&t->z, rs.name, rs.data, PT_CKPT_MAX_RANK_STATES);
    int found = 0;
    PT_TRY(pt_ckpt_load_rank_states(t->comm, path, &rs, &found));
    if (rs.count && !found) {
        pt_compressor_reset(&t->z);
        if (!c->quiet && t->rank == 0)
            pt_log_warn("--resume: %s has no error-feedback residual%s for %d ranks; %s from zero",
                        path, t->z.velocity ? " and DGC momentum" : "", t->size,
                        t->z.velocity ? "they start" : "it starts");
    }
    t->step = meta.step;
    t->es.best = meta.es_best, t->es.best_step = meta.es_best_step;
    t->es.bad_evals = meta.es_bad_evals;
    if (!c->quiet)
        pt_log_info("resumed from %s at step %lld (written by %d rank%s, read by %d)", path,
                    (long long)t->step, meta.dp_size, meta.dp_size == 1 ? "" : "s", t->size);
    return PT_OK;
}

/* Validation (and early stopping): sets *stop when training should end. */
static pt_status validate(trainer *t, bool *stop, double *loss_out, double *acc_out)
{
    *stop = false;
    if (!t->have_val) return PT_OK;
    /* test hooks (docs/FAULTS.md): a SIGTERM, or a delay, in the middle of an evaluation */
    if (pt_fault_at("signal-in-eval", t->step, t->rank)) raise(SIGTERM);
    pt_fault_delay("slow-eval", t->rank);
    double loss, acc;
    PT_TRY(pt_evaluate(&t->model, &t->val, t->comm, t->cfg->eval_batch, &loss, &acc));
    double ep = (double)t->step / (double)t->steps_per_epoch;
    pt_metrics_write(&t->metrics, "eval",
                     "\"step\": %lld, \"epoch\": %.4f, \"split\": \"val\", \"loss\": %.6f, "
                     "\"accuracy\": %.6f, \"samples\": %lld",
                     (long long)t->step, ep, loss, acc, (long long)t->val.count);
    if (!t->cfg->quiet)
        pt_log_info("eval  epoch %.2f step %lld  val loss %.4f  val accuracy %.4f", ep,
                    (long long)t->step, loss, acc);
    if (loss_out) *loss_out = loss, *acc_out = acc;
    *stop = pt_early_stop_update(&t->es, acc, t->step);
    if (*stop && !t->cfg->quiet)
        pt_log_info("early stop: no better validation accuracy for %d evaluations (best %.4f at "
                    "step %lld)",
                    t->es.patience, t->es.best, (long long)t->es.best_step);
    return PT_OK;
}

/* Preemption: the handler only records the signal; the training loop checks it every step, in
 * the same allreduce that carries the loss, so every rank stops after the same step. */
static volatile sig_atomic_t preempt_signal = 0;
static void on_preempt(int sig) { preempt_signal = sig; }

/* Share of the gradient collectives' lifetime (first start to last completion) that ran
 * alongside backward: 1 - exposed / span (0 without buckets). An upper bound on what was hidden:
 * a collective progresses only inside MPI calls here, so a long span can be idle waiting; the
 * step time saved against no buckets (benchmarks/bench_overlap.sh) is the measured answer. */
static double hidden_fraction(double span, double exposed)
{
    if (!(span > 0)) return 0.0;
    double h = 1.0 - exposed / span;
    return h < 0 ? 0.0 : h;
}

static pt_status run(trainer *t, pt_train_result *res)
{
    const pt_train_config *c = t->cfg;
    const int64_t B = c->batch;
    int64_t my_off, my_rows;
    pt_batch_share(B, t->rank, t->size, &my_off, &my_rows);
    const int64_t S = t->train.sample_size;
    t->x = malloc(sizeof(float) * (size_t)(my_rows * S + 1));
    t->y = malloc(sizeof(int32_t) * (size_t)(my_rows + 1));
    t->idx = malloc(sizeof(int64_t) * (size_t)(my_rows + 1));
    if (!t->x || !t->y || !t->idx) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the batch");
    PT_TRY(pt_sampler_init(&t->sampler, t->train.count, c->seed, true));

    const pt_backend *be = t->model.be;
    const int64_t log_every = c->log_every > 0 ? c->log_every : 50;
    const int64_t eval_every = c->eval_every > 0 ? c->eval_every : t->steps_per_epoch;
    /* Throughput counts step time only (read, compute, allreduce, update): evaluation, logging and
     * checkpoints are left out of samples/s. */
    double t_start = pt_now(), int_time = 0.0, train_time = 0.0, grad_norm = NAN;
    double ph[4] = {0, 0, 0, 0}; /* seconds in: data, compute, communication, update */
    double comm_span = 0, comm_exposed = 0, int_span = 0, int_exposed = 0; /* gradient buckets */
    double int_early = 0; /* buckets started before backward's last layer (grad_sync.c) */
    int64_t int_steps = 0, start_step = t->step;
    /* gradient bytes this rank sent and received (paratrain's own messages), and top-k's k */
    double int_sent = 0, int_recv = 0, int_k = 0, tot_sent = 0;
    double int_loss = 0.0;
    bool stop = false;

    const int64_t end = c->stop_at > 0 && c->stop_at < t->total_steps ? c->stop_at : t->total_steps;
    res->final_val_loss = res->final_val_accuracy = res->test_loss = res->test_accuracy = NAN;
    if (t->step >= t->total_steps) { /* resumed from the end of the run: nothing is rewritten */
        res->steps = t->step;
        res->finished_before = 1;
        return PT_OK;
    }
    while (t->step < end && !stop) {
        const int64_t epoch = t->step / t->steps_per_epoch, pos = t->step % t->steps_per_epoch;
        pt_fault_stop_point("step", t->step); /* PT_FAULT_STOP=R:STEP:step (tests/test_hang.sh) */
        pt_fault_delay("step-delay", t->rank); /* test hook: a wider window for signals */
        double t0 = pt_now();
        pt_sampler_set_epoch(&t->sampler, epoch);
        const int64_t *gb = t->sampler.perm + pos * B;
        memcpy(t->idx, gb + my_off, sizeof(int64_t) * (size_t)my_rows);
        pt_status local = pt_dataset_read(&t->train, t->idx, (int)my_rows, t->x, t->y);
        if (local == PT_OK && t->aug_tmp) augment_batch(t, my_rows, my_off);
        double t1 = pt_now();
        pt_fwd_ctx ctx = {.train = 1, .seed = c->seed, .step = t->step, .row_offset = my_off};
        /* loss sum, read failure, preemption, exact-accumulator overflow */
        double lstat[4] = {0.0, local != PT_OK ? 1.0 : 0.0, preempt_signal ? 1.0 : 0.0, 0.0};
        pt_grad_sync_begin(&t->gs);
        if (local == PT_OK && my_rows > 0 && c->reproducible) {
            /* fixed chunks of the global batch, each its own forward/backward: a chunk's gradient
             * is then the same bits whichever rank computes it */
            const int64_t ch = c->repro_chunk;
            for (int64_t r0 = 0; r0 < my_rows; r0 += ch) {
                ctx.row_offset = my_off + r0;
                pt_model_forward(&t->model, t->x + r0 * S, (int)ch, &ctx);
                lstat[0] += pt_model_loss_backward(&t->model, t->y + r0, (int)ch, &ctx,
                                                   1.0f / (float)B, NULL);
                pt_grad_sync_exact_add(&t->gs, r0 == 0);
            }
            lstat[3] = (double)t->gs.exact_overflow;
        } else if (local == PT_OK && my_rows > 0) {
            pt_model_forward(&t->model, t->x, (int)my_rows, &ctx);
            lstat[0] = pt_model_loss_backward(&t->model, t->y, (int)my_rows, &ctx,
                                              1.0f / (float)B, NULL);
        } else {
            be->zero(t->model.g, sizeof(float) * (size_t)t->model.numel);
            if (c->reproducible) pt_grad_sync_exact_add(&t->gs, true);
        }
        /* an op's failure (sync batch norm's allreduce) stops every rank after this step, as a
         * read failure does */
        if (local == PT_OK && my_rows > 0 && (local = pt_model_status(&t->model)) != PT_OK)
            lstat[1] = 1.0;
        double t2 = pt_now(), wait_s = 0.0;
        t->gs.epoch = (double)t->step / (double)t->steps_per_epoch;
        const uint64_t sent0 = t->pc.bytes_sent, recv0 = t->pc.bytes_recv;
        PT_TRY(pt_grad_sync_finish(&t->gs, &wait_s));
        int_sent += (double)(t->pc.bytes_sent - sent0), int_recv += (double)(t->pc.bytes_recv - recv0);
        tot_sent += (double)(t->pc.bytes_sent - sent0);
        int_k += (double)(t->z.cfg.kind == PT_COMPRESS_TOPK ? t->z.k : t->model.numel);
        if (c->reproducible) PT_TRY(pt_grad_sync_exact_reduce(&t->gs));
        PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, lstat, 4, MPI_DOUBLE, MPI_SUM, t->comm,
                                "the loss and status flags of a step"));
        double t3 = pt_now();
        if (lstat[1] > 0) return pt_agree(t->comm, local, NULL);
        const double loss = lstat[0] / (double)B;
        if (!isfinite(loss) || lstat[3] > 0)
            return PT_ERR(PT_ERR_DATA, "lower --lr, add --clip-norm, or check the data",
                          "training diverged: loss is %g at step %lld%s", loss, (long long)t->step,
                          lstat[3] > 0 ? " (gradients beyond the exact accumulator's 2^24)" : "");
        /* The norm is a full pass over the gradient: only when clipping or logging needs it. */
        const bool log_now = (t->step + 1) % log_every == 0 || t->step + 1 == end;
        if ((c->clip_norm > 0 && !c->dgc) || log_now) { /* --dgc clips locally instead */
            double ss;
            PT_TRY(pt_grad_sync_sum_squares(&t->gs, &ss));
            grad_norm = sqrt(ss);
            int64_t goff, gn;
            float *g = pt_grad_sync_grad(&t->gs, &goff, &gn);
            if (!c->dgc) pt_clip_grad_scale(be, g, gn, grad_norm, c->clip_norm);
        }
        const float lr = pt_schedule_lr(&t->sched, t->step);
        PT_TRY(pt_grad_sync_update(&t->gs, &t->opt, lr));
        t->step++;
        double t4 = pt_now();
        /* compute excludes the collective calls made from backward; comm is what the step
         * waited for communication (exposed); span is first bucket start to last completion */
        const double calls = t->gs.t_calls, exposed = calls + wait_s;
        const double span = t->size > 1 ? t->gs.t_last_done - t->gs.t_first : 0.0;
        ph[0] += t1 - t0, ph[1] += t2 - t1 - calls, ph[2] += exposed + (t3 - t2 - wait_s);
        ph[3] += t4 - t3;
        comm_span += span, comm_exposed += exposed;
        int_span += span, int_exposed += exposed, int_early += t->gs.started_early;
        const double dt_step = t4 - t0;
        train_time += dt_step, int_time += dt_step;
        int_steps++, int_loss += loss;

        const bool last = t->step == end;
        if (log_now) {
            double now = pt_now();
            double sps = int_time > 0 ? (double)(int_steps * B) / int_time : 0.0;
            double ep = (double)t->step / (double)t->steps_per_epoch;
            double per_step = (now - t_start) / (double)(t->step - start_step);
            char eta[32], bytes[160] = "";
            /* bytes per step, the mean over the ranks, next to what a dense ring allreduce sends
             * (2(p-1)/p 4n) and top-k's bound (2k(p-1)/p pairs of 8 bytes) */
            double b[4] = {int_sent, int_recv, tot_sent, int_k};
            PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, b, 4, MPI_DOUBLE, MPI_SUM, t->comm,
                                    "the byte counts of a log line"));
            const double P = (double)t->size, per = 1.0 / ((double)int_steps * P);
            const double sent_ps = b[0] * per, recv_ps = b[1] * per, k_ps = b[3] * per;
            const double dense_ps = 2.0 * (P - 1) / P * 4.0 * (double)t->model.numel;
            const double bound_ps = 2.0 * k_ps * (P - 1) / P * 8.0;
            if (t->z.cfg.kind == PT_COMPRESS_TOPK)
                snprintf(bytes, sizeof bytes, "  sent %.3g MB/step (dense %.3g, bound 2k(p-1)/p %.3g)",
                         sent_ps / 1e6, dense_ps / 1e6, bound_ps / 1e6);
            else if (t->z.cfg.kind != PT_COMPRESS_NONE)
                snprintf(bytes, sizeof bytes, "  sent %.3g MB/step (dense %.3g)", sent_ps / 1e6,
                         dense_ps / 1e6);
            fmt_duration(per_step * (double)(t->total_steps - t->step), eta, sizeof eta);
            pt_metrics_write(&t->metrics, "train",
                             "\"step\": %lld, \"epoch\": %.4f, \"loss\": %.6f, \"lr\": %.6g, "
                             "\"grad_norm\": %.6g, \"samples_per_s\": %.1f, \"time_s\": %.3f, "
                             "\"grad_comm_s\": %.6f, \"grad_comm_exposed_s\": %.6f, "
                             "\"grad_comm_overlap\": %.4f, \"bytes_sent_per_step\": %.0f, "
                             "\"bytes_recv_per_step\": %.0f, \"dense_bytes_per_step\": %.0f, "
                             "\"bound_bytes_per_step\": %.0f, \"bytes_sent_total\": %.0f, "
                             "\"k_per_step\": %.0f, \"grad_buckets\": %d, "
                             "\"grad_buckets_early\": %.2f",
                             (long long)t->step, ep, int_loss / (double)int_steps, lr, grad_norm,
                             sps, now - t_start, int_span / (double)int_steps,
                             int_exposed / (double)int_steps, hidden_fraction(int_span, int_exposed),
                             sent_ps, recv_ps, dense_ps, bound_ps, b[2] / P, k_ps, t->gs.nbuckets,
                             int_early / (double)int_steps);
            if (!c->quiet)
                pt_log_info("epoch %lld/%lld  step %lld/%lld  loss %.4f  lr %.4g  %.0f samples/s  "
                            "ETA %s%s",
                            (long long)(epoch + 1),
                            (long long)((t->total_steps + t->steps_per_epoch - 1) /
                                        t->steps_per_epoch),
                            (long long)t->step, (long long)t->total_steps,
                            int_loss / (double)int_steps, lr, sps, eta, bytes);
            int_time = 0.0, int_steps = 0, int_loss = 0.0, int_span = 0.0, int_exposed = 0.0;
            int_early = 0.0;
            int_sent = int_recv = int_k = 0.0;
        }
        if (t->step % eval_every == 0 && !last) {
            PT_TRY(validate(t, &stop, NULL, NULL));
        }
        if (c->ckpt_dir[0] && c->ckpt_every > 0 && t->step % c->ckpt_every == 0 && !last) {
            PT_TRY(save_checkpoint(t, NULL));
        }
        if (lstat[2] > 0 && !last) { /* a rank was signalled: checkpoint and stop, all together */
            pt_log_info("preempted (signal received) after step %lld: %s", (long long)t->step,
                        c->ckpt_dir[0] ? "writing a checkpoint" : "no --ckpt-dir, nothing saved");
            if (c->ckpt_dir[0]) PT_TRY(save_checkpoint(t, res->checkpoint));
            res->preempted = 1;
            res->steps = t->step;
            res->train_seconds = train_time;
            return PT_OK;
        }
    }
    res->steps = t->step;
    res->train_seconds = train_time;
    for (int i = 0; i < 4; i++) res->phase_seconds[i] = ph[i];
    res->samples_per_s = train_time > 0 ? (double)((t->step - start_step) * B) / train_time : 0;

    res->final_val_loss = res->final_val_accuracy = res->test_loss = res->test_accuracy = NAN;
    if (end < t->total_steps && !stop) { /* interrupted on purpose: state only, as a kill would */
        if (c->ckpt_dir[0]) PT_TRY(save_checkpoint(t, res->checkpoint));
        res->stopped_at = 1;
        return PT_OK;
    }
    PT_TRY(validate(t, &stop, &res->final_val_loss, &res->final_val_accuracy));
    if (t->have_test) {
        PT_TRY(pt_evaluate(&t->model, &t->test, t->comm, c->eval_batch, &res->test_loss,
                           &res->test_accuracy));
        pt_metrics_write(&t->metrics, "eval",
                         "\"step\": %lld, \"epoch\": %.4f, \"split\": \"test\", \"loss\": %.6f, "
                         "\"accuracy\": %.6f, \"samples\": %lld",
                         (long long)t->step, (double)t->step / (double)t->steps_per_epoch,
                         res->test_loss, res->test_accuracy, (long long)t->test.count);
    }
    if (c->ckpt_dir[0]) PT_TRY(save_checkpoint(t, res->checkpoint));
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, &tot_sent, 1, MPI_DOUBLE, MPI_SUM, t->comm,
                            "the bytes sent in the run"));
    /* Do the replicas agree? max |w - w of rank 0| over ranks and elements: data parallelism
     * keeps them bitwise equal; a checkpoint cannot show it (each rank writes only its slice). */
    double spread = 0.0;
    if (t->size > 1) {
        const int64_t n = t->model.numel;
        float *w = malloc(sizeof(float) * (size_t)(2 * n + 1));
        if (!w) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory to compare the replicas");
        be->to_host(w, t->model.w, sizeof(float) * (size_t)n);
        memcpy(w + n, w, sizeof(float) * (size_t)n);
        /* numel < 2^31 (a float count) */
        pt_status st = pt_mpi_bcast(w + n, (int)n, MPI_FLOAT, 0, t->comm,
                                    "rank 0's parameters, to compare the replicas");
        for (int64_t i = 0; i < n && st == PT_OK; i++) {
            const double d = fabs((double)w[i] - (double)w[n + i]);
            if (!(d <= spread)) spread = d == d ? d : INFINITY;
        }
        free(w);
        PT_TRY(st);
        PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, &spread, 1, MPI_DOUBLE, MPI_MAX, t->comm,
                                "the largest difference between the replicas"));
    }
    pt_metrics_write(&t->metrics, "end",
                     "\"step\": %lld, \"epoch\": %.4f, \"train_seconds\": %.3f, "
                     "\"samples_per_s\": %.1f, \"test_accuracy\": %.6f, \"data_s\": %.3f, "
                     "\"compute_s\": %.3f, \"comm_s\": %.3f, \"update_s\": %.3f, "
                     "\"grad_comm_span_s\": %.3f, \"grad_comm_exposed_s\": %.3f, "
                     "\"grad_comm_overlap\": %.4f, \"bytes_sent_total\": %.0f, "
                     "\"replica_max_diff\": %.6g",
                     (long long)t->step, (double)t->step / (double)t->steps_per_epoch,
                     res->train_seconds, res->samples_per_s, t->have_test ? res->test_accuracy : NAN,
                     ph[0], ph[1], ph[2], ph[3], comm_span, comm_exposed,
                     hidden_fraction(comm_span, comm_exposed), tot_sent / (double)t->size, spread);
    return PT_OK;
}

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
 * there, --resume PATH that does not exist, the directory of --metrics. Rank 0 checks; all
 * ranks agree. */
static pt_status check_paths(trainer *t)
{
    const pt_train_config *c = t->cfg;
    pt_status st = PT_OK;
    if (t->rank == 0) {
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
    return pt_agree(t->comm, st, NULL);
}

static pt_status open_split(trainer *t, pt_dataset *d, const char *split, bool *have)
{
    /* val/test are optional: a data directory with an empty split simply has none. */
    *have = false;
    pt_watchdog_arm("collective HDF5 I/O", "opening the data shards (pt_dataset_open)", -1);
    pt_status st = pt_dataset_open(d, t->cfg->data, split, t->comm, t->cfg->validate_data);
    pt_watchdog_disarm();
    if (st != PT_OK) return st;
    *have = d->count > 0;
    return PT_OK;
}

pt_status pt_train(const pt_train_config *c, MPI_Comm comm, pt_train_result *res)
{
    memset(res, 0, sizeof *res);
    /* From the start, so a signal during set-up (data validation, model build) still ends in a
     * clean preemption at the first step instead of killing the rank. */
    struct sigaction sa = {0}, old_term, old_usr1;
    sa.sa_handler = on_preempt;
    sigemptyset(&sa.sa_mask);
    preempt_signal = 0;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGUSR1, &sa, &old_usr1);
    trainer *t = calloc(1, sizeof *t);
    if (!t) {
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGUSR1, &old_usr1, NULL);
        return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate the trainer");
    }
    t->cfg = c, t->comm = comm;
    pt_status st = PT_OK;
    PT_TRY_GOTO(st, pt_comm_init(&t->pc, comm), out); /* first: `out` frees what it set up */
    /* the same on every rank: no agreement needed */
    PT_TRY_GOTO(st, pt_train_config_check(c), out);
    t->rank = t->pc.rank, t->size = t->pc.size;
    PT_TRY_GOTO(st, pt_allreduce_algo_parse(c->allreduce, &t->pc.algo), out);
    if (c->batch < t->size || c->batch > (1 << 24)) {
        st = PT_ERR(PT_ERR_ARG, "every rank needs at least one sample per step",
                    "--batch %lld is outside [number of ranks = %d, 2^24]", (long long)c->batch,
                    t->size);
        goto out;
    }
    if (c->reproducible) {
        const int64_t ch = c->repro_chunk;
        if (ch <= 0 || c->batch % ((int64_t)t->size * ch) != 0) {
            st = PT_ERR(PT_ERR_ARG, "choose --batch a multiple of ranks x --repro-chunk",
                        "--reproducible splits the global batch %lld into chunks of %lld samples, "
                        "an equal number per rank, but %d rank%s cannot share them evenly",
                        (long long)c->batch, (long long)ch, t->size, t->size == 1 ? "" : "s");
            goto out;
        }
        if (c->batch / ch > 128) {
            st = PT_ERR(PT_ERR_ARG, "raise --repro-chunk",
                        "--reproducible allows at most 128 chunks per step (the exact "
                        "accumulator's headroom); --batch %lld / --repro-chunk %lld is %lld",
                        (long long)c->batch, (long long)ch, (long long)(c->batch / ch));
            goto out;
        }
    }
    PT_TRY_GOTO(st, check_paths(t), out);
    PT_TRY_GOTO(st, open_split(t, &t->train, "train", &(bool){0}), out);
    PT_TRY_GOTO(st, open_split(t, &t->val, "val", &t->have_val), out);
    PT_TRY_GOTO(st, open_split(t, &t->test, "test", &t->have_test), out);
    t->steps_per_epoch = t->train.count / c->batch;
    if (t->steps_per_epoch == 0) {
        st = PT_ERR(PT_ERR_ARG, "lower --batch", "--batch %lld is larger than the %lld training samples",
                    (long long)c->batch, (long long)t->train.count);
        goto out;
    }
    t->total_steps = c->max_steps > 0 ? c->max_steps : c->epochs * t->steps_per_epoch;
    if (t->total_steps <= 0) { /* pt_train_config_check refused 0 and 0 already */
        st = PT_ERR(PT_ERR_INTERNAL, NULL, "no steps to train (--epochs %lld, --max-steps %lld)",
                    (long long)c->epochs, (long long)c->max_steps);
        goto out;
    }
    if (c->zero != 0 && c->zero != 1) {
        st = PT_ERR(PT_ERR_ARG, "ZeRO stage 1 shards the optimizer state; 0 turns it off",
                    "--zero %lld is not supported (0 or 1)", (long long)c->zero);
        goto out;
    }
    if (!(c->bucket_mb >= 0) || c->bucket_mb > 65536) {
        st = PT_ERR(PT_ERR_ARG, "give a size in MiB, 0 for no buckets", "--bucket-mb %g is out of range",
                    c->bucket_mb);
        goto out;
    }
    int64_t my_off, my_rows;
    pt_batch_share(c->batch, t->rank, t->size, &my_off, &my_rows);
    int64_t max_rows = my_rows > c->eval_batch ? my_rows : c->eval_batch;
    st = build_model(&t->model, c, &t->train, (int)max_rows);
    PT_TRY_GOTO(st, pt_agree(comm, st, NULL), out);
    st = pt_model_init(&t->model, c->seed);
    PT_TRY_GOTO(st, pt_agree(comm, st, NULL), out);
    t->model.allreduce_sum = sum_over_ranks;
    t->model.allreduce_arg = &t->comm;
    if (c->reproducible && pt_model_has_batchnorm(&t->model)) {
        st = PT_ERR(PT_ERR_ARG, "train batch-norm models without --reproducible",
                    "--reproducible computes the batch in chunks, which would change what batch "
                    "norm normalizes over; '%s' has batch norm", c->model);
        PT_TRY_GOTO(st, pt_agree(comm, st, NULL), out);
    }
    /* With the node-aware allreduce, gradients live in node shared memory: the allreduce then
     * reads and writes the peers' gradient buffers directly (zero copy). */
    /* Under ZeRO-1 on one node the parameters go there too: the shards are then reduced and
     * gathered by reading the peers' buffers directly (grad_sync.c). */
    if (t->size > 1 && !strcmp(t->model.be->name, "cpu") && t->pc.uniform &&
        (t->pc.algo == PT_ALLREDUCE_AUTO || t->pc.algo == PT_ALLREDUCE_HIERARCHICAL)) {
        void *g = NULL;
        const bool both = c->zero == 1 && t->pc.nnodes == 1 && !c->reproducible;
        st = pt_comm_buffer_alloc(&t->pc, sizeof(float) * (size_t)t->model.numel * (both ? 2 : 1), &g);
        PT_TRY_GOTO(st, pt_agree(comm, st, NULL), out);
        pt_model_use_grad_buffer(&t->model, g);
        if (both) pt_model_use_param_buffer(&t->model, (float *)g + t->model.numel);
    }
    st = pt_grad_sync_init(&t->gs, &t->pc, &t->model, c->zero == 1, c->reproducible, c->bucket_mb);
    PT_TRY_GOTO(st, pt_agree(comm, st, NULL), out);
    st = make_optimizer(t);
    PT_TRY_GOTO(st, pt_agree(comm, st, NULL), out);
    st = make_compressor(t);
    PT_TRY_GOTO(st, pt_agree(comm, st, NULL), out);
    st = parse_augment(t);
    PT_TRY_GOTO(st, pt_agree(comm, st, NULL), out);
    pt_early_stop_init(&t->es, (int)c->early_stop, true);
    if (c->resume[0]) PT_TRY_GOTO(st, resume(t), out);
    st = pt_metrics_open(&t->metrics, c->metrics, c->resume[0] != 0, t->rank);
    PT_TRY_GOTO(st, pt_agree(comm, st, NULL), out);
    report_memory(t);
    /* OpenMP threads per rank, fewest and most over the ranks (what tests of 2 threads check) */
    int thr[2] = {omp_get_max_threads(), -omp_get_max_threads()};
    st = pt_mpi_allreduce(MPI_IN_PLACE, thr, 2, MPI_INT, MPI_MIN, comm, "the ranks' thread counts");
    if (st != PT_OK) goto out;
    pt_metrics_write(&t->metrics, "start",
                     "\"step\": %lld, \"epoch\": %.4f, \"ranks\": %d, \"model\": \"%s\", "
                     "\"params\": %lld, \"optimizer\": \"%s\", \"batch\": %lld, "
                     "\"steps_per_epoch\": %lld, \"total_steps\": %lld, \"threads_min\": %d, "
                     "\"threads_max\": %d",
                     (long long)t->step, (double)t->step / (double)t->steps_per_epoch, t->size,
                     c->model, (long long)t->model.numel, pt_optim_name(&t->opt.cfg),
                     (long long)c->batch, (long long)t->steps_per_epoch, (long long)t->total_steps,
                     thr[0], -thr[1]);
    if (!c->quiet)
        pt_log_info("paratrain: %d rank%s, model %s (%lld parameters), %s, global batch %lld, "
                    "%lld train / %lld val / %lld test samples, %lld steps",
                    t->size, t->size > 1 ? "s" : "", c->model, (long long)t->model.numel,
                    pt_optim_name(&t->opt.cfg), (long long)c->batch, (long long)t->train.count,
                    (long long)t->val.count, (long long)t->test.count, (long long)t->total_steps);
    st = run(t, res);
out:
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    pt_metrics_close(&t->metrics);
    if (pt_watchdog_peer_lost()) {
        /* A peer stopped: freeing windows or closing shared files would wait for it forever, and
         * requests of the failed collective may still point at the model's buffers. Leave it all
         * to the end of the process (the program exits with PT_EXIT_PEER_LOST). */
        return st;
    }
    pt_fault_stop_point("comm-free", t->step); /* PT_FAULT_STOP: a rank stops before the free */
    pt_status fst = pt_comm_free(&t->pc);
    if (fst != PT_OK) {
        if (st == PT_OK) st = fst;
        return st; /* a peer is gone (named in the message): nothing more is freed */
    }
    pt_sampler_free(&t->sampler);
    free(t->x), free(t->y), free(t->idx);
    pt_grad_sync_free(&t->gs);
    pt_compressor_free(&t->z);
    free(t->aug_tmp);
    pt_optim_destroy(&t->opt);
    pt_model_destroy(&t->model);
    pt_watchdog_arm("collective HDF5 I/O", "closing the data shards (H5Fclose)", -1);
    pt_dataset_close(&t->train), pt_dataset_close(&t->val), pt_dataset_close(&t->test);
    pt_watchdog_disarm();
    free(t);
    return st;
}

pt_status pt_eval_checkpoint(const char *ckpt, const pt_train_config *ov, const char *split,
                             MPI_Comm comm, double *loss, double *accuracy)
{
    char path[PT_PATH_MAX];
    pt_ckpt_meta meta;
    pt_train_config c;
    pt_train_config_defaults(&c);
    pt_status st = pt_ckpt_resolve(ckpt, path, sizeof path);
    if (st == PT_OK) st = pt_ckpt_read_meta(path, &meta, NULL, 0, NULL, 0);
    PT_TRY(pt_agree(comm, st, NULL));
    /* The checkpoint's own configuration (model, activation, data) unless overridden. */
    char *line = meta.config;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        char *eq = strstr(line, " = ");
        if (eq) {
            *eq = '\0';
            if (pt_train_config_has(line)) pt_train_config_set(&c, line, eq + 3);
        }
        line = nl ? nl + 1 : NULL;
    }
    if (ov->data[0]) snprintf(c.data, sizeof c.data, "%s", ov->data);
    if (ov->eval_batch > 0) c.eval_batch = ov->eval_batch;
    snprintf(c.backend, sizeof c.backend, "%s", ov->backend);
    pt_dataset d;
    pt_watchdog_arm("collective HDF5 I/O", "opening the data shards (pt_dataset_open)", -1);
    st = pt_dataset_open(&d, c.data, split, comm, ov->validate_data);
    pt_watchdog_disarm();
    PT_TRY(st);
    pt_model m;
    st = build_model(&m, &c, &d, (int)c.eval_batch);
    if (st == PT_OK) {
        st = pt_ckpt_load(MPI_COMM_NULL, path, &m, NULL, &meta);
        if (st != PT_OK) pt_model_destroy(&m);
    }
    st = pt_agree(comm, st, NULL);
    if (st == PT_OK) {
        st = pt_evaluate(&m, &d, comm, c.eval_batch, loss, accuracy);
        pt_model_destroy(&m);
    }
    if (pt_watchdog_peer_lost()) return st; /* closing is collective: leave it (watchdog.h) */
    pt_watchdog_arm("collective HDF5 I/O", "closing the data shards (H5Fclose)", -1);
    pt_dataset_close(&d);
    pt_watchdog_disarm();
    return st;
}
