/* What a training run reports: the memory per rank, the start record, the progress lines and
 * "train" records, and the end record (the metrics format is docs/METRICS.md). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/log.h"
#include "paratrain/lowp.h"
#include "paratrain/strategy.h"
#include "paratrain/watchdog.h"

static void fmt_duration(double s, char *buf, size_t len)
{
    if (!(s >= 0) || s > 1e7) s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

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

/* Memory per rank of the model's flat buffers, on the log and in the metrics' start record. */
void pt_train_report_memory(pt_train_state *s)
{
    const double mib = 1048576.0;
    pt_memory_bytes mb;
    s->strategy->memory(s, &mb);
    const double p = mb.param, g = mb.grad, o = mb.optim, x = mb.exact_acc, a = mb.activation;
    const double e = (double)pt_train_eval_bytes(s); /* evaluation's own (issue 20) */
    pt_metrics_write(&s->metrics, "memory",
                     "\"param_bytes\": %.0f, \"grad_bytes\": %.0f, \"optim_bytes\": %.0f, "
                     "\"exact_acc_bytes\": %.0f, \"activation_bytes\": %.0f, \"zero\": %lld, "
                     "\"tp\": %d, \"eval_bytes\": %.0f",
                     p, g, o, x, a, (long long)pt_train_zero_stage(s->cfg, s->dp_size),
                     s->grid.size[PT_AXIS_TP], e);
    if (!s->cfg->quiet)
        pt_log_info("memory per rank: parameters %.1f MiB, gradients %.1f MiB, optimizer state "
                    "%.1f MiB (%s), activations and saved state %.1f MiB%s, evaluation "
                    "%.1f MiB (chunks of %lld rows in the activations' buffers)%s",
                    p / mib, g / mib, o / mib,
                    pt_train_zero_stage(s->cfg, s->dp_size) ? "ZeRO-1: this rank's shard" : "replicated",
                    a / mib, s->grid.size[PT_AXIS_TP] > 1 ? " (tensor-parallel part)" : "", e / mib,
                    (long long)(s->cfg->eval_batch < 1 || s->cfg->eval_batch > s->model.max_batch
                                    ? s->model.max_batch : s->cfg->eval_batch),
                    x > 0 ? ", exact accumulator" : "");
    if (!s->cfg->quiet && x > 0) pt_log_info("  exact accumulator %.1f MiB", x / mib);
}

/* Bytes paratrain's own collectives sent on the tp group's pt_comm (the model's tp nodes, the
 * vocabulary-parallel cross-entropy's reductions, the grad_over_tp sum): the counter at the start
 * record and at the last train record, for the per-step figure of the train records. */
static uint64_t tp_sent_start, tp_sent_last;

pt_status pt_train_report_start(pt_train_state *s)
{
    const pt_train_config *c = s->cfg;
    tp_sent_start = tp_sent_last = s->tp->bytes_sent;
    /* OpenMP threads per rank, fewest and most over the ranks (what tests of 2 threads check) */
    int thr[2] = {omp_get_max_threads(), -omp_get_max_threads()};
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, thr, 2, MPI_INT, MPI_MIN, s->world, "the ranks' thread counts"));
    pt_metrics_write(&s->metrics, "start",
                     "\"step\": %lld, \"epoch\": %.4f, \"ranks\": %d, \"model\": \"%s\", "
                     "\"params\": %lld, \"optimizer\": \"%s\", \"batch\": %lld, "
                     "\"steps_per_epoch\": %lld, \"total_steps\": %lld, \"threads_min\": %d, "
                     "\"threads_max\": %d, \"dp\": %d, \"tp\": %d, \"pp\": %d, "
                     "\"grid_order\": \"%s\", \"precision\": \"%s\", \"lowp_gemm\": \"%s\"",
                     (long long)s->step, (double)s->step / (double)s->steps_per_epoch,
                     s->world_size, c->model, (long long)s->model.numel, pt_optim_name(&s->opt.cfg),
                     (long long)c->batch, (long long)s->steps_per_epoch, (long long)s->total_steps,
                     thr[0], -thr[1], s->dp_size, s->grid.size[PT_AXIS_TP],
                     s->grid.size[PT_AXIS_PP], s->grid.order_text, pt_precision_name(s->model.precision),
                     pt_lowp_gemm_variant_quiet(s->model.precision));
    if (!c->quiet) {
        char grid[96] = "";
        if (s->grid.size[PT_AXIS_TP] > 1 || s->grid.size[PT_AXIS_PP] > 1)
            snprintf(grid, sizeof grid, " (grid %s: pp %d x dp %d x tp %d)", s->grid.order_text,
                     s->grid.size[PT_AXIS_PP], s->dp_size, s->grid.size[PT_AXIS_TP]);
        pt_log_info("paratrain: %d rank%s%s, model %s (%lld parameters), %s, global batch %lld, "
                    "%lld train / %lld val / %lld test samples, %lld steps",
                    s->world_size, s->world_size > 1 ? "s" : "", grid, c->model,
                    (long long)s->model.numel, pt_optim_name(&s->opt.cfg), (long long)c->batch,
                    (long long)s->train.count, (long long)s->val.count, (long long)s->test.count,
                    (long long)s->total_steps);
    }
    return PT_OK;
}

