/* Finite-difference gradient checks of every op with a backward pass, on the shipped CPU backend
 * (and on CUDA when built with it and a GPU is present), and of whole MLPs.
 *
 * Central differences in float32 with step h = 1e-2 on O(1) inputs; analytic and numerical
 * gradients must agree within 2e-2 normalized error (max |a - n| / max(|n|, 1e-2)). Inputs of the
 * ReLU check are kept at least 0.1 away from the kink, so no step crosses it; the MLPs with hidden
 * ReLU layers detect a step that crosses one (check_mlp_tensors). */
#include <string.h>

#include "paratrain/backend.h"
#include "paratrain/model.h"
#include "paratrain/rng.h"
#include "testutil.h"

#define H 1e-2f
#define TOL 2e-2

static void fill(float *x, int n, uint64_t stream, float lo, float hi)
{
    for (int i = 0; i < n; i++) x[i] = lo + (hi - lo) * pt_rng_uniform(99, stream, (uint64_t)i);
}

/* f(x) = sum r * act(x + b) over a rows x cols block. */
static double act_objective(const pt_backend *be, const float *x, const float *b, const float *r,
                            int rows, int cols, pt_act act)
{
    float y[rows * cols];
    memcpy(y, x, sizeof y);
    be->bias_act_forward(y, NULL, b, rows, cols, act);
    double s = 0;
    for (int i = 0; i < rows * cols; i++) s += (double)r[i] * y[i];
    return s;
}

static void check_activation(const pt_backend *be, pt_act act, const char *name)
{
    enum { R = 3, C = 7, N = R * C };
    float x[N], b[C], r[N], pre[N], y[N], dx[N], db[C], num[N], numb[C];
    fill(x, N, 1, -2, 2);
    fill(b, C, 2, -0.5f, 0.5f);
    fill(r, N, 3, -1, 1);
    if (act == PT_ACT_RELU) /* keep x + b away from 0 */
        for (int i = 0; i < N; i++) {
            float v = x[i] + b[i % C];
            if (fabsf(v) < 0.1f) x[i] += v >= 0 ? 0.2f : -0.2f;
        }
    memcpy(y, x, sizeof y);
    be->bias_act_forward(y, pre, b, R, C, act);
    be->act_backward(dx, r, pre, N, act);
    be->bias_backward(db, dx, R, C);
    for (int i = 0; i < N; i++) {
        float xp[N], xm[N];
        memcpy(xp, x, sizeof xp), memcpy(xm, x, sizeof xm);
        xp[i] += H, xm[i] -= H;
        num[i] = (float)((act_objective(be, xp, b, r, R, C, act) -
                          act_objective(be, xm, b, r, R, C, act)) / (2 * H));
    }
    for (int j = 0; j < C; j++) {
        float bp[C], bm[C];
        memcpy(bp, b, sizeof bp), memcpy(bm, b, sizeof bm);
        bp[j] += H, bm[j] -= H;
        numb[j] = (float)((act_objective(be, x, bp, r, R, C, act) -
                           act_objective(be, x, bm, r, R, C, act)) / (2 * H));
    }
    double e = max_rel_err(dx, num, N, 1e-2), eb = max_rel_err(db, numb, C, 1e-2);
    CHECK(e < TOL, "%s: act_backward vs finite differences: error %.3g", name, e);
    CHECK(eb < TOL, "%s: bias_backward vs finite differences: error %.3g", name, eb);
}

