/* The training loop. It knows no parallelism: per step it reads this rank's rows (the data
 * pipeline), lets the step strategy run forward/backward and the gradient synchronization,
 * agrees with every rank on the step's loss, failures and preemption in one small allreduce
 * over the world (so a rank that fails mid-run, an I/O error on its share, stops every rank at
 * the same step instead of leaving them in a collective), clips, and lets the strategy update.
 * Evaluation, the checkpoint policy, the reports and the data pipeline live beside it
 * (train_state.h). */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/agree.h"
#include "paratrain/fault.h"
#include "paratrain/log.h"
#include "paratrain/lowp.h"
#include "paratrain/strategy.h"
#include "paratrain/watchdog.h"

/* Preemption: the handler only records the signal; the training loop checks it every step, in
 * the same allreduce that carries the loss, so every rank stops after the same step. */
static volatile sig_atomic_t preempt_signal = 0;
static void on_preempt(int sig) { preempt_signal = sig; }

/* Test hook (docs/MIXED_PRECISION.md): PT_LOSS_SCALE_INJECT=STEP[:RANK] makes world rank RANK's
 * gradient (every rank's without :RANK) Inf at step STEP, after the gradient sync, as an fp16
 * overflow on that rank alone would look; the loss scaler must then skip the step on every
 * rank. */
static bool inject_overflow(const pt_train_state *s)
{
    const char *e = getenv("PT_LOSS_SCALE_INJECT");
    if (!e || !*e) return false;
    char *end = NULL;
    const long long step = strtoll(e, &end, 10);
    const int rank = *end == ':' ? atoi(end + 1) : -1;
    return step == (long long)s->step && (rank < 0 || rank == s->world_rank);
}

/* Whether this rank's loss is counted in the world's sum: one rank per tp group holds it. */
static bool owns_loss(const pt_train_state *s) { return s->grid.coord[PT_AXIS_TP] == 0; }

/* A rank was signalled (SIGTERM/SIGUSR1): checkpoint (with --ckpt-dir) and stop, all together. */
static pt_status stop_preempted(pt_train_state *s, pt_train_result *res, double train_seconds)
{
    const pt_train_config *c = s->cfg;
    pt_log_info("preempted (signal received) after step %lld: %s", (long long)s->step,
                c->ckpt_dir[0] ? "writing a checkpoint" : "no --ckpt-dir, nothing saved");
    if (c->ckpt_dir[0]) PT_TRY(pt_train_save_checkpoint(s, res->checkpoint));
    res->preempted = 1;
    res->steps = s->step;
    res->train_seconds = train_seconds;
    return PT_OK;
}

