/* Tensor parallelism of the models (Megatron layouts, docs/MODELS.md) against the serial model.
 * Run under mpirun (tests/test_tp_model.sh: np 1, 2, 4): all ranks form one tp group, and every
 * rank also builds the serial model (tp = NULL) on the same data. Checked per model:
 *   (a) initialization: every local parameter is bitwise its slice of the serial tensor;
 *   (b) forward (train mode, dropout on): logits, and the loss, within LOGIT_TOL / LOSS_TOL;
 *       a vocabulary-parallel model is compared on its own vocabulary slice (nothing gathered);
 *   (c) after backward: every local gradient within GRAD_TOL of its slice of the serial one
 *       (normalized max error, max |diff| / max |serial|);
 *   (d) the count of correct predictions equal, in train and in eval mode;
 *   (e) dropout masks: every dropout layer's output is zero exactly where the serial one is.
 * gpt also with sequence parallelism (its grad_over_tp gradients summed over tp first, as the
 * trainer does). The vocabulary-parallel cross-entropy is checked on tied logits across ranks.
 * And the layouts tp cannot split are refused with PT_ERR_ARG before anything is allocated. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/nn/graph.h"
#include "paratrain/comm.h"
#include "paratrain/model.h"
#include "paratrain/rng.h"
#include "testutil.h"

/* Float32 sums in a different order (a row-parallel layer sums tp partial products; the loss's
 * sum of exponentials is reduced over tp): differences of a few ulps, grown through the layers. */
#define LOGIT_TOL 1e-5
#define LOSS_TOL 1e-7
#define GRAD_TOL 1e-5

static int rank = 0;
static pt_comm tp;

static void fill_inputs(const pt_model *m, float *x, int32_t *labels, int rows)
{
    const int S = m->input_size;
    for (int r = 0; r < rows; r++) {
        labels[r] = (int32_t)(pt_rng_uniform(5, 2, (uint64_t)r) * m->classes) % m->classes;
        for (int i = 0; i < S; i++) {
            const double u = pt_rng_uniform(5, 1, (uint64_t)(r * S + i));
            x[r * S + i] = m->targets > 1 ? (float)(int)(u * m->classes) : (float)(2 * u - 1);
        }
    }
}

/* The serial node with the same dropout id as a tp node, and its output slot. */
static const pt_node *serial_twin(const pt_model *s, const pt_node *n)
{
    for (int i = 0; i < s->nnodes; i++)
        if (s->nodes[i].id == n->id && s->nodes[i].op == &pt_op_linear) return &s->nodes[i];
    return NULL;
}

