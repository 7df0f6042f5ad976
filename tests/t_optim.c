/* Schedules, clipping and early stopping against their definitions. */
#include <string.h>

#include "paratrain/optim.h"
#include "testutil.h"

int main(void)
{
    pt_schedule s = {.base_lr = 0.1f, .min_lr = 0.001f, .warmup_steps = 10, .total_steps = 110,
                     .step_size = 30, .gamma = 0.5f};
    REQUIRE_OK(pt_schedule_parse(&s, "cosine"));
    CHECK(fabsf(pt_schedule_lr(&s, 0) - 0.01f) < 1e-7f, "warm-up step 0: %g", pt_schedule_lr(&s, 0));
    CHECK(fabsf(pt_schedule_lr(&s, 9) - 0.1f) < 1e-7f, "warm-up end: %g", pt_schedule_lr(&s, 9));
    CHECK(fabsf(pt_schedule_lr(&s, 10) - 0.1f) < 1e-7f, "cosine start: %g", pt_schedule_lr(&s, 10));
    CHECK(fabsf(pt_schedule_lr(&s, 60) - 0.0505f) < 1e-6f, "cosine middle: %g", pt_schedule_lr(&s, 60));
    CHECK(fabsf(pt_schedule_lr(&s, 110) - 0.001f) < 1e-7f, "cosine end: %g", pt_schedule_lr(&s, 110));
    CHECK(fabsf(pt_schedule_lr(&s, 500) - 0.001f) < 1e-7f, "after end: %g", pt_schedule_lr(&s, 500));
    for (int64_t i = 10; i < 110; i++)
        CHECK(pt_schedule_lr(&s, i + 1) <= pt_schedule_lr(&s, i), "cosine rises at %lld", (long long)i);
    REQUIRE_OK(pt_schedule_parse(&s, "step"));
    CHECK(fabsf(pt_schedule_lr(&s, 39) - 0.1f) < 1e-7f, "step before decay: %g", pt_schedule_lr(&s, 39));
    CHECK(fabsf(pt_schedule_lr(&s, 40) - 0.05f) < 1e-7f, "step first decay: %g", pt_schedule_lr(&s, 40));
    CHECK(fabsf(pt_schedule_lr(&s, 70) - 0.025f) < 1e-7f, "step second decay: %g", pt_schedule_lr(&s, 70));
    REQUIRE_OK(pt_schedule_parse(&s, "constant"));
    CHECK(pt_schedule_lr(&s, 1000) == 0.1f, "constant: %g", pt_schedule_lr(&s, 1000));
    CHECK(pt_schedule_parse(&s, "exp") == PT_ERR_ARG, "unknown schedule accepted");

    /* Clipping: norm 5 clipped to 1 scales by 1/(5 + 1e-6); below the bound nothing changes. */
    float g[2] = {3, 4};
    double norm = pt_clip_grad_norm(pt_backend_cpu(), g, 2, 1.0);
    CHECK(fabs(norm - 5.0) < 1e-12, "norm %g", norm);
    CHECK(fabsf(g[0] - 0.6f) < 1e-6f && fabsf(g[1] - 0.8f) < 1e-6f, "clipped to %g %g", g[0], g[1]);
    float h[2] = {0.3f, 0.4f};
    pt_clip_grad_norm(pt_backend_cpu(), h, 2, 1.0);
    CHECK(h[0] == 0.3f && h[1] == 0.4f, "clipping changed a small gradient");

    /* Early stopping on accuracy with patience 2. */
    pt_early_stop e;
    pt_early_stop_init(&e, 2, true);
    CHECK(!pt_early_stop_update(&e, 0.5, 1), "stopped on first eval");
    CHECK(!pt_early_stop_update(&e, 0.6, 2), "stopped on improvement");
    CHECK(!pt_early_stop_update(&e, 0.6, 3), "stopped after one flat eval");
    CHECK(pt_early_stop_update(&e, 0.55, 4), "did not stop after two bad evals");
    CHECK(e.best == 0.6 && e.best_step == 2, "best %g at %lld", e.best, (long long)e.best_step);
    pt_early_stop_init(&e, 0, true);
    for (int i = 0; i < 10; i++) CHECK(!pt_early_stop_update(&e, 0.1, i), "patience 0 stopped");

    pt_optim_config c;
    const char *names[] = {"sgd", "momentum", "nesterov", "adagrad", "adam", "adamw"};
    for (int i = 0; i < 6; i++) {
        REQUIRE_OK(pt_optim_config_parse(&c, names[i]));
        CHECK(!strcmp(pt_optim_name(&c), names[i]), "%s round-trips as %s", names[i], pt_optim_name(&c));
    }
    CHECK(pt_optim_config_parse(&c, "lion") == PT_ERR_ARG, "unknown optimizer accepted");
    return test_exit_code("t_optim");
}
