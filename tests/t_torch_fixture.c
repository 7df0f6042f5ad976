/* The MLP's forward, backward and three optimizer steps against PyTorch
 * (tests/fixtures/mlp_torch.h5, written by tests/fixtures/gen_mlp_fixture.py).
 *
 * Tolerances (normalized error, max |ours - torch| / max |torch|): logits, loss and gradients
 * 1e-5; parameters after 3 optimizer steps 1e-5. Both sides compute in float32; what is left is
 * summation order. */
#include <hdf5.h>
#include <string.h>

#include "paratrain/model.h"
#include "paratrain/optim.h"
#include "testutil.h"

static hid_t fx;

static void read_f32(const char *name, float *buf)
{
    hid_t d = H5Dopen2(fx, name, H5P_DEFAULT);
    if (d < 0 || H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        fprintf(stderr, "FAIL: cannot read %s from the fixture\n", name);
        exit(1);
    }
    H5Dclose(d);
}

static double attr_f64(hid_t g, const char *name)
{
    double v;
    hid_t a = H5Aopen(g, name, H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_DOUBLE, &v);
    H5Aclose(a);
    return v;
}

static void load_init(pt_model *m)
{
    char name[128];
    for (int i = 0; i < m->nparams; i++) {
        snprintf(name, sizeof name, "init/%s", m->params[i].name);
        read_f32(name, m->w + m->params[i].offset);
    }
}

enum { B = 8, STEPS = 3, IN = 20, CLASSES = 5 };
static float X[STEPS][B][IN];
static int32_t Y[STEPS][B];

static void check_forward(const char *act_name, pt_act act)
{
    pt_model m;
    pt_model_options mo = {.act = act};
    REQUIRE_OK(pt_model_create(&m, "mlp:20-16-12-5", &mo, pt_backend_cpu(), B));
    load_init(&m);
    pt_fwd_ctx ctx = {.train = 1};
    const float *logits = pt_model_forward(&m, &X[0][0][0], B, &ctx);
    float want[B * CLASSES], got[B * CLASSES], loss_ref;
    char name[160];
    snprintf(name, sizeof name, "forward/%s/logits", act_name);
    read_f32(name, want);
    memcpy(got, logits, sizeof got);
    double e = max_rel_err(got, want, B * CLASSES, 1e-6);
    CHECK(e < 1e-5, "%s logits: error %.3g", act_name, e);
    double loss = pt_model_loss_backward(&m, Y[0], B, &ctx, 1.0f / B, NULL) / B;
    snprintf(name, sizeof name, "forward/%s/loss", act_name);
    read_f32(name, &loss_ref);
    CHECK(fabs(loss - loss_ref) < 1e-5 * fabs(loss_ref), "%s loss %.7f, torch %.7f", act_name, loss,
          loss_ref);
    for (int i = 0; i < m.nparams; i++) {
        const pt_param *p = &m.params[i];
        float *ref = malloc(sizeof(float) * p->numel);
        snprintf(name, sizeof name, "forward/%s/grad/%s", act_name, p->name);
        read_f32(name, ref);
        e = max_rel_err(m.g + p->offset, ref, p->numel, 1e-6);
        CHECK(e < 1e-5, "%s grad %s: error %.3g", act_name, p->name, e);
        free(ref);
    }
    pt_model_destroy(&m);
}

static void check_optimizer(const char *case_name)
{
    char gname[64];
    snprintf(gname, sizeof gname, "optim/%s", case_name);
    hid_t g = H5Gopen2(fx, gname, H5P_DEFAULT);
    if (g < 0) {
        CHECK(0, "fixture has no case %s", case_name);
        return;
    }
    /* h5py writes str attributes as variable-length strings. */
    char optname[32] = "";
    hid_t a = H5Aopen(g, "optimizer", H5P_DEFAULT), t = H5Aget_type(a);
    if (H5Tis_variable_str(t) > 0) {
        char *v = NULL;
        H5Aread(a, t, &v);
        snprintf(optname, sizeof optname, "%s", v ? v : "");
        H5free_memory(v);
    } else {
        H5Aread(a, t, optname);
    }
    H5Tclose(t), H5Aclose(a);

    pt_optim_config oc;
    REQUIRE_OK(pt_optim_config_parse(&oc, optname));
    oc.lr = (float)attr_f64(g, "lr");
    oc.weight_decay = (float)attr_f64(g, "weight_decay");
    if (attr_f64(g, "momentum") >= 0) oc.momentum = (float)attr_f64(g, "momentum");
    if (attr_f64(g, "beta1") >= 0) oc.beta1 = (float)attr_f64(g, "beta1");
    if (attr_f64(g, "beta2") >= 0) oc.beta2 = (float)attr_f64(g, "beta2");
    if (attr_f64(g, "eps") >= 0) oc.eps = (float)attr_f64(g, "eps");
    double clip = attr_f64(g, "clip_norm");

    pt_model m;
    pt_model_options mo = {.act = PT_ACT_RELU};
    REQUIRE_OK(pt_model_create(&m, "mlp:20-16-12-5", &mo, pt_backend_cpu(), B));
    load_init(&m);
    pt_optimizer opt;
    REQUIRE_OK(pt_optim_create(&opt, &oc, m.be, m.numel));
    for (int s = 0; s < STEPS; s++) {
        pt_fwd_ctx ctx = {.train = 1, .step = s};
        pt_model_forward(&m, &X[s][0][0], B, &ctx);
        pt_model_loss_backward(&m, Y[s], B, &ctx, 1.0f / B, NULL);
        pt_clip_grad_norm(m.be, m.g, m.numel, clip);
        pt_optim_step(&opt, m.w, m.g, oc.lr);
    }
    char name[160];
    for (int i = 0; i < m.nparams; i++) {
        const pt_param *p = &m.params[i];
        float *ref = malloc(sizeof(float) * p->numel);
        snprintf(name, sizeof name, "optim/%s/params/%s", case_name, p->name);
        read_f32(name, ref);
        double e = max_rel_err(m.w + p->offset, ref, p->numel, 1e-6);
        CHECK(e < 1e-5, "%s: %s after %d steps: error %.3g", case_name, p->name, STEPS, e);
        free(ref);
    }
    pt_optim_destroy(&opt);
    pt_model_destroy(&m);
    H5Gclose(g);
}

int main(void)
{
    const char *srcdir = getenv("srcdir");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/mlp_torch.h5", srcdir ? srcdir : ".");
    fx = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fx < 0) {
        fprintf(stderr, "FAIL: cannot open fixture %s\n", path);
        return 1;
    }
    read_f32("x", &X[0][0][0]);
    hid_t d = H5Dopen2(fx, "y", H5P_DEFAULT);
    H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, Y);
    H5Dclose(d);

    check_forward("relu", PT_ACT_RELU);
    check_forward("gelu", PT_ACT_GELU);
    check_forward("tanh", PT_ACT_TANH);
    const char *cases[] = {"sgd", "sgd_wd", "momentum", "nesterov_wd", "momentum_clip",
                           "adagrad", "adam", "adam_wd", "adamw"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_optimizer(cases[i]);
    H5Fclose(fx);
    return test_exit_code("t_torch_fixture");
}