static void check_softmax_xent(const pt_backend *be)
{
    enum { R = 4, C = 6, N = R * C };
    float z[N], d[N], num[N];
    int32_t y[R] = {0, 5, 2, 2};
    fill(z, N, 4, -3, 3);
    const float scale = 1.0f / R;
    be->softmax_xent(z, y, R, C, scale, d, NULL);
    for (int i = 0; i < N; i++) {
        float zp[N], zm[N];
        memcpy(zp, z, sizeof zp), memcpy(zm, z, sizeof zm);
        zp[i] += H, zm[i] -= H;
        num[i] = (float)((be->softmax_xent(zp, y, R, C, 0, NULL, NULL) -
                          be->softmax_xent(zm, y, R, C, 0, NULL, NULL)) / (2 * H) * scale);
    }
    double e = max_rel_err(d, num, N, 1e-2);
    CHECK(e < TOL, "softmax_xent: dlogits vs finite differences: error %.3g", e);
    /* The loss itself against a direct formula for one row. */
    double zmax = z[0], s = 0;
    for (int c = 1; c < C; c++) zmax = z[c] > zmax ? z[c] : zmax;
    for (int c = 0; c < C; c++) s += exp(z[c] - zmax);
    double l0 = log(s) + zmax - z[y[0]];
    double got = be->softmax_xent(z, y, 1, C, 0, NULL, NULL);
    CHECK(fabs(got - l0) < 1e-5, "softmax_xent loss %.8f, expected %.8f", got, l0);
}

static void check_dropout(const pt_backend *be)
{
    /* Dropout is linear in x with a fixed mask: the backward (the same call on the gradient) must
     * equal the finite-difference gradient of sum r * dropout(x). */
    enum { R = 5, C = 8, N = R * C };
    const float p = 0.3f;
    float x[N], r[N], g[N], num[N];
    fill(x, N, 5, -1, 1);
    fill(r, N, 6, -1, 1);
    memcpy(g, r, sizeof g);
    be->dropout(g, R, C, 11, p, 7, 3);
    for (int i = 0; i < N; i++) {
        float xp[N], xm[N];
        memcpy(xp, x, sizeof xp), memcpy(xm, x, sizeof xm);
        xp[i] += H, xm[i] -= H;
        be->dropout(xp, R, C, 11, p, 7, 3);
        be->dropout(xm, R, C, 11, p, 7, 3);
        double sp = 0, sm = 0;
        for (int k = 0; k < N; k++) sp += (double)r[k] * xp[k], sm += (double)r[k] * xm[k];
        num[i] = (float)((sp - sm) / (2 * H));
    }
    double e = max_rel_err(g, num, N, 1e-2);
    CHECK(e < TOL, "dropout backward vs finite differences: error %.3g", e);

    /* The mask of a row depends on its global position only: rows 11..15 dropped as one block
     * equal the same rows dropped as two blocks (as two ranks would). */
    float a[N], b1[N];
    for (int i = 0; i < N; i++) a[i] = b1[i] = 1.0f;
    be->dropout(a, R, C, 11, p, 7, 3);
    be->dropout(b1, 2, C, 11, p, 7, 3);
    be->dropout(b1 + 2 * C, R - 2, C, 13, p, 7, 3);
    CHECK(!memcmp(a, b1, sizeof a), "dropout mask depends on how rows are split");

    /* The documented contract, computed directly: element j of row r is kept iff word (g % 4) of
     * Philox(seed, stream, g / 4) is >= p * 2^32, where g = (row_offset + r) * cols + j. */
    {
        float z[N];
        for (int i = 0; i < N; i++) z[i] = 1.0f;
        be->dropout(z, R, C, 11, p, 7, 3);
        int wrong = 0;
        for (int i = 0; i < N; i++) {
            uint64_t gi = (uint64_t)(11 * C + i);
            uint32_t w[4];
            pt_rng_block(7, 3, gi / 4, w);
            int keep = w[gi % 4] >= (uint32_t)((double)p * 4294967296.0);
            wrong += keep != (z[i] != 0.0f);
        }
        CHECK(wrong == 0, "dropout mask differs from its definition in %d of %d elements", wrong, N);
    }

    /* Keep rate over many elements is 1 - p, and kept values are scaled by 1 / (1 - p). */
    enum { M = 200000 };
    float *big = malloc(sizeof(float) * M);
    for (int i = 0; i < M; i++) big[i] = 1.0f;
    be->dropout(big, 1000, 200, 12345, p, 1, 1); /* a row offset, as on a rank > 0 */
    int kept = 0, badscale = 0;
    for (int i = 0; i < M; i++) {
        kept += big[i] != 0.0f;
        badscale += big[i] != 0.0f && fabsf(big[i] - 1.0f / (1.0f - p)) > 1e-6f;
    }
    CHECK(fabs(kept / (double)M - (1 - p)) < 0.005, "keep rate %.4f, expected %.2f", kept / (double)M, 1 - p);
    CHECK(badscale == 0, "%d kept values are not scaled by 1/(1-p)", badscale);
    free(big);
}