pt_status pt_train_report_progress(pt_train_state *s, pt_train_progress *p, float lr)
{
    const pt_train_config *c = s->cfg;
    const int64_t B = c->batch;
    const int64_t epoch = (s->step - 1) / s->steps_per_epoch; /* of the step just done */
    double now = pt_now();
    double sps = p->int_time > 0 ? (double)(p->int_steps * B) / p->int_time : 0.0;
    double ep = (double)s->step / (double)s->steps_per_epoch;
    double per_step = (now - p->t_start) / (double)(s->step - p->start_step);
    char eta[32], bytes[160] = "";
    /* bytes per step, the mean over the ranks, next to what a dense ring allreduce over dp sends
     * (2(p-1)/p 4n) and top-k's bound (2k(p-1)/p pairs of 8 bytes) */
    double b[5] = {p->int_sent, p->int_recv, p->tot_sent, p->int_k,
                   (double)(s->tp->bytes_sent - tp_sent_last)};
    tp_sent_last = s->tp->bytes_sent;
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, b, 5, MPI_DOUBLE, MPI_SUM, s->world,
                            "the byte counts of a log line"));
    const double W = (double)s->world_size, P = (double)s->dp_size;
    const double per = 1.0 / ((double)p->int_steps * W);
    const double sent_ps = b[0] * per, recv_ps = b[1] * per, k_ps = b[3] * per, tp_ps = b[4] * per;
    const double dense_ps = 2.0 * (P - 1) / P * 4.0 * (double)s->model.numel;
    const double bound_ps = 2.0 * k_ps * (P - 1) / P * 8.0;
    if (s->wire == PT_WIRE_TOPK)
        snprintf(bytes, sizeof bytes, "  sent %.3g MB/step (dense %.3g, bound 2k(p-1)/p %.3g)",
                 sent_ps / 1e6, dense_ps / 1e6, bound_ps / 1e6);
    else if (s->wire != PT_WIRE_DENSE)
        snprintf(bytes, sizeof bytes, "  sent %.3g MB/step (dense %.3g)", sent_ps / 1e6,
                 dense_ps / 1e6);
    fmt_duration(per_step * (double)(s->total_steps - s->step), eta, sizeof eta);
    const double n = (double)p->int_steps;
    /* PT_LOWP_STATS=1: this rank's 16-bit gradient conversions since the last record (rank 0's
     * are the record's: its stage and its shard of the batch) */
    char g16[160] = "";
    pt_model *mo = &s->model;
    if (mo->lowp_stats) {
        const double nz = (double)mo->grad16[0], d = nz > 0 ? nz : 1.0;
        snprintf(g16, sizeof g16, ", \"grad16_nonzero\": %lld, \"grad16_flushed_fraction\": %.6g, "
                 "\"grad16_subnormal_fraction\": %.6g", (long long)mo->grad16[0],
                 (double)mo->grad16[1] / d, (double)mo->grad16[2] / d);
        memset(mo->grad16, 0, sizeof mo->grad16);
    }
    pt_metrics_write(&s->metrics, "train",
                     "\"step\": %lld, \"epoch\": %.4f, \"loss\": %.6f, \"lr\": %.6g, "
                     "\"grad_norm\": %.6g, \"samples_per_s\": %.1f, \"time_s\": %.3f, "
                     "\"grad_comm_s\": %.6f, \"grad_comm_exposed_s\": %.6f, "
                     "\"grad_comm_overlap\": %.4f, \"bytes_sent_per_step\": %.0f, "
                     "\"bytes_recv_per_step\": %.0f, \"dense_bytes_per_step\": %.0f, "
                     "\"bound_bytes_per_step\": %.0f, \"bytes_sent_total\": %.0f, "
                     "\"k_per_step\": %.0f, \"grad_buckets\": %d, "
                     "\"grad_buckets_early\": %.2f, \"tp_bytes_sent_per_step\": %.0f%s",
                     (long long)s->step, ep, p->int_loss / n, lr, p->grad_norm, sps,
                     now - p->t_start, p->int_span / n, p->int_exposed / n,
                     hidden_fraction(p->int_span, p->int_exposed), sent_ps, recv_ps, dense_ps,
                     bound_ps, b[2] / W, k_ps, s->strategy->buckets(s), p->int_early / n, tp_ps,
                     g16);
    if (!c->quiet)
        pt_log_info("epoch %lld/%lld  step %lld/%lld  loss %.4f  lr %.4g  %.0f samples/s  "
                    "ETA %s%s",
                    (long long)(epoch + 1),
                    (long long)((s->total_steps + s->steps_per_epoch - 1) / s->steps_per_epoch),
                    (long long)s->step, (long long)s->total_steps, p->int_loss / n, lr, sps, eta,
                    bytes);
    p->int_time = p->int_steps = 0, p->int_loss = p->int_span = p->int_exposed = 0.0;
    p->int_early = p->int_sent = p->int_recv = p->int_k = 0.0;
    return PT_OK;
}