static void check_model(const char *spec, pt_act act, float dropout, int rows, int seq_par)
{
    const pt_backend *be = pt_backend_cpu();
    pt_model_options opt = {.act = act, .dropout = dropout};
    pt_model s, m;
    REQUIRE_OK(pt_model_create(&s, spec, &opt, be, rows));
    opt.tp = &tp, opt.sequence_parallel = seq_par;
    REQUIRE_OK(pt_model_create(&m, spec, &opt, be, rows));
    REQUIRE_OK(pt_model_init(&s, 1234));
    REQUIRE_OK(pt_model_init(&m, 1234));
    CHECK(pt_model_tp_size(&m) == tp.size && pt_model_tp_rank(&m) == tp.rank, "%s: tp size", spec);

    /* (a) initialization */
    CHECK(m.nparams == s.nparams, "%s: %d parameters, serial %d", spec, m.nparams, s.nparams);
    int64_t init_bad = 0, sharded = 0;
    for (int t = 0; t < m.nparams && t < s.nparams; t++) {
        const pt_param *p = &m.params[t], *q = &s.params[t];
        CHECK(!strcmp(p->name, q->name) && p->gnumel == q->numel, "%s: parameter %d is %s, serial %s",
              spec, t, p->name, q->name);
        sharded += p->split_dim >= 0;
        for (int64_t i = 0; i < p->numel; i++)
            init_bad += memcmp(&m.w[p->offset + i], &s.w[q->offset + pt_param_global_index(p, i)],
                               sizeof(float)) != 0;
    }
    CHECK(init_bad == 0, "%s: %lld parameter elements differ from the serial slice", spec,
          (long long)init_bad);
    CHECK(tp.size == 1 || sharded > 0, "%s: nothing is sharded at tp %d", spec, tp.size);

    /* (b) forward in train mode */
    float *x = malloc(sizeof(float) * (size_t)rows * s.input_size);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)rows);
    fill_inputs(&s, x, labels, rows);
    const pt_fwd_ctx ctx = {.train = 1, .seed = 99, .step = 3, .row_offset = 5};
    const float *ys = pt_model_forward(&s, x, rows, &ctx);
    const float *ym = pt_model_forward(&m, x, rows, &ctx);
    REQUIRE_OK(pt_model_status(&m));
    const int V = s.classes, Vl = pt_model_local_classes(&m), v0 = (int)m.vocab_start;
    const int64_t R = (int64_t)rows * s.targets;
    CHECK(Vl * tp.size == V || Vl == V, "%s: %d local classes of %d", spec, Vl, V);
    double lnum = 0, lden = 1e-6;
    for (int64_t r = 0; r < R; r++)
        for (int c = 0; c < Vl; c++) {
            const double a = ym[r * Vl + c], b = ys[r * V + v0 + c];
            lnum = fabs(a - b) > lnum ? fabs(a - b) : lnum;
            lden = fabs(b) > lden ? fabs(b) : lden;
        }
    CHECK(lnum / lden <= LOGIT_TOL, "%s: logits differ by %.3g (normalized)", spec, lnum / lden);

    /* (e) dropout masks: zero where the serial output is zero, column by global column */
    int64_t mask_bad = 0, zeros = 0, checked = 0;
    for (int i = 0; i < m.nnodes; i++) {
        const pt_node *n = &m.nodes[i];
        if (n->dropout <= 0.0f) continue;
        const pt_node *q = serial_twin(&s, n);
        CHECK(q && q->dropout == n->dropout, "%s: node %d (%s) has no serial twin", spec, i,
              n->op->name);
        if (!q) continue;
        /* linear and bias_act (Din = Dout) both carry a pt_linear_desc */
        const int wide = q->d.linear.Dout, cols = n->d.linear.Dout, off = n->d.linear.col_offset;
        const float *a = m.slots[n->out].a, *b = s.slots[q->out].a;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {
                const int za = a[(int64_t)r * cols + c] == 0.0f, zb = b[(int64_t)r * wide + off + c] == 0.0f;
                mask_bad += za != zb, zeros += zb, checked++;
            }
    }
    CHECK(mask_bad == 0, "%s: %lld of %lld dropout-layer outputs zero in one run only", spec,
          (long long)mask_bad, (long long)checked);
    CHECK(dropout == 0.0f || zeros > 0, "%s: no dropped elements", spec);

    /* (b, c, d) loss, gradients, correct counts */
    int64_t cs = -1, cm = -2;
    const double Ls = pt_model_loss_backward(&s, labels, rows, &ctx, 1.0f / rows, &cs);
    const double Lm = pt_model_loss_backward(&m, labels, rows, &ctx, 1.0f / rows, &cm);
    REQUIRE_OK(pt_model_status(&m));
    CHECK(fabs(Lm - Ls) <= LOSS_TOL * fabs(Ls), "%s: loss %.9g, serial %.9g", spec, Lm, Ls);
    CHECK(cm == cs, "%s: %lld correct, serial %lld", spec, (long long)cm, (long long)cs);
    double gworst = 0.0;
    const char *gworst_name = "";
    for (int t = 0; t < m.nparams && t < s.nparams; t++) {
        const pt_param *p = &m.params[t], *q = &s.params[t];
        float *slice = malloc(sizeof(float) * (size_t)p->numel);
        for (int64_t i = 0; i < p->numel; i++) slice[i] = s.g[q->offset + pt_param_global_index(p, i)];
        /* a partial gradient (sequence-parallel layer norms and row-parallel biases): the trainer
         * sums it over tp; do so here */
        CHECK(p->grad_over_tp == (seq_par && tp.size > 1 && p->split_dim < 0 &&
                                  (strstr(p->name, "ln") || strstr(p->name, "proj/bias"))),
              "%s: %s grad_over_tp %d", spec, p->name, p->grad_over_tp);
        if (p->grad_over_tp)
            MPI_Allreduce(MPI_IN_PLACE, m.g + p->offset, (int)p->numel, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        const double e = max_rel_err(m.g + p->offset, slice, p->numel, 1e-6);
        CHECK(e <= GRAD_TOL, "%s: gradient of %s differs by %.3g (normalized)", spec, p->name, e);
        if (e > gworst) gworst = e, gworst_name = p->name;
        free(slice);
    }

    /* (d) in eval mode too (no dropout, no backward) */
    const pt_fwd_ctx ev = {.train = 0};
    pt_model_forward(&s, x, rows, &ev);
    pt_model_forward(&m, x, rows, &ev);
    const double Es = pt_model_loss_backward(&s, labels, rows, &ev, 0.0f, &cs);
    const double Em = pt_model_loss_backward(&m, labels, rows, &ev, 0.0f, &cm);
    CHECK(cm == cs && fabs(Em - Es) <= LOSS_TOL * fabs(Es), "%s eval: loss %.9g correct %lld, "
          "serial %.9g %lld", spec, Em, (long long)cm, Es, (long long)cs);

    /* every rank's worst, printed by rank 0 */
    double w[3] = {lnum / lden, gworst, fabs(Lm - Ls) / fabs(Ls)};
    MPI_Allreduce(MPI_IN_PLACE, w, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0)
        printf("tp=%d %-44s%s logits %.2e  loss %.2e  grads %.2e (rank 0 worst: %s)  correct %lld  "
               "dropout-layer outputs %lld (%lld zero)\n", tp.size, spec, seq_par ? " seq-par" : "", w[0], w[2], w[1],
               gworst_name, (long long)cs, (long long)checked, (long long)zeros);
    free(x), free(labels);
    pt_model_destroy(&s);
    pt_model_destroy(&m);
}

