/* Every model other than the MLP against PyTorch, and every op's gradients against finite
 * differences (tests/fixtures/models_torch.h5, written by tests/fixtures/gen_model_fixtures.py).
 *
 * Per model (small configurations that still use every op: conv2d with stride 1 and 2, 1x1
 * convolutions, max and average pooling, batch norm, layer norm, embeddings, TextCNN's conv1d
 * with max-over-time, causal attention, GELU, residual adds and the tied output layer):
 *   - logits, loss, every parameter gradient, every parameter after one AdamW step, and the
 *     batch-norm running statistics, against PyTorch: normalized error (max |ours - torch| /
 *     max |torch|) below 1e-4. Both sides compute in float32; sums run in other orders.
 *     After the AdamW step, elements whose PyTorch gradient is below 1e-6 of the tensor's largest
 *     are skipped: Adam's first step is lr * g / |g|, so a gradient that is zero up to rounding
 *     (the key bias of attention: softmax ignores a shift shared by all keys) moves by +-lr on
 *     either side at random.
 *   - finite differences: for a spread of elements of every parameter tensor, the central
 *     difference (h = 1e-3, float32) of the loss against the analytic gradient, error below
 *     2e-2 of max(|numerical|, 1e-2), or with h / 4 where h fails. Steps that cross a ReLU or
 *     max-pool kink make a difference quotient meaningless, so up to 1 in 20 elements may
 *     disagree (measured: 0 to 2 of 40-160 per model); a wrong op moves far more. The gradient of each parameter passes through every op
 *     between it and the loss, so each op's input gradient is checked too. */
#include <hdf5.h>
#include <string.h>

#include "../kernels/cpu/conv_direct.h"
#include "../src/nn/graph.h"
#include "paratrain/model.h"
#include "paratrain/optim.h"
#include "testutil.h"

#define TOL_TORCH 1e-4
#define TOL_FD 2e-2
#define FD_H 1e-3f

static hid_t fx;

static void read_f32(hid_t g, const char *name, float *buf)
{
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0 || H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        fprintf(stderr, "FAIL: cannot read %s from the fixture\n", name);
        exit(1);
    }
    H5Dclose(d);
}

static double loss_of(pt_model *m, const float *x, const int32_t *y, int B)
{
    pt_fwd_ctx ctx = {.train = 1};
    pt_model_forward(m, x, B, &ctx);
    return pt_model_loss_backward(m, y, B, &ctx, 0.0f, NULL) / B;
}

