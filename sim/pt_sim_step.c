/* pt-sim-step: one data-parallel training step of a paratrain model under SimGrid SMPI, built by
 * sim/build.sh from src/comm. Each simulated rank replays the step that sim/models/NAME.tsv
 * records (sim/profile.sh: a measured single-rank step split by layer): forward, then backward
 * range by range with the gradient buckets of src/parallel/grad_sync.c started from the same
 * hook and at most two in flight, then the wait for the rest, then the update. Compute is
 * injected as simulated time (smpi_execute_benched), communication is src/comm's own code.
 *
 *   smpirun ... pt-sim-step --table sim/models/mlp.tsv [--algos LIST] [--weak B] [--strong G]
 *                           [--bucket-mb X] [--density D] [--check] [--in-flight N]
 *                           [--hier-in-flight N]
 *
 * algos: ring rabenseifner recursive_doubling hierarchical mpi (dense, bucketed like
 *        --bucket-mb X), topk (--compress topk:D, SparCML, whole gradient after backward), sign
 *        (--compress sign), fp16.
 * --weak B: B samples per rank; --strong G: G samples over all ranks (G / p each, at least 1).
 * Compute of a rank at b samples = (forward + backward) * b / profile batch + update (the
 * update does not shrink with the batch), every time scaled so that the profile batch's step
 * equals the step ./paratrain measured (the table's paratrain_step_s).
 * Prints on rank 0 one CSV line per (mode, algo):
 *   p,model,mode,batch_per_rank,algo,compute_s,step_s,efficiency,buckets,early
 * efficiency: weak compute / step; strong T1 / (p step) with T1 the one-rank step at G.
 * --check: private buffers with known contents, and each dense result is compared with the
 * serial sum (the test's mode; timing runs use SMPI_SHARED_MALLOC buffers, contents garbage). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/comm.h"
#include "paratrain/compress.h"

#ifndef SMPI_SHARED_MALLOC
#define SMPI_SHARED_MALLOC(n) malloc(n)
#define SMPI_SHARED_FREE(p) free(p)
static void smpi_execute_benched(double s) { (void)s; }
#endif

#define MAXR 512
/* buckets in flight: grad_sync.c's MAX_IN_FLIGHT, 2 (--in-flight, --hier-in-flight for the
 * hierarchical algorithm, which has two window regions) */
static int max_in_flight = 2, hier_in_flight = 2;

typedef struct {
    char name[64];
    int64_t numel;
    int batch;
    double fwd, bwd, upd, tail, step_measured, topk_s, sign_s;
    int nready, nparams;
    int64_t roff[MAXR];
    double rdt[MAXR];
    int64_t poff[MAXR + 1];
} table;

typedef struct { int64_t off, count; pt_coll_request *req; int done; } bucket;

static int rank, size, check;

static int load(const char *path, table *t)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    memset(t, 0, sizeof *t);
    char line[512], k[64], a[128];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        long long o, c;
        double v;
        if (sscanf(line, "ready %lld %lld %lf", &o, &c, &v) == 3 && t->nready < MAXR)
            t->roff[t->nready] = o, t->rdt[t->nready++] = v;
        else if (sscanf(line, "param %127s %lld %lld", a, &o, &c) == 3 && t->nparams < MAXR)
            t->poff[t->nparams++] = o;
        else if (sscanf(line, "model %63s", t->name) == 1) continue;
        else if (sscanf(line, "%63s %lf", k, &v) == 2) {
            if (!strcmp(k, "numel")) t->numel = (int64_t)v;
            else if (!strcmp(k, "batch")) t->batch = (int)v;
            else if (!strcmp(k, "forward_s")) t->fwd = v;
            else if (!strcmp(k, "backward_s")) t->bwd = v;
            else if (!strcmp(k, "update_s")) t->upd = v;
            else if (!strcmp(k, "backward_tail_s")) t->tail = v;
            else if (!strcmp(k, "paratrain_step_s")) t->step_measured = v;
            else if (!strcmp(k, "topk_s")) t->topk_s = v;
            else if (!strcmp(k, "sign_s")) t->sign_s = v;
        }
    }
    fclose(f);
    t->poff[t->nparams] = t->numel;
    /* medians do not add up: the tail is what makes the ranges sum to the backward median */
    double ranges = 0;
    for (int i = 0; i < t->nready; i++) ranges += t->rdt[i];
    t->tail = t->bwd - ranges;
    if (t->tail < 0) {
        for (int i = 0; i < t->nready; i++) t->rdt[i] *= t->bwd / ranges;
        t->tail = 0;
    }
    if (t->numel <= 0 || t->batch <= 0 || t->nready == 0 || t->nparams == 0) return -1;
    /* every profiled time scaled to the step ./paratrain measured at the profile batch */
    const double sum = t->fwd + t->bwd + t->upd;
    const double sc = t->step_measured > 0 ? t->step_measured / sum : 1.0;
    t->fwd *= sc, t->bwd *= sc, t->upd *= sc, t->tail *= sc, t->topk_s *= sc, t->sign_s *= sc;
    for (int i = 0; i < t->nready; i++) t->rdt[i] *= sc;
    return 0;
}

