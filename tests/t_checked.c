/* Failures that used to pass in silence must be reported:
 *   - pt_model_init whose allocation fails returns PT_ERR_NOMEM with a message and leaves the
 *     parameters as they were (it used to return nothing and leave them uninitialized);
 *   - synchronized batch norm whose allreduce fails records PT_ERR_MPI in pt_model_status, and
 *     still writes its output and gradients, from this rank's own statistics (it used to ignore
 *     the allreduce's status and normalize with whatever the buffer held). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/backend.h"
#include "paratrain/model.h"
#include "testutil.h"

static int failing_allreduce(void *arg, double *x, int n)
{
    (void)arg;
    for (int i = 0; i < n; i++) x[i] = NAN; /* a failed collective leaves the buffer undefined */
    return 15;                              /* an MPI error code */
}

static int identity_allreduce(void *arg, double *x, int n) { return (void)arg, (void)x, (void)n, 0; }

static void check_model_init(void)
{
    pt_model m;
    pt_model_options mo = {.act = PT_ACT_RELU};
    REQUIRE_OK(pt_model_create(&m, "mlp:784-16-10", &mo, pt_backend_cpu(), 4));
    for (int64_t i = 0; i < m.numel; i++) m.w[i] = 7.0f;
    setenv("PT_FAULT_INJECT", "model-init-alloc", 1);
    pt_status st = pt_model_init(&m, 1);
    unsetenv("PT_FAULT_INJECT");
    CHECK(st == PT_ERR_NOMEM, "pt_model_init with a failing allocation returned %s, expected %s",
          pt_status_name(st), pt_status_name(PT_ERR_NOMEM));
    CHECK(strstr(pt_error_message(), "pt_model_init: cannot allocate") &&
              strstr(pt_error_message(), "model.c:"),
          "message does not name pt_model_init and its file:line: '%s'", pt_error_message());
    int64_t same = 0;
    for (int64_t i = 0; i < m.numel; i++) same += m.w[i] == 7.0f;
    CHECK(same == m.numel, "a failed pt_model_init changed %lld parameters",
          (long long)(m.numel - same));
    REQUIRE_OK(pt_model_init(&m, 1));
    CHECK(m.w[0] != 7.0f, "pt_model_init did not initialize");
    pt_model_destroy(&m);
}

static void check_sync_bn(void)
{
    enum { B = 4 };
    const char *spec = "resnet:width=4,blocks=1,classes=10,size=8";
    pt_model ref, m;
    pt_model_options mo = {.act = PT_ACT_RELU};
    REQUIRE_OK(pt_model_create(&ref, spec, &mo, pt_backend_cpu(), B));
    mo.sync_bn = 1;
    REQUIRE_OK(pt_model_create(&m, spec, &mo, pt_backend_cpu(), B));
    REQUIRE_OK(pt_model_init(&ref, 5));
    REQUIRE_OK(pt_model_init(&m, 5));
    const int S = pt_model_input_size(&m), C = pt_model_classes(&m);
    float *x = malloc(sizeof(float) * B * S), *gref = malloc(sizeof(float) * (size_t)m.numel);
    float *lref = malloc(sizeof(float) * B * C);
    int32_t y[B] = {1, 3, 5, 7};
    for (int i = 0; i < B * S; i++) x[i] = (float)((i * 37) % 101) / 101.0f;
    pt_fwd_ctx ctx = {.train = 1, .seed = 1};

    /* reference: batch norm over this rank's batch */
    memcpy(lref, pt_model_forward(&ref, x, B, &ctx), sizeof(float) * B * C);
    pt_model_loss_backward(&ref, y, B, &ctx, 1.0f / B, NULL);
    memcpy(gref, ref.g, sizeof(float) * (size_t)m.numel);
    CHECK(pt_model_status(&ref) == PT_OK, "plain batch norm reported %s", pt_status_name(pt_model_status(&ref)));

    /* a working allreduce (one rank: the identity) reports nothing */
    m.allreduce_sum = identity_allreduce;
    pt_model_forward(&m, x, B, &ctx);
    pt_model_loss_backward(&m, y, B, &ctx, 1.0f / B, NULL);
    CHECK(pt_model_status(&m) == PT_OK, "sync batch norm with a working allreduce reported %s",
          pt_status_name(pt_model_status(&m)));

    /* a failing one: reported, and the outputs are written from the local statistics */
    memcpy(m.buf, ref.buf, sizeof(float) * (size_t)m.nbuf); /* same running stats as ref before */
    REQUIRE_OK(pt_model_init(&m, 5));
    m.allreduce_sum = failing_allreduce;
    const float *logits = pt_model_forward(&m, x, B, &ctx);
    pt_status st = pt_model_status(&m);
    CHECK(st == PT_ERR_MPI, "forward with a failing sync-BN allreduce: status %s, expected %s",
          pt_status_name(st), pt_status_name(PT_ERR_MPI));
    CHECK(strstr(pt_error_message(), "synchronized batch norm: the allreduce of the forward") != NULL,
          "message: '%s'", pt_error_message());
    int bad = 0;
    for (int i = 0; i < B * C; i++) bad += !isfinite(logits[i]) || logits[i] != lref[i];
    CHECK(bad == 0, "%d of %d logits are not the local-statistics output after a failed allreduce",
          bad, B * C);
    pt_model_loss_backward(&m, y, B, &ctx, 1.0f / B, NULL);
    CHECK(pt_model_status(&m) == PT_ERR_MPI, "the failure did not stay recorded through backward");
    bad = 0;
    for (int64_t i = 0; i < m.numel; i++) bad += !isfinite(m.g[i]) || m.g[i] != gref[i];
    CHECK(bad == 0, "%d of %lld gradients differ from the local-statistics ones", bad, (long long)m.numel);

    /* the next forward starts clean */
    m.allreduce_sum = identity_allreduce;
    pt_model_forward(&m, x, B, &ctx);
    CHECK(pt_model_status(&m) == PT_OK, "status not cleared by the next forward");
    free(x), free(gref), free(lref);
    pt_model_destroy(&ref), pt_model_destroy(&m);
}

int main(void)
{
    check_model_init();
    check_sync_bn();
    return test_exit_code("t_checked");
}
