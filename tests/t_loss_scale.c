/* The loss scaler (paratrain/loss_scale.h) and the model's scaling of the loss gradient
 * (issue 17). The distributed decision, skipping and resuming are tests/test_loss_scale.sh's.
 *  1. --loss-scale parsing: defaults per precision, bad values refused.
 *  2. The state machine against a reference written from the rule (an exponent counter): random
 *     overflow sequences, window 3, including runs long enough to reach both clamps.
 *  3. The model: with a power-of-two scale S the parameter gradients after backward are those
 *     of S = 1 bit for bit (bf16: rounding commutes with scaling by 2^k), i.e. backward unscales
 *     every gradient exactly once, and no Inf is reported; fp16 with S = 2^24 overflows
 *     (dlogits * S > 65504) and the model says so; the fp16 gradient at S = 2^16 is close to
 *     fp32's (NMSE < 1e-4: fp16 keeps 11 bits). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/backend.h"
#include "paratrain/loss_scale.h"
#include "paratrain/model.h"
#include "testutil.h"

static void test_parse(void)
{
    pt_loss_scale_mode mode;
    double v;
    REQUIRE_OK(pt_loss_scale_parse("", true, &mode, &v));
    CHECK(mode == PT_LOSS_SCALE_DYNAMIC && v == 65536.0, "fp16 default: dynamic 2^16 (%d %g)", mode, v);
    REQUIRE_OK(pt_loss_scale_parse("", false, &mode, &v));
    CHECK(mode == PT_LOSS_SCALE_NONE && v == 1.0, "bf16/fp32 default: none (%d %g)", mode, v);
    REQUIRE_OK(pt_loss_scale_parse("1024", true, &mode, &v));
    CHECK(mode == PT_LOSS_SCALE_STATIC && v == 1024.0, "static 1024 (%d %g)", mode, v);
    REQUIRE_OK(pt_loss_scale_parse("none", true, &mode, &v));
    CHECK(mode == PT_LOSS_SCALE_NONE, "none");
    static const char *bad[] = {"garbage", "-1", "0", "inf", "nan", "12x", "1e999"};
    for (int i = 0; i < 7; i++)
        CHECK(pt_loss_scale_parse(bad[i], true, &mode, &v) == PT_ERR_ARG, "'%s' refused", bad[i]);
}

/* The reference: the scale as 2^e, clamped to [2^-24, 2^24]. */
static void test_state_machine(void)
{
    uint64_t r = 12345;
    for (int trial = 0; trial < 200; trial++) {
        pt_loss_scaler ls;
        const int window = 1 + trial % 5;
        pt_loss_scale_init(&ls, PT_LOSS_SCALE_DYNAMIC, 65536.0, window);
        int e = 16, clean = 0, skipped = 0;
        /* trials of mostly overflows (reach 2^-24) and mostly clean steps (reach 2^24) */
        const int p_over = trial % 3 == 0 ? 90 : trial % 3 == 1 ? 3 : 30;
        for (int step = 0; step < 300; step++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            const bool over = (int)((r >> 33) % 100) < p_over;
            bool want_apply = !over;
            if (over) {
                skipped++, clean = 0;
                if (e > -24) e--;
            } else if (++clean >= window) {
                if (e < 24) e++;
                clean = 0;
            }
            const bool apply = pt_loss_scale_step(&ls, over);
            if (apply != want_apply || ls.scale != ldexp(1.0, e) || ls.good_steps != clean ||
                ls.skipped != skipped) {
                CHECK(0, "trial %d step %d: apply %d scale %g good %lld skipped %lld; reference "
                         "%d %g %d %d", trial, step, apply, ls.scale, (long long)ls.good_steps,
                      (long long)ls.skipped, want_apply, ldexp(1.0, e), clean, skipped);
                break;
            }
        }
    }
    pt_loss_scaler st;
    pt_loss_scale_init(&st, PT_LOSS_SCALE_STATIC, 1000.0, 2);
    CHECK(!pt_loss_scale_step(&st, true) && st.scale == 1000.0 && st.skipped == 1,
          "static: an overflow skips the step, the scale stays");
    for (int i = 0; i < 5; i++) pt_loss_scale_step(&st, false);
    CHECK(st.scale == 1000.0, "static: no growth (%g)", st.scale);
}