/* grad_sync.c's make_buckets: cut at parameter boundaries from the last parameter */
static int make_buckets(const table *t, double mib, bucket *b)
{
    const int64_t target = mib > 0 ? (int64_t)(mib * 1048576.0 / sizeof(float)) : 0;
    if (target <= 0) {
        b[0] = (bucket){.off = 0, .count = t->numel};
        return 1;
    }
    int nb = 0;
    int64_t hi = t->numel;
    for (int i = t->nparams - 1; i >= 0; i--) {
        const int64_t lo = t->poff[i];
        if (hi - lo >= target || i == 0) b[nb++] = (bucket){.off = lo, .count = hi - lo}, hi = lo;
    }
    return nb;
}

static void compute(double s)
{
    if (s > 0) smpi_execute_benched(s);
}

static float input(int r, int64_t i) { return (float)((r * 7 + i * 13) % 17) - 8.0f; }

static int make_room(bucket *b, int next, int max)
{
    int in_flight = 0, oldest = -1;
    for (int i = 0; i < next; i++)
        if (!b[i].done) {
            in_flight++;
            if (oldest < 0) oldest = i;
        }
    if (in_flight < max) return 0;
    b[oldest].done = 1;
    return pt_coll_wait(&b[oldest].req) != PT_OK;
}

