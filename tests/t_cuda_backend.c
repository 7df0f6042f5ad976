/* The CUDA backend entry by entry against the CPU backend: the same random inputs through both
 * (host pointers for the CPU, device pointers for CUDA), the outputs compared with a tolerance
 * per entry (the GEMM and the libm functions round differently; sums of squares and losses are
 * in double on both). Dropout masks, argmax indices, targets and the all-finite flag must be
 * equal. An entry the CPU backend does not implement yet (NULL) is reported and not compared.
 * SKIPs, with the reason, in a build without CUDA or on a machine without a GPU. */
#include <math.h>
#include <string.h>

#include "paratrain/backend.h"
#include "paratrain/error.h"
#include "testutil.h"

static const pt_backend *cpu, *gpu;
static unsigned rng_state = 12345u;

static float frand(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) * (1.0 / 16777216.0) - 0.5);
}

/* One tensor on both backends: h the host values, c the CPU copy, g the device copy. */
typedef struct {
    size_t bytes;
    void *h, *c, *g;
} buf;

static buf mk(size_t bytes)
{
    buf b = {bytes, calloc(1, bytes + 8), calloc(1, bytes + 8), gpu->alloc(bytes + 8)};
    if (!b.h || !b.c || !b.g) {
        fprintf(stderr, "FAIL: cannot allocate %zu bytes: %s\n", bytes, pt_error_message());
        exit(1);
    }
    gpu->zero(b.g, bytes + 8);
    return b;
}
/* h -> c and g */
static void push(buf *b)
{
    memcpy(b->c, b->h, b->bytes);
    gpu->to_device(b->g, b->h, b->bytes);
}
static buf mkf(size_t n, float scale)
{
    buf b = mk(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) ((float *)b.h)[i] = scale * frand();
    push(&b);
    return b;
}
static void drop(buf *b)
{
    free(b->h), free(b->c);
    gpu->free(b->g);
}
#define C_(b) ((float *)(b).c)
#define G_(b) ((float *)(b).g)

/* device result into h, compared with the CPU's */
static void cmp_f(const char *what, buf *b, double tol)
{
    REQUIRE_OK(gpu->synchronize());
    gpu->to_host(b->h, b->g, b->bytes);
    const long n = (long)(b->bytes / sizeof(float));
    const double e = max_rel_err((const float *)b->h, (const float *)b->c, n, 1e-3);
    CHECK(e <= tol, "%s: cuda vs cpu max relative error %.3g > %.3g", what, e, tol);
}
static void cmp_exact(const char *what, buf *b)
{
    REQUIRE_OK(gpu->synchronize());
    gpu->to_host(b->h, b->g, b->bytes);
    CHECK(!memcmp(b->h, b->c, b->bytes), "%s: cuda and cpu differ (must be equal)", what);
}
static void cmp_d(const char *what, buf *b, double tol)
{
    REQUIRE_OK(gpu->synchronize());
    gpu->to_host(b->h, b->g, b->bytes);
    const double *x = b->h, *y = b->c;
    double num = 0.0, den = 1e-3;
    for (size_t i = 0; i < b->bytes / sizeof(double); i++) {
        if (isinf(x[i]) || isinf(y[i])) {
            CHECK(x[i] == y[i], "%s[%zu]: cuda %g, cpu %g", what, i, x[i], y[i]);
            continue;
        }
        num = fmax(num, fabs(x[i] - y[i]));
        den = fmax(den, fabs(y[i]));
    }
    CHECK(num / den <= tol, "%s: cuda vs cpu max relative error %.3g > %.3g", what, num / den, tol);
}