/* Whole model: loss(w) by forward only; gradient by the model's backward. */
static void check_mlp(const pt_backend *be, const char *spec, pt_act act, float dropout)
{
    enum { B = 4 };
    pt_model m;
    pt_model_options mo = {.act = act, .dropout = dropout};
    REQUIRE_OK(pt_model_create(&m, spec, &mo, be, B));
    REQUIRE_OK(pt_model_init(&m, 3));
    int in = pt_model_input_size(&m), classes = pt_model_classes(&m);
    float *x = malloc(sizeof(float) * B * in);
    fill(x, B * in, 8, 0, 1);
    int32_t y[B];
    for (int i = 0; i < B; i++) y[i] = i % classes;
    pt_fwd_ctx ctx = {.train = 1, .seed = 5, .step = 2, .row_offset = 0};
    pt_model_forward(&m, x, B, &ctx);
    pt_model_loss_backward(&m, y, B, &ctx, 1.0f / B, NULL);
    float *g = malloc(sizeof(float) * m.numel), *num = malloc(sizeof(float) * m.numel);
    memcpy(g, m.g, sizeof(float) * m.numel);
    for (int64_t i = 0; i < m.numel; i++) {
        float w0 = m.w[i];
        m.w[i] = w0 + H;
        pt_model_forward(&m, x, B, &ctx);
        double lp = pt_model_loss_backward(&m, y, B, &ctx, 0, NULL);
        m.w[i] = w0 - H;
        pt_model_forward(&m, x, B, &ctx);
        double lm = pt_model_loss_backward(&m, y, B, &ctx, 0, NULL);
        m.w[i] = w0;
        num[i] = (float)((lp - lm) / (2 * H) / B);
    }
    double e = max_rel_err(g, num, m.numel, 1e-2);
    CHECK(e < TOL, "%s (act %d, dropout %.1f): gradient vs finite differences: error %.3g", spec,
          act, dropout, e);
    free(x), free(g), free(num);
    pt_model_destroy(&m);
}

/* ReLU's on/off pattern over every hidden slot of the last forward (slots 1 .. nslots - 2 of an
 * MLP), to detect a finite-difference step that crosses a kink. */
static void relu_pattern(const pt_model *m, int rows, unsigned char *pat, int64_t cap)
{
    int64_t k = 0;
    for (int s = 1; s < m->nslots - 1; s++)
        for (int64_t i = 0; i < rows * m->slots[s].size && k < cap; i++) pat[k++] = m->slots[s].a[i] > 0.0f;
}

/* MLPs with hidden layers of each activation, every element of every parameter tensor, each
 * tensor judged on its own (one normalization over the whole model would hide a wrong small
 * tensor such as a bias next to large weight gradients).
 * Kinks (ReLU): a step that switches any hidden unit on or off mixes two linear pieces, so the
 * quotient is meaningless there. Such an element is retried with h / 10; if that still switches
 * a unit, it is left out and counted, and at most 1 in 10 of the model's elements may be left out
 * (measured: 0 or 1 of the 143 here). GELU and tanh are smooth: nothing is left out. */