/* One step; returns the simulated seconds on this rank, or -1 on a failed collective. */
static double step(pt_comm *c, const table *t, const char *algo, int b_rank, double mib,
                   double density, float *g, int *nbuckets, int *early)
{
    const double f = (double)b_rank / t->batch;
    bucket bk[MAXR];
    const int dense = strcmp(algo, "topk") && strcmp(algo, "sign") && strcmp(algo, "fp16");
    const int nb = make_buckets(t, dense ? mib : 0, bk);
    const int overlap = dense && size > 1 && nb > 1;
    *nbuckets = nb, *early = 0;
    const int inflight = strcmp(algo, "hierarchical") ? max_in_flight : hier_in_flight;
    int bad = 0, next = 0;
    if (dense) {
        pt_allreduce_algo a;
        if (pt_allreduce_algo_parse(algo, &a) != PT_OK) return -1;
        c->algo = a;
    }
    if (check)
        for (int64_t i = 0; i < t->numel; i++) g[i] = input(rank, i);
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    compute(t->fwd * f);
    int64_t low = t->numel;
    for (int k = 0; k < t->nready; k++) {
        compute(t->rdt[k] * f);
        if (!overlap) continue;
        if (t->roff[k] < low) low = t->roff[k];
        /* grad_sync.c's on_grad_ready: start every bucket backward has covered, test the rest */
        while (!bad && next < nb && bk[next].off >= low) {
            bad |= make_room(bk, next, inflight);
            bk[next].done = 0;
            bad |= pt_iallreduce(c, PT_IN_PLACE, g + bk[next].off, bk[next].count, PT_F32, PT_SUM,
                                 &bk[next].req) != PT_OK;
            next++;
            if (low > 0) (*early)++;
        }
        for (int i = 0; i < next && !bad; i++)
            if (!bk[i].done) bad |= pt_coll_test(&bk[i].req, &bk[i].done) != PT_OK;
    }
    compute(t->tail * f);
    if (dense) {
        while (!bad && next < nb) {
            bad |= make_room(bk, next, inflight);
            bk[next].done = 0;
            bad |= pt_iallreduce(c, PT_IN_PLACE, g + bk[next].off, bk[next].count, PT_F32, PT_SUM,
                                 &bk[next].req) != PT_OK;
            next++;
        }
        for (int i = 0; i < next; i++)
            if (!bk[i].done) bad |= pt_coll_wait(&bk[i].req) != PT_OK, bk[i].done = 1;
    } else if (!strcmp(algo, "topk")) {
        /* accumulate + select + residual, measured; then SparCML on the k pairs (worst case:
         * the ranks' indices barely overlap, so the list grows by p until its dense switch) */
        compute(t->topk_s);
        int64_t k = (int64_t)ceil(density * (double)t->numel);
        if (k < 1) k = 1;
        uint32_t *idx = malloc(sizeof(uint32_t) * (size_t)k);
        float *val = malloc(sizeof(float) * (size_t)k);
        const int64_t stride = t->numel / k, off = (int64_t)(rank * 31) % (stride ? stride : 1);
        for (int64_t j = 0; j < k; j++) idx[j] = (uint32_t)(off + j * stride), val[j] = 1.0f;
        bad |= pt_sparse_allreduce(c, PT_SPARSE_SPARCML, idx, val, k, t->numel, k, 0.0, g, NULL,
                                   NULL) != PT_OK;
        free(idx), free(val);
    } else if (!strcmp(algo, "sign")) {
        compute(t->sign_s);
        const int64_t nw = pt_sign_words(t->numel);
        uint32_t *bits = check ? malloc(sizeof(uint32_t) * (size_t)nw)
                               : SMPI_SHARED_MALLOC(sizeof(uint32_t) * (size_t)nw);
        memset(bits, 0, sizeof(uint32_t) * (size_t)nw);
        float scales[MAXR];
        for (int s = 0; s < t->nparams; s++) scales[s] = 1.0f;
        bad |= pt_sign_allreduce(c, bits, scales, t->numel, t->poff, t->nparams, 0, g) != PT_OK;
        if (check) free(bits);
        else SMPI_SHARED_FREE(bits);
    } else {
        bad |= pt_allreduce_lowp(c, g, t->numel, PT_F16) != PT_OK;
    }
    compute(t->upd);
    const double dt = MPI_Wtime() - t0;
    if (check && dense && !bad)
        for (int64_t i = 0; i < t->numel; i++) {
            float s = 0;
            for (int r = 0; r < size; r++) s += input(r, i);
            if (g[i] != s) {
                printf("FAIL %s p=%d %s: element %lld is %g, serial sum %g\n", algo, size, t->name,
                       (long long)i, g[i], s);
                return -1;
            }
        }
    return bad ? -1 : dt;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *path = NULL, *algos = "ring,rabenseifner,hierarchical,topk,sign";
    int weak = 0, strong = 0;
    double mib = 1.0, density = 0.001;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--table")) path = v, i++;
        else if (!strcmp(a, "--algos")) algos = v, i++;
        else if (!strcmp(a, "--weak")) weak = atoi(v), i++;
        else if (!strcmp(a, "--strong")) strong = atoi(v), i++;
        else if (!strcmp(a, "--bucket-mb")) mib = atof(v), i++;
        else if (!strcmp(a, "--density")) density = atof(v), i++;
        else if (!strcmp(a, "--check")) check = 1;
        else if (!strcmp(a, "--in-flight")) max_in_flight = atoi(v), i++;
        else if (!strcmp(a, "--hier-in-flight")) hier_in_flight = atoi(v), i++;
        else {
            if (rank == 0) fprintf(stderr, "pt-sim-step: unknown option %s\n", a);
            MPI_Finalize();
            return 2;
        }
    }
    table t;
    if (!path || load(path, &t) != 0) {
        if (rank == 0) fprintf(stderr, "pt-sim-step: give --table FILE (sim/models/*.tsv)\n");
        MPI_Finalize();
        return 2;
    }
    if (!weak && !strong) weak = t.batch;
    pt_comm c;
    if (pt_comm_init(&c, MPI_COMM_WORLD) != PT_OK) MPI_Abort(MPI_COMM_WORLD, 1);
    if (rank == 0)
        printf("# p=%d nodes=%d ranks/node=%d model %s numel %lld profile batch %d step %.6f s\n",
               size, c.nnodes, c.node_size, t.name, (long long)t.numel, t.batch,
               t.fwd + t.bwd + t.upd);
    const size_t nb = sizeof(float) * (size_t)(t.numel + 1);
    float *g = check ? malloc(nb) : SMPI_SHARED_MALLOC(nb);
    int fail = 0;
    for (int mode = 0; mode < 2; mode++) {
        const int B = mode ? strong : weak;
        if (B <= 0) continue;
        const int b_rank = mode ? (B / size > 0 ? B / size : 1) : B;
        const double per = (t.fwd + t.bwd) / t.batch;
        const double comp = per * b_rank + t.upd;
        const double t1 = per * (mode ? B : b_rank) + t.upd; /* one rank, no communication */
        char *list = strdup(algos), *save = NULL;
        for (char *al = strtok_r(list, ",", &save); al; al = strtok_r(NULL, ",", &save)) {
            int nbk = 0, early = 0;
            double dt = step(&c, &t, al, b_rank, mib, density, g, &nbk, &early);
            double r[2] = {dt, -dt};
            MPI_Allreduce(MPI_IN_PLACE, r, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            const int failed = -r[1] < 0; /* some rank returned -1 */
            fail |= failed;
            if (rank == 0) {
                if (failed) printf("# %s %s failed\n", al, mode ? "strong" : "weak");
                else
                    printf("%d,%s,%s,%d,%s,%.9e,%.9e,%.4f,%d,%d\n", size, t.name,
                           mode ? "strong" : "weak", b_rank, al, comp, r[0],
                           mode ? t1 / (size * r[0]) : comp / r[0], nbk, early);
            }
        }
        free(list);
    }
    if (check) free(g);
    else SMPI_SHARED_FREE(g);
    pt_comm_free(&c);
    MPI_Finalize();
    return fail;
}
