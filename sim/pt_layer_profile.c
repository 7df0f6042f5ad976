/* pt-layer-profile: one rank's training step of a paratrain model split by layer, for the
 * simulated step (sim/pt_sim_step.c). Built by sim/build_profile.sh against the libparatrain of
 * this tree; it uses only the public model API.
 *
 *   pt-layer-profile SPEC BATCH STEPS [OPTIMIZER]  > sim/models/NAME.tsv
 *
 * Runs STEPS steps of forward + loss + backward + optimizer update on BATCH random samples and
 * records, through the model's grad_ready hook (the one data parallelism starts its buckets
 * from), the time at which each range of the flat gradient became final during backward. Prints
 * the per-step medians: a header with the forward and update times, then one line per hook call
 * in backward order: offset, count, seconds of backward since the previous call. The tensors
 * (name, offset, numel) follow, to check the table against pt-ckpt info. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "paratrain/backend.h"
#include "paratrain/compress.h"
#include "paratrain/error.h"
#include "paratrain/model.h"
#include "paratrain/optim.h"

#define MAXEV 512

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time: the machine is shared */
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct events { int n; int64_t off[MAXEV], cnt[MAXEV]; double t[MAXEV]; };

static void on_ready(void *arg, int64_t offset, int64_t count)
{
    struct events *e = arg;
    if (e->n < MAXEV) e->off[e->n] = offset, e->cnt[e->n] = count, e->t[e->n++] = now();
}