static pt_status run(pt_train_state *s, pt_train_result *res)
{
    const pt_train_config *c = s->cfg;
    const pt_step_strategy *strat = s->strategy;
    const int64_t B = c->batch;
    PT_TRY(pt_train_batch_alloc(s));
    const int64_t log_every = c->log_every > 0 ? c->log_every : 50;
    const int64_t eval_every = c->eval_every > 0 ? c->eval_every : s->steps_per_epoch;
    pt_train_progress p = {.t_start = pt_now(), .grad_norm = NAN, .start_step = s->step};
    bool stop = false;

    const int64_t end = c->stop_at > 0 && c->stop_at < s->total_steps ? c->stop_at : s->total_steps;
    res->final_val_loss = res->final_val_accuracy = res->test_loss = res->test_accuracy = NAN;
    if (s->step >= s->total_steps) { /* resumed from the end of the run: nothing is rewritten */
        res->steps = s->step;
        res->finished_before = 1;
        return PT_OK;
    }
    if (strat->run_steps) { /* the strategy's own, non-lockstep steps (parameter server ASP/SSP) */
        bool preempted = false;
        PT_TRY(strat->run_steps(s, end, &preempt_signal, &preempted, &p));
        if (preempted) return stop_preempted(s, res, p.train_time);
    }
    while (s->step < end && !stop) {
        pt_fault_stop_point("step", s->step); /* PT_FAULT_STOP=R:STEP:step (tests/test_hang.sh) */
        pt_fault_delay("step-delay", s->world_rank); /* test hook: a wider window for signals */
        pt_fault_slow(s->world_rank, s->step); /* PT_FAULT_INJECT=slow:RANK:MS[:PERIOD:PHASE] */
        double t0 = pt_now();
        pt_status local = pt_train_read_batch(s);
        double t1 = pt_now();
        pt_step_report r = {0};
        s->model.grad_nonfinite = 0; /* set by backward's unscaling (loss scaling) */
        PT_TRY(strat->forward_backward(s, local == PT_OK, &r));
        /* an op's failure (sync batch norm's allreduce) stops every rank after this step, as a
         * read failure does */
        if (local == PT_OK && r.status != PT_OK) local = r.status;
        /* loss sum, read failure, preemption, exact-accumulator overflow, Inf/NaN gradients
         * (loss scaling: this rank's backward saw them, or the test hook) */
        double lstat[5] = {owns_loss(s) ? r.loss_sum : 0.0, local != PT_OK ? 1.0 : 0.0,
                           preempt_signal ? 1.0 : 0.0, r.overflow, 0.0};
        double t2 = pt_now();
        PT_TRY(strat->sync(s, &r));
        if (inject_overflow(s)) {
            const float inf = INFINITY;
            s->model.be->to_device(s->model.g, &inf, sizeof inf);
            s->model.grad_nonfinite = 1;
        }
        lstat[4] = s->model.grad_nonfinite ? 1.0 : 0.0;
        p.int_sent += (double)r.bytes_sent, p.int_recv += (double)r.bytes_recv;
        p.tot_sent += (double)r.bytes_sent;
        p.int_k += r.sent_elems;
        PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, lstat, 5, MPI_DOUBLE, MPI_SUM, s->world,
                                "the loss and status flags of a step"));
        double t3 = pt_now();
        if (lstat[1] > 0) return pt_agree(s->world, local, NULL);
        const double loss = lstat[0] / (double)B;
        if (!isfinite(loss) || lstat[3] > 0)
            return PT_ERR(PT_ERR_DATA, "lower --lr, add --clip-norm, or check the data",
                          "training diverged: loss is %g at step %lld%s", loss, (long long)s->step,
                          lstat[3] > 0 ? " (gradients beyond the exact accumulator's 2^24)" : "");
        /* Loss scaling: the same flag on every rank, so every rank skips the same steps. */
        pt_loss_scaler *ls = &s->model.ls;
        const double scale_before = ls->scale;
        const bool apply = ls->mode == PT_LOSS_SCALE_NONE || pt_loss_scale_step(ls, lstat[4] > 0);
        if (!apply && s->world_rank == 0)
            pt_log_info("loss scale: Inf/NaN gradients at step %lld: step skipped, scale %g -> %g",
                        (long long)s->step, scale_before, ls->scale);
        /* The norm is a full pass over the gradient: only when clipping or logging needs it. */
        const bool log_now = (s->step + 1) % log_every == 0 || s->step + 1 == end;
        if (apply && ((c->clip_norm > 0 && !c->dgc) || log_now)) { /* --dgc clips locally */
            double ss;
            PT_TRY(strat->grad_sum_squares(s, &ss));
            p.grad_norm = sqrt(ss);
            if (!c->dgc) strat->clip(s, p.grad_norm, c->clip_norm);
        }
        const float lr = pt_schedule_lr(&s->sched, s->step);
        if (apply) {
            PT_TRY(strat->update(s, lr));
            PT_TRY(pt_model_refresh_lowp(&s->model)); /* the 16-bit weights from the masters */
        }
        s->step++;
        double t4 = pt_now();
        /* compute excludes the collective calls made from backward; comm is what the step
         * waited for communication (exposed); span is first bucket start to last completion */
        const double calls = r.comm_calls_s, exposed = calls + r.comm_wait_s;
        p.phase[0] += t1 - t0, p.phase[1] += t2 - t1 - calls;
        p.phase[2] += exposed + (t3 - t2 - r.comm_wait_s), p.phase[3] += t4 - t3;
        p.comm_span += r.comm_span_s, p.comm_exposed += exposed;
        p.int_span += r.comm_span_s, p.int_exposed += exposed, p.int_early += r.started_early;
        const double dt_step = t4 - t0;
        p.train_time += dt_step, p.int_time += dt_step;
        p.int_steps++, p.int_loss += loss;

        const bool last = s->step == end;
        if (log_now) PT_TRY(pt_train_report_progress(s, &p, lr));
        if (s->step % eval_every == 0 && !last) PT_TRY(pt_train_validate(s, &stop, NULL, NULL));
        if (c->ckpt_dir[0] && c->ckpt_every > 0 && s->step % c->ckpt_every == 0 && !last)
            PT_TRY(pt_train_save_checkpoint(s, NULL));
        if (lstat[2] > 0 && !last) return stop_preempted(s, res, p.train_time); /* a rank was signalled */
    }
    res->steps = s->step;
    res->train_seconds = p.train_time;
    for (int i = 0; i < 4; i++) res->phase_seconds[i] = p.phase[i];
    res->samples_per_s = p.train_time > 0 ? (double)((s->step - p.start_step) * B) / p.train_time : 0;

    res->final_val_loss = res->final_val_accuracy = res->test_loss = res->test_accuracy = NAN;
    if (end < s->total_steps && !stop) { /* interrupted on purpose: state only, as a kill would */
        if (c->ckpt_dir[0]) PT_TRY(pt_train_save_checkpoint(s, res->checkpoint));
        res->stopped_at = 1;
        return PT_OK;
    }
    PT_TRY(pt_train_validate(s, &stop, &res->final_val_loss, &res->final_val_accuracy));
    if (s->have_test) {
        PT_TRY(pt_train_evaluate(s, &s->test, &res->test_loss, &res->test_accuracy));
        pt_metrics_write(&s->metrics, "eval",
                         "\"step\": %lld, \"epoch\": %.4f, \"split\": \"test\", \"loss\": %.6f, "
                         "\"accuracy\": %.6f, \"samples\": %lld",
                         (long long)s->step, (double)s->step / (double)s->steps_per_epoch,
                         res->test_loss, res->test_accuracy, (long long)s->test.count);
    }
    if (c->ckpt_dir[0]) PT_TRY(pt_train_save_checkpoint(s, res->checkpoint));
    return pt_train_report_end(s, &p, res);
}

