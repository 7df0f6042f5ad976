/* Times the CPU backend entries that gpt's profile showed outside the GEMMs (issue 20), at gpt
 * d 256, 4 heads, ctx 128, batch 16: attention forward and backward, GELU forward (bias_act) and
 * backward (act_backward), bias_backward, layernorm backward. Through the public backend table,
 * so one source times any build (benchmarks/bench_gpt_kernels.sh links it against two).
 * Prints "entry,ms" lines: the median of REPS calls after one warm-up call. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/backend.h"

static double med(double *t, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (t[j] < t[i]) { double x = t[i]; t[i] = t[j]; t[j] = x; }
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}
static float *rnd(int64_t n, float a)
{
    float *p = malloc(sizeof(float) * (size_t)n);
    if (!p) abort();
    uint64_t s = 0x9e3779b97f4a7c15ull ^ (uint64_t)n;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = a * ((float)(s >> 40) / 16777216.0f * 2.0f - 1.0f);
    }
    return p;
}
#define TIME(name, call)                                                                           \
    do {                                                                                           \
        double t[REPS];                                                                            \
        call;                                                                                      \
        for (int r = 0; r < REPS; r++) {                                                           \
            const double t0 = omp_get_wtime();                                                     \
            call;                                                                                  \
            t[r] = omp_get_wtime() - t0;                                                           \
        }                                                                                          \
        printf("%s,%.3f\n", name, 1e3 * med(t, REPS));                                             \
    } while (0)

int main(int argc, char **argv)
{
    enum { REPS = 15 };
    const int B = 16, T = 128, D = argc > 1 ? atoi(argv[1]) : 256, H = 4, N = B * T;
    const pt_backend *be = pt_backend_cpu();
    const pt_attention_desc ad = {.T = T, .D = D, .H = H};
    const pt_layernorm_desc ld = {.D = D, .eps = 1e-5f};
    float *qkv = rnd((int64_t)N * 3 * D, 1.5f), *y = rnd((int64_t)N * D, 1), *lse = rnd((int64_t)B * H * T, 1);
    float *dy = rnd((int64_t)N * D, 1), *dqkv = rnd((int64_t)N * 3 * D, 1);
    float *h = rnd((int64_t)N * 4 * D, 3), *pre = rnd((int64_t)N * 4 * D, 3), *bias = rnd(4 * D, 1);
    float *g = rnd((int64_t)N * 4 * D, 1), *db = rnd(4 * D, 1), *stat = rnd(2 * (int64_t)N, 1);
    float *gam = rnd(D, 1), *dg = rnd(D, 1), *dbt = rnd(D, 1), *dx = rnd((int64_t)N * D, 1);
    for (int64_t i = 0; i < N; i++) stat[2 * i + 1] = 1.0f;
    be->attention_forward(&ad, B, qkv, y, lse);
    TIME("attention_forward", be->attention_forward(&ad, B, qkv, y, lse));
    TIME("attention_backward", be->attention_backward(&ad, B, qkv, y, dy, lse, 0.0f, dqkv));
    TIME("gelu_forward (bias_act)", (memcpy(h, pre, sizeof(float) * (size_t)N * 4 * D),
                                     be->bias_act_forward(h, NULL, bias, N, 4 * D, PT_ACT_GELU)));
    TIME("gelu_backward", be->act_backward(h, g, pre, (int64_t)N * 4 * D, PT_ACT_GELU));
    TIME("bias_backward", be->bias_backward(db, g, N, 4 * D));
    TIME("layernorm_backward", be->layernorm_backward(&ld, N, y, dy, gam, stat, dg, dbt, 0.0f, dx));
    return 0;
}