static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: pt-layer-profile SPEC BATCH STEPS [OPTIMIZER]\n");
        return 2;
    }
    const char *spec = argv[1], *optname = argc > 4 ? argv[4] : "momentum";
    const int B = atoi(argv[2]), S = atoi(argv[3]);
    if (B < 1 || S < 2) return 2;
    const pt_backend *be = pt_backend_cpu();
    pt_model m;
    pt_model_options mo = {0};
    if (pt_model_create(&m, spec, &mo, be, B) != PT_OK || pt_model_init(&m, 1) != PT_OK) {
        fprintf(stderr, "pt-layer-profile: cannot build %s: %s\n", spec, pt_error_message());
        return 1;
    }
    pt_optim_config oc;
    pt_optimizer opt;
    if (pt_optim_config_parse(&oc, optname) != PT_OK ||
        pt_optim_create(&opt, &oc, be, m.numel) != PT_OK)
        return 1;
    const int in = pt_model_input_size(&m), classes = pt_model_classes(&m);
    float *x = malloc(sizeof(float) * (size_t)in * (size_t)B);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)B);
    /* token models read bytes (integers below the vocabulary); the others any float */
    const int tokens = pt_model_targets(&m) > 1;
    srand(1);
    for (int64_t i = 0; i < (int64_t)in * B; i++)
        x[i] = tokens ? (float)(rand() % classes) : (float)rand() / (float)RAND_MAX;
    for (int r = 0; r < B; r++) y[r] = rand() % classes;
    struct events ev[2];
    double *tf = calloc((size_t)S, sizeof(double)), *tb = calloc((size_t)S, sizeof(double));
    double *tu = calloc((size_t)S, sizeof(double)), *dt = calloc((size_t)S * MAXEV, sizeof(double));
    int nev = -1;
    for (int s = 0; s < S; s++) {
        struct events *e = &ev[s % 2];
        e->n = 0;
        m.grad_ready = on_ready, m.grad_ready_arg = e;
        pt_fwd_ctx ctx = {.train = 1, .seed = 1, .step = s, .row_offset = 0};
        const double t0 = now();
        pt_model_forward(&m, x, B, &ctx);
        const double t1 = now();
        int64_t correct = 0;
        pt_model_loss_backward(&m, y, B, &ctx, 1.0f / (float)B, &correct);
        const double t2 = now();
        pt_optim_step(&opt, m.w, m.g, 0.01f);
        const double t3 = now();
        if (nev < 0) nev = e->n;
        if (e->n != nev) {
            fprintf(stderr, "pt-layer-profile: %d hook calls, then %d\n", nev, e->n);
            return 1;
        }
        tf[s] = t1 - t0, tb[s] = t2 - t1, tu[s] = t3 - t2;
        /* the loss (and the first node's backward) before the first hook call counts there */
        for (int k = 0; k < nev; k++) dt[(size_t)k * S + s] = e->t[k] - (k ? e->t[k - 1] : t1);
    }
    /* the first step warms caches and allocators: medians of the others */
    const int n = S - 1;
    printf("# pt-layer-profile %s batch %d, %d steps (median of the last %d), optimizer %s\n", spec,
           B, S, n, optname);
    printf("model\t%s\nnumel\t%lld\nbatch\t%d\n", spec, (long long)m.numel, B);
    printf("forward_s\t%.9f\nbackward_s\t%.9f\nupdate_s\t%.9f\n", median(tf + 1, n),
           median(tb + 1, n), median(tu + 1, n));
    /* backward time after the last hook call (nodes without parameters at the input) */
    double tail[S];
    for (int s = 1; s < S; s++) {
        double sum = 0;
        for (int k = 0; k < nev; k++) sum += dt[(size_t)k * S + s];
        tail[s - 1] = tb[s] - sum;
    }
    printf("backward_tail_s\t%.9f\n", median(tail, n));
    /* what --compress adds after backward on one rank (src/parallel/compress.c): top-k at
     * density 0.001 (accumulate g + residual, select, residual update), sign (accumulate, pack,
     * per-tensor mean |x| and residual); median of 5 */
    const int64_t N = m.numel, K = (int64_t)ceil(0.001 * (double)N);
    float *acc = malloc(sizeof(float) * (size_t)N), *res = calloc((size_t)N, sizeof(float));
    float *val = malloc(sizeof(float) * (size_t)K);
    uint32_t *idx = malloc(sizeof(uint32_t) * (size_t)K);
    uint32_t *bits = malloc(sizeof(uint32_t) * (size_t)pt_sign_words(N));
    double tk[5], ts[5];
    for (int r = 0; r < 5; r++) {
        double a = now();
        for (int64_t i = 0; i < N; i++) acc[i] = m.g[i] + res[i];
        pt_topk_select(acc, N, K, idx, val);
        memcpy(res, acc, sizeof(float) * (size_t)N);
        for (int64_t e = 0; e < K; e++) res[idx[e]] = 0.0f;
        double b = now();
        for (int64_t i = 0; i < N; i++) acc[i] = m.g[i] + res[i];
        pt_sign_pack(acc, N, bits);
        for (int s = 0; s < m.nparams; s++) {
            const int64_t lo = m.params[s].offset, hi = lo + m.params[s].numel;
            double l1 = 0.0;
            for (int64_t i = lo; i < hi; i++) l1 += fabsf(acc[i]);
            const float sc = hi > lo ? (float)(l1 / (double)(hi - lo)) : 0.0f;
            for (int64_t i = lo; i < hi; i++) res[i] = acc[i] - (signbit(acc[i]) ? -sc : sc);
        }
        tk[r] = b - a, ts[r] = now() - b;
    }
    printf("topk_s\t%.9f\nsign_s\t%.9f\n", median(tk, 5), median(ts, 5));
    free(acc), free(res), free(val), free(idx), free(bits);
    printf("# ready: offset count seconds (backward since the previous ready range, median)\n");
    for (int k = 0; k < nev; k++)
        printf("ready\t%lld\t%lld\t%.9f\n", (long long)ev[0].off[k], (long long)ev[0].cnt[k],
               median(dt + (size_t)k * S + 1, n));
    for (int i = 0; i < m.nparams; i++)
        printf("param\t%s\t%lld\t%lld\n", m.params[i].name, (long long)m.params[i].offset,
               (long long)m.params[i].numel);
    pt_optim_destroy(&opt);
    pt_model_destroy(&m);
    free(x), free(y), free(tf), free(tb), free(tu), free(dt);
    return 0;
}