static pt_status world_of(pt_train_state *s, MPI_Comm world)
{
    s->world = world;
    PT_MPI_CHECK(MPI_Comm_rank(world, &s->world_rank));
    PT_MPI_CHECK(MPI_Comm_size(world, &s->world_size));
    return PT_OK;
}

/* The grid of the run and the ranks' roles in it; the allreduce algorithm on every group. */
static pt_status setup_grid(pt_train_state *s, MPI_Comm world)
{
    const pt_train_config *c = s->cfg;
    PT_TRY(pt_grid_create(&s->grid, world, (int)c->tp, (int)c->pp, c->grid_order));
    s->have_grid = true;
    s->dp = &s->grid.group[PT_AXIS_DP], s->tp = &s->grid.group[PT_AXIS_TP];
    s->dp_rank = s->dp->rank, s->dp_size = s->dp->size;
    pt_allreduce_algo algo;
    PT_TRY(pt_allreduce_algo_parse(c->allreduce, &algo));
    for (int a = 0; a < PT_NAXES; a++) s->grid.group[a].algo = algo;
    return PT_OK;
}

/* --precision and --loss-scale on the model (validated already by pt_train_config_check). */
static pt_status setup_precision(pt_train_state *s)
{
    const pt_train_config *c = s->cfg;
    pt_dtype t = PT_F32;
    pt_loss_scale_mode mode = PT_LOSS_SCALE_NONE;
    double value = 1.0;
    pt_status st = pt_precision_parse(c->precision, &t);
    if (st == PT_OK) st = pt_loss_scale_parse(c->loss_scale, t == PT_F16, &mode, &value);
    if (st == PT_OK) st = pt_model_set_precision(&s->model, t);
    PT_TRY(pt_agree(s->world, st, NULL));
    pt_loss_scale_init(&s->model.ls, mode, value, c->loss_scale_window);
    if (t != PT_F32 && s->world_rank == 0 && !c->quiet)
        pt_log_info("precision %s (GEMM kernel %s), fp32 master weights%s", pt_precision_name(t),
                    pt_lowp_gemm_variant(t),
                    mode == PT_LOSS_SCALE_DYNAMIC  ? ", dynamic loss scale"
                    : mode == PT_LOSS_SCALE_STATIC ? ", static loss scale"
                                                   : "");
    return PT_OK;
}