enum { B = 16, IN = 40, CLASSES = 7 };
static float xb[B * IN];
static int32_t yb[B];

/* gradients (host, numel floats) of mlp:40-24-7 at precision t and scale S; *nonfinite */
static float *grads(pt_dtype t, double S, int *nonfinite, int64_t *numel)
{
    pt_model m;
    pt_model_options mo = {.act = PT_ACT_RELU};
    REQUIRE_OK(pt_model_create(&m, "mlp:40-24-7", &mo, pt_backend_cpu(), B));
    REQUIRE_OK(pt_model_init(&m, 3));
    REQUIRE_OK(pt_model_set_precision(&m, t));
    pt_loss_scale_init(&m.ls, S == 1.0 ? PT_LOSS_SCALE_NONE : PT_LOSS_SCALE_STATIC, S, 0);
    pt_fwd_ctx ctx = {.train = 1};
    m.grad_nonfinite = 0;
    pt_model_forward(&m, xb, B, &ctx);
    pt_model_loss_backward(&m, yb, B, &ctx, 1.0f / B, NULL);
    REQUIRE_OK(pt_model_status(&m));
    float *g = malloc(sizeof(float) * (size_t)m.numel);
    m.be->to_host(g, m.g, sizeof(float) * (size_t)m.numel);
    *nonfinite = m.grad_nonfinite;
    *numel = m.numel;
    pt_model_destroy(&m);
    return g;
}

static void test_model(void)
{
    uint64_t r = 99;
    for (int i = 0; i < B * IN; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        xb[i] = (float)((r >> 40) % 2001) / 1000.0f - 1.0f;
    }
    for (int i = 0; i < B; i++) yb[i] = i % CLASSES;
    int nf1, nf2, nf3;
    int64_t n;
    float *g1 = grads(PT_BF16, 1.0, &nf1, &n), *g2 = grads(PT_BF16, 1024.0, &nf2, &n);
    int64_t diff = 0;
    for (int64_t i = 0; i < n; i++) diff += memcmp(&g1[i], &g2[i], 4) != 0;
    CHECK(diff == 0, "bf16: gradients at scale 1024 differ from scale 1 in %lld of %lld elements "
                     "(backward must unscale each exactly once)", (long long)diff, (long long)n);
    CHECK(!nf1 && !nf2, "bf16: no Inf/NaN reported (%d %d)", nf1, nf2);
    float *g3 = grads(PT_F16, 16777216.0, &nf3, &n);
    CHECK(nf3, "fp16 at scale 2^24: the overflow is not reported");
    int nf4, nf5;
    float *g4 = grads(PT_F16, 65536.0, &nf4, &n), *g5 = grads(PT_F32, 1.0, &nf5, &n);
    double se = 0, sr = 0;
    for (int64_t i = 0; i < n; i++) se += (g4[i] - g5[i]) * (double)(g4[i] - g5[i]), sr += g5[i] * (double)g5[i];
    CHECK(!nf4 && se / sr < 1e-4, "fp16 at 2^16 vs fp32: NMSE %.2e (limit 1e-4), nonfinite %d",
          se / sr, nf4);
    printf("bf16 scale 1024 vs 1: %lld differing; fp16 2^24 overflow flagged %d; fp16 2^16 vs "
           "fp32 NMSE %.2e\n", (long long)diff, nf3, se / sr);
    free(g1), free(g2), free(g3), free(g4), free(g5);
}

int main(void)
{
    test_parse();
    test_state_machine();
    test_model();
    printf("t_loss_scale: %d checks, %d failed\n", test_checks, test_failures);
    return test_failures ? 1 : 0;
}