static void check_model(const char *spec, int conv_algo)
{
    enum { B = 4 };
    hid_t g = H5Gopen2(fx, spec, H5P_DEFAULT);
    if (g < 0) {
        CHECK(0, "fixture has no group '%s'", spec);
        return;
    }
    pt_model m;
    pt_model_options mo = {.act = PT_ACT_RELU, .conv_algo = conv_algo};
    REQUIRE_OK(pt_model_create(&m, spec, &mo, pt_backend_cpu(), B));
    REQUIRE_OK(pt_model_init(&m, 1));
    int64_t runs0[2][3];
    for (int d = 0; d < 2; d++)
        for (int ph = 0; ph < 3; ph++) runs0[d][ph] = pt_conv_phase_count(d, ph);
    char name[160];
    for (int i = 0; i < m.nparams; i++) {
        snprintf(name, sizeof name, "init/%s", m.params[i].name);
        read_f32(g, name, m.w + m.params[i].offset);
    }
    const int S = pt_model_input_size(&m), T = pt_model_targets(&m), C = pt_model_classes(&m);
    float *x = malloc(sizeof(float) * B * S), *ref = malloc(sizeof(float) * (m.numel + B * T * C));
    int32_t y[B];
    read_f32(g, "x", x);
    hid_t d = H5Dopen2(g, "y", H5P_DEFAULT);
    H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
    H5Dclose(d);
    double loss_ref;
    d = H5Dopen2(g, "loss", H5P_DEFAULT);
    H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &loss_ref);
    H5Dclose(d);

    /* forward, loss, backward */
    pt_fwd_ctx ctx = {.train = 1};
    const float *logits = pt_model_forward(&m, x, B, &ctx);
    read_f32(g, "logits", ref);
    double e = max_rel_err(logits, ref, B * T * C, 1e-6);
    CHECK(e < TOL_TORCH, "%s: logits vs PyTorch: error %.3g", spec, e);
    double loss = pt_model_loss_backward(&m, y, B, &ctx, 1.0f / B, NULL) / B;
    CHECK(fabs(loss - loss_ref) < TOL_TORCH * fabs(loss_ref), "%s: loss %.7f, PyTorch %.7f", spec,
          loss, loss_ref);
    for (int i = 0; i < m.nparams; i++) {
        const pt_param *p = &m.params[i];
        snprintf(name, sizeof name, "grad/%s", p->name);
        read_f32(g, name, ref);
        e = max_rel_err(m.g + p->offset, ref, p->numel, 1e-6);
        CHECK(e < TOL_TORCH, "%s: gradient of %s vs PyTorch: error %.3g", spec, p->name, e);
    }

    /* finite differences, on a copy of the analytic gradient */
    float *grad = malloc(sizeof(float) * m.numel);
    memcpy(grad, m.g, sizeof(float) * m.numel);
    int fd_bad = 0, fd_total = 0;
    for (int i = 0; i < m.nparams; i++) {
        const pt_param *p = &m.params[i];
        const int64_t picks = p->numel < 6 ? p->numel : 6;
        for (int64_t k = 0; k < picks; k++) {
            const int64_t j = p->offset + (k * 7919) % p->numel;
            const float w0 = m.w[j];
            int ok = 0;
            double num = 0.0;
            for (int t = 0; t < 2 && !ok; t++) { /* a second, smaller step when the first
                                                   crosses a ReLU or max-pool kink */
                const float h = t ? FD_H / 4 : FD_H;
                m.w[j] = w0 + h;
                double lp = loss_of(&m, x, y, B);
                m.w[j] = w0 - h;
                double lm = loss_of(&m, x, y, B);
                m.w[j] = w0;
                num = (lp - lm) / (2.0 * h);
                ok = fabs(num - grad[j]) <= TOL_FD * (fabs(num) > 1e-2 ? fabs(num) : 1e-2);
            }
            fd_total++;
            if (!ok && fd_bad++ < 5)
                fprintf(stderr, "  %s: %s[%lld]: analytic %.6g, finite difference %.6g\n", spec,
                        p->name, (long long)(j - p->offset), grad[j], num);
        }
    }
    CHECK(fd_bad <= fd_total / 20, "%s: %d of %d gradient elements disagree with finite differences",
          spec, fd_bad, fd_total);

    /* one AdamW step from the fixture's gradients state: rerun forward/backward first, since the
     * finite differences moved the batch-norm running statistics */
    for (int b = 0; b < m.nbuffers; b++)
        for (int64_t i = 0; i < m.buffers[b].numel; i++)
            m.buf[m.buffers[b].offset + i] = m.buffers[b].init_arg;
    pt_model_forward(&m, x, B, &ctx);
    pt_model_loss_backward(&m, y, B, &ctx, 1.0f / B, NULL);
    pt_optim_config oc;
    REQUIRE_OK(pt_optim_config_parse(&oc, "adamw"));
    oc.lr = 1e-2f, oc.weight_decay = 0.01f, oc.beta1 = 0.9f, oc.beta2 = 0.999f, oc.eps = 1e-8f;
    pt_optimizer opt;
    REQUIRE_OK(pt_optim_create(&opt, &oc, m.be, m.numel));
    pt_optim_step(&opt, m.w, m.g, oc.lr);
    float *gref = malloc(sizeof(float) * m.numel);
    for (int i = 0; i < m.nparams; i++) {
        const pt_param *p = &m.params[i];
        snprintf(name, sizeof name, "grad/%s", p->name);
        read_f32(g, name, gref);
        snprintf(name, sizeof name, "after/%s", p->name);
        read_f32(g, name, ref);
        float gmax = 0.0f;
        for (int64_t k = 0; k < p->numel; k++) gmax = fabsf(gref[k]) > gmax ? fabsf(gref[k]) : gmax;
        for (int64_t k = 0; k < p->numel; k++)
            if (fabsf(gref[k]) < 1e-6f * gmax) ref[k] = m.w[p->offset + k]; /* skipped */
        e = max_rel_err(m.w + p->offset, ref, p->numel, 1e-6);
        CHECK(e < TOL_TORCH, "%s: %s after one AdamW step vs PyTorch: error %.3g", spec, p->name, e);
    }
    for (int b = 0; b < m.nbuffers; b++) {
        const pt_param *p = &m.buffers[b];
        snprintf(name, sizeof name, "buffers/%s", p->name);
        read_f32(g, name, ref);
        e = max_rel_err(m.buf + p->offset, ref, p->numel, 1e-6);
        CHECK(e < TOL_TORCH, "%s: batch-norm buffer %s vs PyTorch: error %.3g", spec, p->name, e);
    }
    /* the algorithm asked for is the one that ran: im2col runs no direct kernel at all, and
     * auto runs them for every model with a conv2d output width of 8 or more (when built) */
    int64_t runs[2][3];
    for (int d = 0; d < 2; d++)
        for (int ph = 0; ph < 3; ph++) runs[d][ph] = pt_conv_phase_count(d, ph) - runs0[d][ph];
    const int has_conv = !strncmp(spec, "cnn", 3) || !strncmp(spec, "resnet", 6);
    if (conv_algo == PT_CONV_ALGO_IM2COL) {
        CHECK(runs[1][0] + runs[1][1] + runs[1][2] == 0,
              "%s: --conv-algo im2col ran %lld/%lld/%lld direct conv phases (fwd/dW/dx)", spec,
              (long long)runs[1][0], (long long)runs[1][1], (long long)runs[1][2]);
        CHECK(!has_conv || (runs[0][0] > 0 && runs[0][1] > 0 && runs[0][2] > 0),
              "%s: --conv-algo im2col ran %lld/%lld/%lld im2col phases (fwd/dW/dx)", spec,
              (long long)runs[0][0], (long long)runs[0][1], (long long)runs[0][2]);
    } else {
        const pt_conv2d_desc c8 = {.H = 8, .Cin = 8, .Cout = 8, .k = 3, .stride = 1, .pad = 1, .Ho = 8};
        const int wide = strstr(spec, "c1=8") || strstr(spec, "width=8");
        if (wide && pt_conv_direct_supported(&c8, PT_CONV_FWD))
            CHECK(runs[1][0] > 0 && runs[1][1] > 0, "%s: auto ran no direct conv kernel", spec);
    }
    printf("%-62s %-6s loss %.6f (PyTorch %.6f), %d tensors\n", spec,
           conv_algo == PT_CONV_ALGO_IM2COL ? "im2col" : "auto", loss, loss_ref, m.nparams);
    pt_optim_destroy(&opt);
    free(x), free(ref), free(grad), free(gref);
    pt_model_destroy(&m);
    H5Gclose(g);
}