static pt_status setup(pt_train_state *s)
{
    const pt_train_config *c = s->cfg;
    PT_TRY(pt_train_check_grid_options(s));
    PT_TRY(pt_train_check_paths(s));
    PT_TRY(pt_train_open_data(s));
    PT_TRY(pt_train_check_data_options(s));
    if (c->ps_servers > 0) { /* parameter server: workers share the batch, servers hold none */
        PT_TRY(pt_ps_batch_share(s));
        s->strategy = c->ps_sync[0] && strcmp(c->ps_sync, "bsp") ? &pt_strategy_param_server_async
                                                                 : &pt_strategy_param_server;
    } else {
        pt_batch_share(c->batch, s->dp_rank, s->dp_size, &s->batch.row_offset, &s->batch.rows);
        s->strategy = c->pp > 1 ? &pt_strategy_pipeline : &pt_strategy_data_parallel;
    }
    /* the model's buffers hold one training batch; evaluation runs in chunks of at most that
     * (evaluate.c), so it never needs more memory than training. A parameter server holds no
     * batch: it gets a worker's share for its evaluations. */
    const int64_t max_rows = s->batch.rows > 0 ? s->batch.rows : (c->batch + s->dp_size - 1) / s->dp_size;
    PT_TRY(pt_train_setup_model(s, (int)max_rows));
    PT_TRY(setup_precision(s)); /* before the strategy allocates in-flight activations */
    PT_TRY(s->strategy->setup(s)); /* agreed inside */
    pt_status st = pt_train_parse_augment(s);
    PT_TRY(pt_agree(s->world, st, NULL));
    pt_early_stop_init(&s->es, (int)c->early_stop, true);
    if (c->resume[0]) PT_TRY(pt_train_resume(s)); /* also the loss scaler's state */
    /* the 16-bit weights of the masters as they now are (initialized, broadcast or loaded) */
    PT_TRY(pt_agree(s->world, pt_model_refresh_lowp(&s->model), NULL));
    st = pt_metrics_open(&s->metrics, c->metrics, c->resume[0] != 0, s->world_rank);
    PT_TRY(pt_agree(s->world, st, NULL));
    pt_train_report_memory(s);
    return pt_train_report_start(s);
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
    pt_train_state *s = calloc(1, sizeof *s);
    if (!s) {
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGUSR1, &old_usr1, NULL);
        return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate the training state");
    }
    s->cfg = c, s->world = comm;
    pt_status st = PT_OK;
    PT_TRY_GOTO(st, world_of(s, comm), out);
    /* the same on every rank: no agreement needed */
    PT_TRY_GOTO(st, pt_train_config_check(c), out);
    PT_TRY_GOTO(st, setup_grid(s, comm), out);
    PT_TRY_GOTO(st, setup(s), out);
    st = run(s, res);
out:
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    pt_metrics_close(&s->metrics);
    if (pt_watchdog_peer_lost()) {
        /* A peer stopped: freeing windows or closing shared files would wait for it forever, and
         * requests of the failed collective may still point at the model's buffers. Leave it all
         * to the end of the process (the program exits with PT_EXIT_PEER_LOST). */
        return st;
    }
    pt_fault_stop_point("comm-free", s->step); /* PT_FAULT_STOP: a rank stops before the free */
    if (s->have_grid) {
        pt_status fst = pt_grid_free(&s->grid);
        if (fst != PT_OK) {
            if (st == PT_OK) st = fst;
            return st; /* a peer is gone (named in the message): nothing more is freed */
        }
    }
    if (s->strategy && s->strategy->teardown) s->strategy->teardown(s);
    pt_optim_destroy(&s->opt);
    pt_model_destroy(&s->model);
    pt_train_data_free(s);
    free(s);
    return st;
}