/* The vocabulary-parallel cross-entropy on logits with many ties (values 0, 1, 2), some across
 * ranks: loss, gradient and the argmax (the lowest global index of the max, as the serial
 * first-maximum argmax) against the backend's softmax_xent on the whole rows. */
static void check_vocab_xent(void)
{
    const char *spec = "gpt:layers=1,heads=4,d=32,ctx=8,vocab=256";
    pt_model_options opt = {.tp = &tp};
    pt_model m;
    REQUIRE_OK(pt_model_create(&m, spec, &opt, pt_backend_cpu(), 4));
    const int R = 4 * 8, V = 256, Vl = pt_model_local_classes(&m), v0 = (int)m.vocab_start;
    float *z = malloc(sizeof(float) * R * V), *d = malloc(sizeof(float) * R * V);
    float *zl = malloc(sizeof(float) * R * Vl), *dl = malloc(sizeof(float) * R * Vl);
    int32_t y[4 * 8];
    for (int r = 0; r < R; r++) {
        int first = -1, second = -1;
        for (int c = 0; c < V; c++) z[r * V + c] = (float)(int)(3 * pt_rng_uniform(8, 1, (uint64_t)(r * V + c)));
        for (int c = 0; c < V; c++)
            if (z[r * V + c] == 2.0f) second = first >= 0 && second < 0 ? c : second, first = first < 0 ? c : first;
        /* the first maximum (correct), a later tie (not correct), or any token */
        y[r] = r % 3 == 0 ? first : r % 3 == 1 ? second : (int32_t)(pt_rng_uniform(8, 2, (uint64_t)r) * V);
        for (int c = 0; c < Vl; c++) zl[r * Vl + c] = z[r * V + v0 + c];
    }
    int64_t cs = -1, cm = -2;
    const double Ls = pt_backend_cpu()->softmax_xent(z, y, R, V, 0.5f, d, &cs);
    const double Lm = pt_tp_softmax_xent(&m, zl, y, R, 0.5f, dl, &cm);
    REQUIRE_OK(pt_model_status(&m));
    double e = 0.0;
    for (int r = 0; r < R; r++)
        for (int c = 0; c < Vl; c++) e = fmax(e, fabs(dl[r * Vl + c] - d[r * V + v0 + c]));
    CHECK(cm == cs && cs > 0 && fabs(Lm - Ls) <= LOSS_TOL * Ls && e <= 1e-7,
          "vocabulary-parallel xent with ties: correct %lld, serial %lld; loss %.9g, serial %.9g; "
          "dlogits differ by %.3g", (long long)cm, (long long)cs, Lm, Ls, e);
    if (rank == 0)
        printf("tp=%d vocabulary-parallel xent, tied logits: correct %lld of %d (serial %lld), "
               "loss diff %.2e, dlogits max diff %.2e\n", tp.size, (long long)cm, R, (long long)cs,
               fabs(Lm - Ls) / Ls, e);
    free(z), free(d), free(zl), free(dl);
    pt_model_destroy(&m);
}