/* A fingerprint of the global parameters that does not depend on the grid: their norm and a
 * random projection sum_i w_i h(tensor, global index i), h in [-1, 1) from a hash, each element
 * counted once (tp-split tensors' slices on their ranks, replicated ones on tp rank 0), summed
 * over tp. Tests compare it with the serial run's while checkpoints cannot hold tp > 1. */
static pt_status param_fingerprint(pt_train_state *s, double out[2])
{
    const pt_model *m = &s->model;
    float *w = malloc(sizeof(float) * (size_t)(m->numel + 1));
    if (!w) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the parameter fingerprint");
    m->be->to_host(w, m->w, sizeof(float) * (size_t)m->numel);
    out[0] = out[1] = 0.0;
    for (int t = 0; t < m->nparams; t++) {
        const pt_param *p = &m->params[t];
        if (p->split_dim < 0 && s->tp->rank != 0) continue;
        if (s->strategy->owns && !s->strategy->owns(s, t)) continue; /* another stage's */
        for (int64_t i = 0; i < p->numel; i++) {
            uint64_t z = ((uint64_t)t << 40) ^ (uint64_t)pt_param_global_index(p, i);
            z += 0x9e3779b97f4a7c15ull; /* splitmix64 */
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            z ^= z >> 31;
            const double v = w[p->offset + i], h = (double)(z >> 11) * 0x1p-52 - 1.0;
            out[0] += v * v, out[1] += v * h;
        }
    }
    free(w);
    if (s->tp->size > 1)
        PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, out, 2, MPI_DOUBLE, MPI_SUM, s->tp->comm,
                                "the parameter fingerprint over the tensor-parallel group"));
    if (s->grid.size[PT_AXIS_PP] > 1)
        PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, out, 2, MPI_DOUBLE, MPI_SUM,
                                s->grid.group[PT_AXIS_PP].comm,
                                "the parameter fingerprint over the pipeline stages"));
    out[0] = sqrt(out[0]);
    return PT_OK;
}

pt_status pt_train_report_end(pt_train_state *s, pt_train_progress *p, const pt_train_result *res)
{
    double fp[2];
    PT_TRY(param_fingerprint(s, fp));
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, &p->tot_sent, 1, MPI_DOUBLE, MPI_SUM, s->world,
                            "the bytes sent in the run"));
    double spread, tp_sent = (double)(s->tp->bytes_sent - tp_sent_start);
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, &tp_sent, 1, MPI_DOUBLE, MPI_SUM, s->world,
                            "the tp group's bytes sent in the run"));
    PT_TRY(s->strategy->replica_spread(s, &spread));
    pt_metrics_write(&s->metrics, "end",
                     "\"step\": %lld, \"epoch\": %.4f, \"train_seconds\": %.3f, "
                     "\"samples_per_s\": %.1f, \"test_accuracy\": %.6f, \"data_s\": %.3f, "
                     "\"compute_s\": %.3f, \"comm_s\": %.3f, \"update_s\": %.3f, "
                     "\"grad_comm_span_s\": %.3f, \"grad_comm_exposed_s\": %.3f, "
                     "\"grad_comm_overlap\": %.4f, \"bytes_sent_total\": %.0f, "
                     "\"tp_bytes_sent_total\": %.0f, \"replica_max_diff\": %.6g, "
                     "\"param_norm\": %.9g, \"param_probe\": %.9g",
                     (long long)s->step, (double)s->step / (double)s->steps_per_epoch,
                     res->train_seconds, res->samples_per_s, s->have_test ? res->test_accuracy : NAN,
                     p->phase[0], p->phase[1], p->phase[2], p->phase[3], p->comm_span,
                     p->comm_exposed, hidden_fraction(p->comm_span, p->comm_exposed),
                     p->tot_sent / (double)s->world_size, tp_sent / (double)s->world_size, spread,
                     fp[0], fp[1]);
    return PT_OK;
}