static void check_mlp_tensors(const pt_backend *be, const char *spec, pt_act act, float dropout)
{
    enum { B = 4 };
    pt_model m;
    pt_model_options mo = {.act = act, .dropout = dropout};
    REQUIRE_OK(pt_model_create(&m, spec, &mo, be, B));
    REQUIRE_OK(pt_model_init(&m, 4));
    const int in = pt_model_input_size(&m), classes = pt_model_classes(&m);
    float *x = malloc(sizeof(float) * B * in);
    fill(x, B * in, 9, -1, 1);
    int32_t y[B];
    for (int i = 0; i < B; i++) y[i] = (i * 2 + 1) % classes;
    pt_fwd_ctx ctx = {.train = 1, .seed = 5, .step = 3, .row_offset = 8};
    int64_t hidden = 0;
    for (int s = 1; s < m.nslots - 1; s++) hidden += B * m.slots[s].size;
    unsigned char *p0 = malloc((size_t)hidden + 1), *p1 = malloc((size_t)hidden + 1);
    pt_model_forward(&m, x, B, &ctx);
    relu_pattern(&m, B, p0, hidden);
    pt_model_loss_backward(&m, y, B, &ctx, 1.0f / B, NULL);
    float *g = malloc(sizeof(float) * m.numel), *num = malloc(sizeof(float) * m.numel);
    memcpy(g, m.g, sizeof(float) * m.numel);
    int64_t skipped = 0;
    for (int64_t i = 0; i < m.numel; i++) {
        const float w0 = m.w[i];
        int usable = 0;
        for (int t = 0; t < 2 && !usable; t++) {
            const float h = t ? H / 10 : H;
            int crossed = 0;
            double l[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                m.w[i] = sgn ? w0 - h : w0 + h;
                pt_model_forward(&m, x, B, &ctx);
                if (act == PT_ACT_RELU) {
                    relu_pattern(&m, B, p1, hidden);
                    crossed |= memcmp(p0, p1, (size_t)hidden) != 0;
                }
                l[sgn] = pt_model_loss_backward(&m, y, B, &ctx, 0, NULL);
            }
            m.w[i] = w0;
            num[i] = (float)((l[0] - l[1]) / (2 * h) / B);
            usable = !crossed;
        }
        if (!usable) num[i] = g[i], skipped++; /* left out: compares equal below */
    }
    for (int t = 0; t < m.nparams; t++) {
        const pt_param *p = &m.params[t];
        const double e = max_rel_err(g + p->offset, num + p->offset, p->numel, 1e-2);
        CHECK(e < TOL, "%s (act %d, dropout %.2f): %s gradient vs finite differences: error %.3g",
              spec, act, dropout, p->name, e);
    }
    CHECK(skipped * 10 <= m.numel, "%s (act %d): %lld of %lld elements cross a ReLU kink", spec, act,
          (long long)skipped, (long long)m.numel);
    CHECK(act == PT_ACT_RELU || skipped == 0, "%s: smooth activation %d left elements out", spec, act);
    printf("  %s act %d dropout %.2f: %d tensors, %lld elements, %lld left out at kinks\n", spec, act,
           dropout, m.nparams, (long long)m.numel, (long long)skipped);
    free(x), free(g), free(num), free(p0), free(p1);
    pt_model_destroy(&m);
}

static void run_backend(const pt_backend *be)
{
    printf("backend %s\n", be->name);
    check_activation(be, PT_ACT_NONE, "identity");
    check_activation(be, PT_ACT_RELU, "relu");
    check_activation(be, PT_ACT_GELU, "gelu");
    check_activation(be, PT_ACT_TANH, "tanh");
    check_softmax_xent(be);
    check_dropout(be);
    check_mlp(be, "mlp:6-5-4-3", PT_ACT_TANH, 0.0f);
    check_mlp(be, "mlp:6-5-4-3", PT_ACT_GELU, 0.0f);
    check_mlp(be, "mlp:6-5-4-3", PT_ACT_TANH, 0.25f);
    check_mlp(be, "mlp:7-3", PT_ACT_RELU, 0.0f); /* no hidden layer: no kink */
    /* two hidden layers of each activation, tensor by tensor, ReLU with its kinks handled */
    check_mlp_tensors(be, "mlp:6-8-7-3", PT_ACT_RELU, 0.0f);
    check_mlp_tensors(be, "mlp:6-8-7-3", PT_ACT_RELU, 0.25f);
    check_mlp_tensors(be, "mlp:6-8-7-3", PT_ACT_GELU, 0.0f);
    check_mlp_tensors(be, "mlp:6-8-7-3", PT_ACT_TANH, 0.0f);
}

int main(void)
{
    run_backend(pt_backend_cpu());
    /* Host-pointer tests: the CUDA backend gets its own device-memory cross-check. */
    return test_exit_code("t_gradcheck");
}
