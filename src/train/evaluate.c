/* Evaluation: loss and accuracy on a split (the samples shared over dp), validation with early
 * stopping, and the evaluation of a checkpoint (paratrain eval). */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/agree.h"
#include "paratrain/ckpt.h"
#include "paratrain/fault.h"
#include "paratrain/log.h"
#include "paratrain/strategy.h"
#include "paratrain/train_state.h"
#include "paratrain/watchdog.h"

/* Running statistics of per-rank batch norm differ between ranks; evaluation and checkpoints
 * use their average over the replicas (comm), so every rank predicts alike and the checkpoint
 * holds one model. */
static pt_status average_buffers(pt_model *m, MPI_Comm comm)
{
    int size;
    PT_MPI_CHECK(MPI_Comm_size(comm, &size));
    if (!m->nbuf || size == 1) return PT_OK;
    /* the buffers are backend memory: staged on the host as floats, summed as doubles */
    const size_t bytes = sizeof(float) * (size_t)m->nbuf;
    double *s = malloc(sizeof(double) * (size_t)m->nbuf);
    float *h = malloc(bytes);
    if (!s || !h) {
        free(s), free(h);
        return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for batch-norm statistics");
    }
    m->be->to_host(h, m->buf, bytes);
    for (int64_t i = 0; i < m->nbuf; i++) s[i] = h[i];
    pt_status st = pt_mpi_allreduce(MPI_IN_PLACE, s, (int)m->nbuf, MPI_DOUBLE, MPI_SUM, comm,
                                    "averaging the batch-norm running statistics");
    if (st == PT_OK) {
        for (int64_t i = 0; i < m->nbuf; i++) h[i] = (float)(s[i] / size);
        m->be->to_device(m->buf, h, bytes);
    }
    free(s), free(h);
    return st;
}

pt_status pt_train_average_buffers(pt_train_state *s)
{
    return average_buffers(&s->model, s->dp->comm);
}

/* The rows one evaluation chunk holds: --eval-batch (0: all the model's buffers hold), never more
 * than the model was built for, so evaluation reuses the training buffers and needs no memory of
 * its own beyond the chunk's host copy. */
static int64_t eval_rows(const pt_model *m, int64_t batch)
{
    return batch < 1 || batch > m->max_batch ? m->max_batch : batch;
}

int64_t pt_train_eval_bytes(const pt_train_state *s)
{
    const int64_t rows = eval_rows(&s->model, s->cfg->eval_batch);
    return rows * (int64_t)(sizeof(float) * (size_t)s->train.sample_size + sizeof(int32_t) +
                            sizeof(int64_t));
}

/* The samples of d are shared over the ranks of share (share_rank of share_size); every rank
 * of a tp group evaluates the same ones, and only `counts` ranks (one per tp group) add theirs
 * to the sums over the world. The metrics do not depend on the chunk size: the loss is summed
 * per chunk in double, the accuracy counted exactly. */
static pt_status evaluate(pt_model *m, pt_dataset *d, MPI_Comm world, int share_rank,
                          int share_size, bool counts, int64_t batch, double *loss,
                          double *accuracy)
{
    batch = eval_rows(m, batch);
    int64_t off, cnt;
    pt_batch_share(d->count, share_rank, share_size, &off, &cnt);
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
    PT_TRY(pt_agree(world, st, NULL));
    if (!counts) acc[0] = acc[1] = acc[2] = 0.0;
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, acc, 3, MPI_DOUBLE, MPI_SUM, world,
                            "the loss and accuracy of an evaluation"));
    *loss = acc[2] > 0 ? acc[0] / acc[2] : NAN;
    *accuracy = acc[2] > 0 ? acc[1] / (acc[2] * pt_model_targets(m)) : NAN;
    return PT_OK;
}