/* Bad specs are refused with a message, not built. */
static void check_bad_specs(void)
{
    const char *bad[] = {"cnn:c1=0", "gpt:d=10,heads=4", "textcnn:widths=3/x", "resnet:depth=3",
                         "gpt:layers", "transformer", "textcnn:len=8,widths=9"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        pt_model m;
        pt_model_options mo = {.act = PT_ACT_RELU};
        pt_status st = pt_model_create(&m, bad[i], &mo, pt_backend_cpu(), 2);
        CHECK(st != PT_OK && pt_error_message()[0], "spec '%s' was accepted", bad[i]);
        if (st == PT_OK) pt_model_destroy(&m);
    }
}

int main(void)
{
    const char *dir = getenv("srcdir");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/models_torch.h5", dir ? dir : ".");
    fx = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fx < 0) {
        fprintf(stderr, "FAIL: cannot open %s\n", path);
        return 1;
    }
    /* every model with both conv2d algorithms; the widths of 8 and more take the direct kernels
     * (tests/t_conv.c checks them op by op), the narrow ones fall back to im2col */
    for (int algo = PT_CONV_ALGO_AUTO; algo <= PT_CONV_ALGO_IM2COL; algo++) {
        check_model("cnn:c1=4,c2=6,hidden=16,classes=5,size=12", algo);
        check_model("cnn:c1=8,c2=16,hidden=16,classes=5,size=12", algo);
        check_model("resnet:width=4,blocks=1,classes=5,size=8", algo);
        check_model("resnet:width=8,blocks=1,classes=5,size=8", algo);
    }
    check_model("textcnn:len=12,emb=5,filters=3,widths=2/3,classes=4,vocab=20", PT_CONV_ALGO_AUTO);
    check_model("gpt:layers=2,heads=2,d=8,ctx=6,vocab=16", PT_CONV_ALGO_AUTO);
    check_bad_specs();
    H5Fclose(fx);
    return test_exit_code("t_models");
}