static int not_compared;
#define HAVE(entry)                                                                                \
    (cpu->entry ? 1                                                                                \
                : (printf("not compared: the CPU backend has no %s yet\n", #entry),                \
                   not_compared++, 0))

static void t_gemm(void)
{
    const int shapes[][3] = {{7, 5, 3}, {33, 65, 17}, {128, 96, 200}, {1, 1, 1}};
    for (int s = 0; s < 4; s++)
        for (int t = 0; t < 4; t++) {
            const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            const bool ta = t & 1, tb = t & 2;
            buf a = mkf((size_t)m * k, 1), b = mkf((size_t)k * n, 1), c = mkf((size_t)m * n, 1);
            const int lda = ta ? m : k, ldb = tb ? k : n;
            REQUIRE_OK(cpu->gemm(ta, tb, m, n, k, 0.7f, C_(a), lda, C_(b), ldb, 0.5f, C_(c), n));
            REQUIRE_OK(gpu->gemm(ta, tb, m, n, k, 0.7f, G_(a), lda, G_(b), ldb, 0.5f, G_(c), n));
            char what[64];
            snprintf(what, sizeof what, "gemm %dx%dx%d ta=%d tb=%d", m, n, k, ta, tb);
            cmp_f(what, &c, 1e-5);
            drop(&a), drop(&b), drop(&c);
        }
}

static void t_elementwise(void)
{
    const int rows = 37, cols = 29;
    const int64_t n = (int64_t)rows * cols;
    for (int act = PT_ACT_NONE; act <= PT_ACT_TANH; act++) {
        buf y = mkf(n, 4), pre = mkf(n, 0), bias = mkf(cols, 1), dx = mkf(n, 0), dy = mkf(n, 1);
        REQUIRE_OK(cpu->bias_act_forward(C_(y), C_(pre), C_(bias), rows, cols, (pt_act)act));
        REQUIRE_OK(gpu->bias_act_forward(G_(y), G_(pre), G_(bias), rows, cols, (pt_act)act));
        cmp_f("bias_act_forward y", &y, 1e-5);
        cmp_f("bias_act_forward pre_act", &pre, 1e-6);
        REQUIRE_OK(cpu->act_backward(C_(dx), C_(dy), C_(pre), n, (pt_act)act));
        REQUIRE_OK(gpu->act_backward(G_(dx), G_(dy), G_(pre), n, (pt_act)act));
        cmp_f("act_backward", &dx, 1e-5);
        drop(&y), drop(&pre), drop(&bias), drop(&dx), drop(&dy);
    }
    buf a = mkf(n, 1), b = mkf(n, 1), y = mkf(n, 0), db = mkf(cols, 0);
    REQUIRE_OK(cpu->bias_backward(C_(db), C_(a), rows, cols));
    REQUIRE_OK(gpu->bias_backward(G_(db), G_(a), rows, cols));
    cmp_f("bias_backward", &db, 1e-6);
    REQUIRE_OK(cpu->relu(C_(y), C_(a), n));
    REQUIRE_OK(gpu->relu(G_(y), G_(a), n));
    cmp_exact("relu", &y);
    for (int relu = 0; relu < 2; relu++) {
        REQUIRE_OK(cpu->add(C_(y), C_(a), C_(b), n, relu));
        REQUIRE_OK(gpu->add(G_(y), G_(a), G_(b), n, relu));
        cmp_exact("add", &y);
    }
    for (int beta = 0; beta < 2; beta++) {
        REQUIRE_OK(cpu->accumulate(C_(y), C_(a), n, (float)beta));
        REQUIRE_OK(gpu->accumulate(G_(y), G_(a), n, (float)beta));
        cmp_exact("accumulate", &y);
    }
    /* dropout: the same Philox words, so the same bits */
    REQUIRE_OK(cpu->dropout(C_(a), rows, cols, 5, 0.3f, 42, 7));
    REQUIRE_OK(gpu->dropout(G_(a), rows, cols, 5, 0.3f, 42, 7));
    cmp_exact("dropout", &a);
    REQUIRE_OK(cpu->dropout_cols(C_(b), rows, cols, 3, 11, 61, 0.25f, 43, 9));
    REQUIRE_OK(gpu->dropout_cols(G_(b), rows, cols, 3, 11, 61, 0.25f, 43, 9));
    cmp_exact("dropout_cols", &b);
    const double sc = cpu->sum_squares(C_(b), n), sg = gpu->sum_squares(G_(b), n);
    CHECK(fabs(sc - sg) <= 1e-12 * sc, "sum_squares: cpu %.17g, cuda %.17g", sc, sg);
    REQUIRE_OK(cpu->scale(C_(b), n, 0.37f));
    REQUIRE_OK(gpu->scale(G_(b), n, 0.37f));
    cmp_exact("scale", &b);
    CHECK(gpu->all_finite(G_(b), n), "all_finite: finite data reported not finite");
    const float inf = INFINITY;
    gpu->to_device(G_(b) + n / 2, &inf, sizeof inf);
    CHECK(!gpu->all_finite(G_(b), n), "all_finite: an infinity not seen");
    drop(&a), drop(&b), drop(&y), drop(&db);
}

static void t_optim(void)
{
    const int64_t n = 1000;
    static const char *names[] = {"sgd", "momentum", "nesterov", "adagrad", "adam", "adamw"};
    for (int kind = 0; kind < 6; kind++) {
        pt_update_params p = {.lr = 0.01f, .momentum = kind == 1 || kind == 2 ? 0.9f : 0.0f,
                              .weight_decay = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                              .nesterov = kind == 2, .decoupled_wd = kind == 5};
        buf w = mkf(n, 1), g = mkf(n, 1), s0 = mkf(n, 0), s1 = mkf(n, 0);
        for (int t = 1; t <= 3; t++) {
            p.t = t;
            if (kind <= 2) {
                REQUIRE_OK(cpu->sgd_update(C_(w), C_(g), kind ? C_(s0) : NULL, n, &p));
                REQUIRE_OK(gpu->sgd_update(G_(w), G_(g), kind ? G_(s0) : NULL, n, &p));
            } else if (kind == 3) {
                REQUIRE_OK(cpu->adagrad_update(C_(w), C_(g), C_(s0), n, &p));
                REQUIRE_OK(gpu->adagrad_update(G_(w), G_(g), G_(s0), n, &p));
            } else {
                REQUIRE_OK(cpu->adam_update(C_(w), C_(g), C_(s0), C_(s1), n, &p));
                REQUIRE_OK(gpu->adam_update(G_(w), G_(g), G_(s0), G_(s1), n, &p));
            }
        }
        char what[64];
        snprintf(what, sizeof what, "%s update: w", names[kind]);
        cmp_f(what, &w, 1e-5);
        snprintf(what, sizeof what, "%s update: state", names[kind]);
        cmp_f(what, &s0, 1e-5);
        drop(&w), drop(&g), drop(&s0), drop(&s1);
    }
}

static void t_loss(void)
{
    const int rows = 37, cols = 11;
    buf z = mkf((size_t)rows * cols, 6), dz = mkf((size_t)rows * cols, 0);
    buf lab = mk(sizeof(int32_t) * rows);
    for (int r = 0; r < rows; r++) ((int32_t *)lab.h)[r] = (r * 7) % cols;
    push(&lab);
    int64_t cc = -1, cg = -2;
    const double lc = cpu->softmax_xent(C_(z), lab.c, rows, cols, 0.5f, C_(dz), &cc);
    const double lg = gpu->softmax_xent(G_(z), lab.g, rows, cols, 0.5f, G_(dz), &cg);
    CHECK(fabs(lc - lg) <= 1e-6 * fabs(lc), "softmax_xent loss: cpu %.17g, cuda %.17g", lc, lg);
    CHECK(cc == cg, "softmax_xent correct: cpu %lld, cuda %lld", (long long)cc, (long long)cg);
    cmp_f("softmax_xent dlogits", &dz, 1e-5);
    if (HAVE(lm_targets)) {
        const int T = 6, stride = 7;
        buf tok = mk(sizeof(float) * rows * stride), tgt = mk(sizeof(int32_t) * rows * T);
        for (int i = 0; i < rows * stride; i++) ((float *)tok.h)[i] = (float)(i % 13);
        push(&tok);
        REQUIRE_OK(cpu->lm_targets(tok.c, rows, T, stride, tgt.c));
        REQUIRE_OK(gpu->lm_targets(tok.g, rows, T, stride, tgt.g));
        cmp_exact("lm_targets", &tgt);
        drop(&tok), drop(&tgt);
    }
    if (HAVE(vp_xent_max) && HAVE(vp_xent_sums) && HAVE(vp_xent_finish)) {
        const int64_t v0 = 4; /* this slice holds labels 4..14 of a larger vocabulary */
        buf st = mk(sizeof(double) * 4 * rows);
        REQUIRE_OK(cpu->vp_xent_max(C_(z), rows, cols, st.c));
        REQUIRE_OK(gpu->vp_xent_max(G_(z), rows, cols, st.g));
        REQUIRE_OK(cpu->vp_xent_sums(C_(z), lab.c, rows, cols, v0, st.c));
        REQUIRE_OK(gpu->vp_xent_sums(G_(z), lab.g, rows, cols, v0, st.g));
        cmp_d("vp_xent stat", &st, 1e-6);
        gpu->to_device(st.g, st.c, st.bytes); /* the same stat into both finishes */
        const double fc =
            cpu->vp_xent_finish(C_(z), lab.c, rows, cols, v0, st.c, 0.5f, C_(dz), &cc);
        const double fg =
            gpu->vp_xent_finish(G_(z), lab.g, rows, cols, v0, st.g, 0.5f, G_(dz), &cg);
        CHECK(fabs(fc - fg) <= 1e-9 * fabs(fc), "vp_xent_finish: cpu %.17g, cuda %.17g", fc, fg);
        CHECK(cc == cg, "vp_xent_finish correct: cpu %lld, cuda %lld", (long long)cc,
              (long long)cg);
        cmp_f("vp_xent_finish dlogits", &dz, 1e-5);
        drop(&st);
    }
    drop(&z), drop(&dz), drop(&lab);
}

static void t_conv(void)
{
    if (!HAVE(conv2d_forward) || !HAVE(conv2d_backward_weight) || !HAVE(conv2d_backward_input))
        return;
    const pt_conv2d_desc d = {.H = 7, .Cin = 3, .Cout = 4, .k = 3, .stride = 2, .pad = 1, .Ho = 4,
                              .algo = PT_CONV_ALGO_IM2COL};
    const int rows = 3;
    const int64_t nx = (int64_t)rows * d.H * d.H * d.Cin, ny = (int64_t)rows * d.Ho * d.Ho * d.Cout;
    const int64_t nw = (int64_t)d.Cout * d.k * d.k * d.Cin;
    buf x = mkf(nx, 1), w = mkf(nw, 1), b = mkf(d.Cout, 1), y = mkf(ny, 0), dy = mkf(ny, 1);
    buf dw = mkf(nw, 1), dx = mkf(nx, 1);
    float *sc = malloc(sizeof(float) * (size_t)(cpu->conv2d_scratch(&d, rows) + 1));
    float *sg = gpu->alloc(sizeof(float) * (size_t)(gpu->conv2d_scratch(&d, rows) + 1));
    REQUIRE_OK(cpu->conv2d_forward(&d, rows, C_(x), C_(w), C_(b), PT_ACT_RELU, C_(y), sc));
    REQUIRE_OK(gpu->conv2d_forward(&d, rows, G_(x), G_(w), G_(b), PT_ACT_RELU, G_(y), sg));
    cmp_f("conv2d_forward", &y, 1e-5);
    REQUIRE_OK(cpu->conv2d_backward_weight(&d, rows, C_(x), C_(dy), 1.0f, C_(dw), sc));
    REQUIRE_OK(gpu->conv2d_backward_weight(&d, rows, G_(x), G_(dy), 1.0f, G_(dw), sg));
    cmp_f("conv2d_backward_weight", &dw, 1e-5);
    for (int beta = 0; beta < 2; beta++) {
        REQUIRE_OK(cpu->conv2d_backward_input(&d, rows, C_(dy), C_(w), (float)beta, C_(dx), sc));
        REQUIRE_OK(gpu->conv2d_backward_input(&d, rows, G_(dy), G_(w), (float)beta, G_(dx), sg));
        cmp_f("conv2d_backward_input", &dx, 1e-5);
    }
    free(sc), gpu->free(sg);
    drop(&x), drop(&w), drop(&b), drop(&y), drop(&dy), drop(&dw), drop(&dx);
}

static void t_pool(void)
{
    const int rows = 2;
    const pt_pool2d_desc ds[] = {{.H = 6, .C = 3, .k = 2, .stride = 2, .Ho = 3},
                                 {.H = 7, .C = 2, .k = 3, .stride = 2, .Ho = 3}};
    for (int i = 0; i < 2; i++) {
        const pt_pool2d_desc *d = &ds[i];
        const int64_t nx = (int64_t)rows * d->H * d->H * d->C;
        const int64_t ny = (int64_t)rows * d->Ho * d->Ho * d->C;
        buf x = mkf(nx, 1), y = mkf(ny, 0), dy = mkf(ny, 1), dx = mkf(nx, 1);
        buf arg = mk(sizeof(int32_t) * ny);
        if (HAVE(maxpool2d_forward) && HAVE(maxpool2d_backward)) {
            REQUIRE_OK(cpu->maxpool2d_forward(d, rows, C_(x), C_(y), arg.c));
            REQUIRE_OK(gpu->maxpool2d_forward(d, rows, G_(x), G_(y), arg.g));
            cmp_exact("maxpool2d_forward", &y);
            cmp_exact("maxpool2d_forward argmax", &arg);
            for (int beta = 0; beta < 2; beta++) {
                REQUIRE_OK(cpu->maxpool2d_backward(d, rows, C_(dy), arg.c, (float)beta, C_(dx)));
                REQUIRE_OK(gpu->maxpool2d_backward(d, rows, G_(dy), arg.g, (float)beta, G_(dx)));
                cmp_f("maxpool2d_backward", &dx, 1e-6);
            }
        }
        if (HAVE(avgpool2d_forward) && HAVE(avgpool2d_backward)) {
            REQUIRE_OK(cpu->avgpool2d_forward(d, rows, C_(x), C_(y)));
            REQUIRE_OK(gpu->avgpool2d_forward(d, rows, G_(x), G_(y)));
            cmp_f("avgpool2d_forward", &y, 1e-6);
            for (int beta = 0; beta < 2; beta++) {
                REQUIRE_OK(cpu->avgpool2d_backward(d, rows, C_(dy), (float)beta, C_(dx)));
                REQUIRE_OK(gpu->avgpool2d_backward(d, rows, G_(dy), (float)beta, G_(dx)));
                cmp_f("avgpool2d_backward", &dx, 1e-6);
            }
        }
        drop(&x), drop(&y), drop(&dy), drop(&dx), drop(&arg);
    }
    if (HAVE(maxtime_forward) && HAVE(maxtime_backward)) {
        const pt_maxtime_desc d = {.L = 8, .F = 5, .k = 3, .y_col = 5, .y_width = 12};
        const int64_t nc = (int64_t)rows * d.L * d.F, ny = (int64_t)rows * d.y_width;
        buf conv = mkf(nc, 1), b = mkf(d.F, 1), y = mkf(ny, 0), dy = mkf(ny, 1), dconv = mkf(nc, 1);
        buf db = mkf(d.F, 0), arg = mk(sizeof(int32_t) * rows * d.F);
        REQUIRE_OK(cpu->maxtime_forward(&d, rows, C_(conv), C_(b), C_(y), arg.c));
        REQUIRE_OK(gpu->maxtime_forward(&d, rows, G_(conv), G_(b), G_(y), arg.g));
        cmp_exact("maxtime_forward", &y);
        cmp_exact("maxtime_forward argmax", &arg);
        REQUIRE_OK(cpu->maxtime_backward(&d, rows, C_(dy), arg.c, C_(dconv), C_(db)));
        REQUIRE_OK(gpu->maxtime_backward(&d, rows, G_(dy), arg.g, G_(dconv), G_(db)));
        cmp_exact("maxtime_backward dconv", &dconv);
        cmp_f("maxtime_backward db", &db, 1e-6);
        drop(&conv), drop(&b), drop(&y), drop(&dy), drop(&dconv), drop(&db), drop(&arg);
    }
}

static void t_norm(void)
{
    if (HAVE(batchnorm_stats) && HAVE(batchnorm_forward_apply) &&
        HAVE(batchnorm_backward_stats) && HAVE(batchnorm_backward_apply)) {
        const pt_batchnorm_desc d = {.C = 5, .momentum = 0.1f, .eps = 1e-5f, .act = PT_ACT_RELU};
        const int64_t n = 40, nx = n * d.C;
        buf x = mkf(nx, 3), y = mkf(nx, 0), dy = mkf(nx, 1), dx = mkf(nx, 1);
        buf gam = mkf(d.C, 2), bet = mkf(d.C, 1), rm = mkf(d.C, 1), rv = mkf(d.C, 0);
        buf mean = mkf(d.C, 0), rstd = mkf(d.C, 0), dg = mkf(d.C, 0), dbt = mkf(d.C, 0);
        buf sums = mk(sizeof(double) * (2 * d.C + 1));
        for (int c = 0; c < d.C; c++) ((float *)rv.h)[c] = 1.0f;
        push(&rv);
        float *sc = malloc(sizeof(float) * (size_t)(cpu->batchnorm_scratch(&d) + 1));
        float *sg = gpu->alloc(sizeof(float) * (size_t)(gpu->batchnorm_scratch(&d) + 1));
        REQUIRE_OK(cpu->batchnorm_stats(&d, n, C_(x), sums.c, sc));
        REQUIRE_OK(gpu->batchnorm_stats(&d, n, G_(x), sums.g, sg));
        cmp_d("batchnorm_stats", &sums, 1e-12);
        REQUIRE_OK(cpu->batchnorm_forward_apply(&d, n, C_(x), sums.c, C_(gam), C_(bet), C_(rm),
                                                C_(rv), C_(mean), C_(rstd), C_(y)));
        REQUIRE_OK(gpu->batchnorm_forward_apply(&d, n, G_(x), sums.g, G_(gam), G_(bet), G_(rm),
                                                G_(rv), G_(mean), G_(rstd), G_(y)));
        cmp_f("batchnorm_forward_apply y", &y, 1e-5);
        cmp_f("batchnorm running_mean", &rm, 1e-6);
        cmp_f("batchnorm running_var", &rv, 1e-6);
        REQUIRE_OK(cpu->batchnorm_backward_stats(&d, n, C_(dy), C_(x), C_(mean), C_(rstd), sums.c,
                                                 C_(dg), C_(dbt), sc));
        REQUIRE_OK(gpu->batchnorm_backward_stats(&d, n, G_(dy), G_(x), G_(mean), G_(rstd), sums.g,
                                                 G_(dg), G_(dbt), sg));
        cmp_d("batchnorm_backward_stats", &sums, 1e-9);
        cmp_f("batchnorm dgamma", &dg, 1e-5);
        cmp_f("batchnorm dbeta", &dbt, 1e-6);
        REQUIRE_OK(cpu->batchnorm_backward_apply(&d, n, C_(dy), C_(x), C_(gam), C_(mean), C_(rstd),
                                                 sums.c, 1.0f, C_(dx)));
        REQUIRE_OK(gpu->batchnorm_backward_apply(&d, n, G_(dy), G_(x), G_(gam), G_(mean), G_(rstd),
                                                 sums.g, 1.0f, G_(dx)));
        cmp_f("batchnorm_backward_apply", &dx, 1e-5);
        /* eval: the running statistics */
        REQUIRE_OK(cpu->batchnorm_forward_apply(&d, n, C_(x), NULL, C_(gam), C_(bet), C_(rm),
                                                C_(rv), C_(mean), C_(rstd), C_(y)));
        REQUIRE_OK(gpu->batchnorm_forward_apply(&d, n, G_(x), NULL, G_(gam), G_(bet), G_(rm),
                                                G_(rv), G_(mean), G_(rstd), G_(y)));
        cmp_f("batchnorm_forward_apply (eval)", &y, 1e-5);
        free(sc), gpu->free(sg);
        drop(&x), drop(&y), drop(&dy), drop(&dx), drop(&gam), drop(&bet), drop(&rm), drop(&rv);
        drop(&mean), drop(&rstd), drop(&dg), drop(&dbt), drop(&sums);
    }
    if (HAVE(layernorm_forward) && HAVE(layernorm_backward)) {
        const pt_layernorm_desc d = {.D = 12, .eps = 1e-5f};
        const int64_t n = 9, nx = n * d.D;
        buf x = mkf(nx, 3), y = mkf(nx, 0), dy = mkf(nx, 1), dx = mkf(nx, 1), st = mkf(2 * n, 0);
        buf gam = mkf(d.D, 2), bet = mkf(d.D, 1), dg = mkf(d.D, 0), dbt = mkf(d.D, 0);
        REQUIRE_OK(cpu->layernorm_forward(&d, n, C_(x), C_(gam), C_(bet), C_(y), C_(st)));
        REQUIRE_OK(gpu->layernorm_forward(&d, n, G_(x), G_(gam), G_(bet), G_(y), G_(st)));
        cmp_f("layernorm_forward", &y, 1e-5);
        cmp_f("layernorm_forward stat", &st, 1e-5);
        gpu->to_device(st.g, st.c, st.bytes);
        REQUIRE_OK(cpu->layernorm_backward(&d, n, C_(x), C_(dy), C_(gam), C_(st), C_(dg), C_(dbt),
                                           1.0f, C_(dx)));
        REQUIRE_OK(gpu->layernorm_backward(&d, n, G_(x), G_(dy), G_(gam), G_(st), G_(dg), G_(dbt),
                                           1.0f, G_(dx)));
        cmp_f("layernorm_backward dx", &dx, 1e-5);
        cmp_f("layernorm_backward dgamma", &dg, 1e-5);
        cmp_f("layernorm_backward dbeta", &dbt, 1e-6);
        drop(&x), drop(&y), drop(&dy), drop(&dx), drop(&st), drop(&gam), drop(&bet), drop(&dg);
        drop(&dbt);
    }
}

static void t_attention(void)
{
    const int rows = 3;
    if (HAVE(embedding_forward) && HAVE(embedding_backward)) {
        const pt_embedding_desc ds[] = {{.T = 6, .D = 8, .V = 11, .stride = 7},
                                        {.T = 6, .D = 8, .V = 11, .stride = 7, .v0 = 3, .Vl = 4,
                                         .no_wpe = 1}};
        for (int i = 0; i < 2; i++) {
            const pt_embedding_desc *d = &ds[i];
            const int Vl = d->Vl ? d->Vl : d->V;
            buf tok = mk(sizeof(float) * rows * d->stride);
            for (int j = 0; j < rows * d->stride; j++)
                ((float *)tok.h)[j] = (float)((j * 5) % d->V);
            push(&tok);
            buf wte = mkf((size_t)Vl * d->D, 1), wpe = mkf((size_t)d->T * d->D, 1);
            buf y = mkf((size_t)rows * d->T * d->D, 0), dy = mkf((size_t)rows * d->T * d->D, 1);
            buf dwte = mkf((size_t)Vl * d->D, 1), dwpe = mkf((size_t)d->T * d->D, 0);
            const bool pe = !d->no_wpe;
            REQUIRE_OK(cpu->embedding_forward(d, rows, tok.c, C_(wte), pe ? C_(wpe) : NULL, C_(y)));
            REQUIRE_OK(gpu->embedding_forward(d, rows, tok.g, G_(wte), pe ? G_(wpe) : NULL, G_(y)));
            cmp_exact("embedding_forward", &y);
            for (int beta = 0; beta < 2; beta++) {
                REQUIRE_OK(cpu->embedding_backward(d, rows, tok.c, C_(dy), (float)beta, C_(dwte),
                                                   pe ? C_(dwpe) : NULL));
                REQUIRE_OK(gpu->embedding_backward(d, rows, tok.g, G_(dy), (float)beta, G_(dwte),
                                                   pe ? G_(dwpe) : NULL));
                cmp_f("embedding_backward dwte", &dwte, 1e-6);
                cmp_f("embedding_backward dwpe", &dwpe, 1e-6);
            }
            drop(&tok), drop(&wte), drop(&wpe), drop(&y), drop(&dy), drop(&dwte), drop(&dwpe);
        }
    }
    if (HAVE(attention_forward) && HAVE(attention_backward)) {
        const pt_attention_desc d = {.T = 9, .D = 8, .H = 2};
        const int64_t nq = (int64_t)rows * d.T * 3 * d.D, ny = (int64_t)rows * d.T * d.D;
        buf qkv = mkf(nq, 2), y = mkf(ny, 0), dy = mkf(ny, 1);
        buf lse = mkf((size_t)rows * d.H * d.T, 0);
        buf dqkv = mkf(nq, 1);
        REQUIRE_OK(cpu->attention_forward(&d, rows, C_(qkv), C_(y), C_(lse)));
        REQUIRE_OK(gpu->attention_forward(&d, rows, G_(qkv), G_(y), G_(lse)));
        cmp_f("attention_forward y", &y, 1e-5);
        cmp_f("attention_forward lse", &lse, 1e-5);
        for (int beta = 0; beta < 2; beta++) {
            REQUIRE_OK(cpu->attention_backward(&d, rows, C_(qkv), C_(y), C_(dy), C_(lse),
                                               (float)beta, C_(dqkv)));
            REQUIRE_OK(gpu->attention_backward(&d, rows, G_(qkv), G_(y), G_(dy), G_(lse),
                                               (float)beta, G_(dqkv)));
            cmp_f("attention_backward", &dqkv, 1e-4);
        }
        drop(&qkv), drop(&y), drop(&dy), drop(&lse), drop(&dqkv);
    }
}

int main(void)
{
    cpu = pt_backend_cpu();
    gpu = pt_backend_cuda();
    if (!gpu) {
        const char *why = pt_backend_cuda_why();
        /* the reason already names what is missing: "no CUDA device: ..." or the build */
        if (strncmp(why, "no CUDA device", 14)) printf("SKIP: no CUDA backend: %s\n", why);
        else printf("SKIP: %s\n", why);
        return 77;
    }
    t_gemm();
    t_elementwise();
    t_optim();
    t_loss();
    t_conv();
    t_pool();
    t_norm();
    t_attention();
    REQUIRE_OK(gpu->synchronize());
    if (not_compared) printf("%d CPU entries missing: not compared\n", not_compared);
    return test_exit_code("t_cuda_backend");
}