pt_status pt_evaluate(pt_model *m, pt_dataset *d, MPI_Comm comm, int64_t batch, double *loss,
                      double *accuracy)
{
    int rank, size;
    PT_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    PT_MPI_CHECK(MPI_Comm_size(comm, &size));
    if (batch < 0)
        return PT_ERR(PT_ERR_ARG, "give --eval-batch 0 (the training batch) or more",
                      "evaluation batch %lld is negative", (long long)batch);
    PT_TRY(average_buffers(m, comm));
    return evaluate(m, d, comm, rank, size, true, batch, loss, accuracy);
}

pt_status pt_train_evaluate(pt_train_state *s, pt_dataset *d, double *loss, double *accuracy)
{
    if (s->cfg->eval_batch < 0)
        return PT_ERR(PT_ERR_ARG, "give --eval-batch 0 (the training batch) or more",
                      "evaluation batch %lld is negative", (long long)s->cfg->eval_batch);
    PT_TRY(pt_train_average_buffers(s));
    /* pipeline stages hold only their own parameters current: gather the whole model first;
     * every stage then evaluates, and stage 0 counts */
    if (s->strategy && s->strategy->gather) PT_TRY(s->strategy->gather(s));
    return evaluate(&s->model, d, s->world, s->dp_rank, s->dp_size,
                    s->grid.coord[PT_AXIS_TP] == 0 && s->grid.coord[PT_AXIS_PP] == 0,
                    s->cfg->eval_batch, loss, accuracy);
}

pt_status pt_train_validate(pt_train_state *s, bool *stop, double *loss_out, double *acc_out)
{
    *stop = false;
    if (!s->have_val) return PT_OK;
    /* test hooks (docs/FAULTS.md): a SIGTERM, or a delay, in the middle of an evaluation */
    if (pt_fault_at("signal-in-eval", s->step, s->world_rank)) raise(SIGTERM);
    pt_fault_delay("slow-eval", s->world_rank);
    double loss, acc;
    PT_TRY(pt_train_evaluate(s, &s->val, &loss, &acc));
    double ep = (double)s->step / (double)s->steps_per_epoch;
    pt_metrics_write(&s->metrics, "eval",
                     "\"step\": %lld, \"epoch\": %.4f, \"split\": \"val\", \"loss\": %.6f, "
                     "\"accuracy\": %.6f, \"samples\": %lld",
                     (long long)s->step, ep, loss, acc, (long long)s->val.count);
    if (!s->cfg->quiet)
        pt_log_info("eval  epoch %.2f step %lld  val loss %.4f  val accuracy %.4f", ep,
                    (long long)s->step, loss, acc);
    if (loss_out) *loss_out = loss, *acc_out = acc;
    *stop = pt_early_stop_update(&s->es, acc, s->step);
    if (*stop && !s->cfg->quiet)
        pt_log_info("early stop: no better validation accuracy for %d evaluations (best %.4f at "
                    "step %lld)",
                    s->es.patience, s->es.best, (long long)s->es.best_step);
    return PT_OK;
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
    /* the chunk: --eval-batch as given, else one rank's share of the training batch (what the
     * checkpoint's own eval-batch said is a training-time setting, and older checkpoints say
     * 1000, which for gpt needs gigabytes) */
    int csize;
    PT_MPI_CHECK(MPI_Comm_size(comm, &csize));
    c.eval_batch = ov->eval_batch > 0 ? ov->eval_batch : (c.batch + csize - 1) / csize;
    if (c.eval_batch < 1) c.eval_batch = 1;
    snprintf(c.backend, sizeof c.backend, "%s", ov->backend);
    pt_dataset d;
    pt_watchdog_arm("collective HDF5 I/O", "opening the data shards (pt_dataset_open)", -1);
    st = pt_dataset_open(&d, c.data, split, comm, ov->validate_data);
    pt_watchdog_disarm();
    PT_TRY(st);
    /* a chunk larger than this rank's share of the split would only hold empty rows */
    const int64_t share = (d.count + csize - 1) / csize;
    if (c.eval_batch > share) c.eval_batch = share > 0 ? share : 1;
    pt_model m;
    /* the whole model on every rank (data parallel evaluation): no tp group */
    st = pt_train_build_model_ex(&m, &c, &d, (int)c.eval_batch, NULL, true);
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