static void expect_refused(const char *spec, int seq_par, const char *words)
{
    pt_model_options opt = {.act = PT_ACT_RELU, .tp = &tp, .sequence_parallel = seq_par};
    pt_model m;
    const pt_status rc = pt_model_create(&m, spec, &opt, pt_backend_cpu(), 4);
    CHECK(rc == PT_ERR_ARG && strstr(pt_error_message(), words) && !m.w && !m.act_block,
          "%s%s: rc %d, message '%s' (want PT_ERR_ARG and '%s')", spec,
          seq_par ? " --sequence-parallel" : "", (int)rc, rc ? pt_error_message() : "", words);
    pt_error_clear();
    pt_model_destroy(&m);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    REQUIRE_OK(pt_comm_init(&tp, MPI_COMM_WORLD));

    check_model("mlp:784-64-48-10", PT_ACT_RELU, 0.1f, 32, 0);   /* fc3 odd: replicated */
    check_model("mlp:784-64-48-32-10", PT_ACT_RELU, 0.1f, 8, 0); /* two pairs */
    check_model("mlp:784-64-61-32-10", PT_ACT_RELU, 0.1f, 8, 0); /* 61: between pairs, not split */
    check_model("mlp:20-16-12", PT_ACT_TANH, 0.25f, 5, 0);       /* a pair whose row layer is last */
    check_model("gpt:layers=2,heads=4,d=32,ctx=16,vocab=256", PT_ACT_NONE, 0.0f, 3, 0);
    check_model("gpt:layers=2,heads=4,d=32,ctx=16,vocab=256", PT_ACT_NONE, 0.0f, 3, 1);

    if (tp.size > 1) check_vocab_xent(); /* at tp 1 the vocabulary is not split */
    expect_refused("mlp:784-64-10", 1, "--sequence-parallel applies to gpt only");
    expect_refused("cnn", 1, "--sequence-parallel applies to gpt only");
    if (tp.size > 1) {
        expect_refused("mlp:784-63-10", 0, "does not divide the width 63");
        expect_refused("mlp:784-64-48-63-10", 0, "does not divide the width 63 between fc3");
        expect_refused("gpt:layers=1,heads=1,d=32,ctx=8", 0, "does not divide heads=1");
        expect_refused("gpt:layers=1,heads=4,d=32,ctx=8,vocab=257", 0, "does not divide vocab=257");
        expect_refused("gpt:layers=1,heads=4,d=32,ctx=9", 1, "does not divide ctx=9");
        expect_refused("cnn", 0, "has no tensor-parallel layout; use --tp 1");
        expect_refused("resnet", 0, "has no tensor-parallel layout; use --tp 1");
        expect_refused("textcnn", 0, "has no tensor-parallel layout; use --tp 1");
    }

    int failed = test_failures;
    MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    const int rc = rank == 0 ? test_exit_code("t_tp") : (test_failures ? 1 : 0);
    pt_comm_free(&tp);
    MPI_Finalize();
    return rc || failed ? 1 : 0;
}
