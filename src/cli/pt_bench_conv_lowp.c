/* pt-bench-conv-lowp: milliseconds per call of the CPU backend's conv2d entries, fp32 (the direct
 * kernels where --conv-algo auto uses them, and im2col + sgemm) next to the 16-bit conv2d_lowp
 * entries on every lowp variant this CPU runs, phase by phase, at the layers the cnn and resnet
 * run (benchmarks/bench_conv_lowp.sh).
 *
 * Each repetition runs every method once per shape and phase in turn (interleaved, so drift in the
 * machine's load hits all alike); one sample is the mean of as many calls as fill ~--ms ms after
 * one warm-up call. One CSV row per sample:
 *   shape,phase,method,ms
 * phase: fwd, wgrad, xgrad; method: fp32-auto (direct where it applies, else im2col),
 * fp32-im2col, <bf16|fp16>:<variant>.
 *
 *   pt-bench-conv-lowp [--reps N] [--ms MS] [--batch B] [--clock wall|cpu]
 * (threads: OMP_NUM_THREADS). --clock cpu times the process's CPU time instead of wall time:
 * on a shared, overloaded machine wall time counts the time slices other processes take (the
 * samples come out as multiples of the 4 ms scheduler tick); with OMP_NUM_THREADS=1 CPU time is
 * the work this process did. With more threads it also counts OpenMP's spin-waiting: use wall. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "paratrain/backend.h"
#include "paratrain/lowp.h"

typedef struct {
    const char *name;
    int H, Cin, Cout, k, stride, pad;
} shape;

/* cnn:c1=32,c2=64 (5x5 pad 2), resnet:width=16 (3x3 pad 1, stride 2 into stages 2 and 3, 1x1
 * projections) on 28x28x1 Fashion-MNIST */
static const shape shapes[] = {
    {"cnn_conv1", 28, 1, 32, 5, 1, 2},     {"cnn_conv2", 14, 32, 64, 5, 1, 2},
    {"res_stem", 28, 1, 16, 3, 1, 1},      {"res_s1", 28, 16, 16, 3, 1, 1},
    {"res_s2_down", 28, 16, 32, 3, 2, 1},  {"res_s2", 14, 32, 32, 3, 1, 1},
    {"res_s3", 7, 64, 64, 3, 1, 1},        {"res_s2_proj", 28, 16, 32, 1, 2, 0},
};

static clockid_t clock_id = CLOCK_MONOTONIC;
static double now(void)
{
    struct timespec ts;
    clock_gettime(clock_id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const pt_backend *be;
    pt_conv2d_desc d;
    int rows, phase;
    pt_dtype t; /* PT_F32: the fp32 entries */
    float *x, *w, *y, *dy, *dx, *dw, *scratch;
    uint16_t *w16, *dy16;
} job;

static pt_status run(const job *j)
{
    const pt_backend *be = j->be;
    if (j->t == PT_F32) {
        if (j->phase == 0)
            return be->conv2d_forward(&j->d, j->rows, j->x, j->w, NULL, PT_ACT_RELU, j->y, j->scratch);
        if (j->phase == 1)
            return be->conv2d_backward_weight(&j->d, j->rows, j->x, j->dy, 0.0f, j->dw, j->scratch);
        return be->conv2d_backward_input(&j->d, j->rows, j->dy, j->w, 0.0f, j->dx, j->scratch);
    }
    if (j->phase == 0)
        return be->conv2d_lowp_forward(j->t, &j->d, j->rows, j->x, j->w16, NULL, PT_ACT_RELU, j->y,
                                       j->scratch);
    if (j->phase == 1)
        return be->conv2d_lowp_backward_weight(j->t, &j->d, j->rows, j->x, j->dy16, 0.0f, j->dw,
                                               j->scratch);
    return be->conv2d_lowp_backward_input(j->t, &j->d, j->rows, j->dy16, j->w16, 0.0f, j->dx,
                                          j->scratch);
}

/* ms per call: one warm-up, then calls until ~ms milliseconds have passed */
static double time_ms(const job *j, double ms)
{
    if (run(j) != PT_OK) return -1.0;
    int n = 0;
    const double t0 = now();
    double t;
    do {
        if (run(j) != PT_OK) return -1.0;
        n++;
    } while ((t = now() - t0) < ms * 1e-3);
    return 1e3 * t / n;
}

int main(int argc, char **argv)
{
    int reps = 3, batch = 128;
    double ms = 200;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ms") && i + 1 < argc) ms = atof(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--clock") && i + 1 < argc && !strcmp(argv[i + 1], "cpu"))
            clock_id = CLOCK_PROCESS_CPUTIME_ID, i++;
        else if (!strcmp(argv[i], "--clock") && i + 1 < argc && !strcmp(argv[i + 1], "wall"))
            i++;
        else {
            fprintf(stderr, "usage: pt-bench-conv-lowp [--reps N] [--ms MS] [--batch B] "
                            "[--clock wall|cpu]\n");
            return 2;
        }
    }
    if (reps < 1 || ms <= 0 || batch < 1) {
        fprintf(stderr, "pt-bench-conv-lowp: --reps, --ms and --batch must be positive\n");
        return 2;
    }
    const pt_backend *be = pt_backend_cpu();
    if (!be->conv2d_lowp_forward) {
        fprintf(stderr, "pt-bench-conv-lowp: the CPU backend has no conv2d_lowp entries\n");
        return 1;
    }
    /* the methods: fp32 auto, fp32 im2col, then every (dtype, variant) this CPU runs */
    struct {
        pt_dtype t;
        const char *variant;
        int im2col;
    } methods[16];
    int nm = 0;
    methods[nm++] = (typeof(methods[0])){PT_F32, "auto", 0};
    methods[nm++] = (typeof(methods[0])){PT_F32, "im2col", 1};
    for (int ti = 0; ti < 2; ti++)
        for (int v = 0; pt_lowp_gemm_variant_name(v) && nm < 16; v++) {
            const pt_dtype t = ti ? PT_F16 : PT_BF16;
            if (pt_lowp_gemm_available(t, pt_lowp_gemm_variant_name(v), NULL))
                methods[nm++] = (typeof(methods[0])){t, pt_lowp_gemm_variant_name(v), 0};
        }
    printf("shape,phase,method,ms\n");
    static const char *phases[] = {"fwd", "wgrad", "xgrad"};
    for (int r = 0; r < reps; r++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            const shape *sh = &shapes[s];
            job j = {.be = be, .rows = batch};
            j.d = (pt_conv2d_desc){.H = sh->H, .Cin = sh->Cin, .Cout = sh->Cout, .k = sh->k,
                                   .stride = sh->stride, .pad = sh->pad};
            j.d.Ho = (sh->H + 2 * sh->pad - sh->k) / sh->stride + 1;
            const int64_t nx = (int64_t)batch * sh->H * sh->H * sh->Cin,
                          nw = (int64_t)sh->Cout * sh->k * sh->k * sh->Cin,
                          ny = (int64_t)batch * j.d.Ho * j.d.Ho * sh->Cout;
            int64_t nscr = 0;
            for (int a = 0; a < 2; a++) {
                pt_conv2d_desc d = j.d;
                d.algo = a ? PT_CONV_ALGO_IM2COL : PT_CONV_ALGO_AUTO;
                const int64_t s1 = be->conv2d_scratch(&d, batch);
                nscr = s1 > nscr ? s1 : nscr;
            }
            for (int ti = 0; ti < 2; ti++) {
                const int64_t s2 = be->conv2d_lowp_scratch(ti ? PT_F16 : PT_BF16, &j.d, batch);
                nscr = s2 > nscr ? s2 : nscr;
            }
            j.x = be->alloc(4 * (size_t)nx), j.dx = be->alloc(4 * (size_t)nx);
            j.w = be->alloc(4 * (size_t)nw), j.dw = be->alloc(4 * (size_t)nw);
            j.y = be->alloc(4 * (size_t)ny), j.dy = be->alloc(4 * (size_t)ny);
            j.w16 = be->alloc(2 * (size_t)nw), j.dy16 = be->alloc(2 * (size_t)ny);
            j.scratch = be->alloc(4 * (size_t)nscr + 64);
            if (!j.x || !j.dx || !j.w || !j.dw || !j.y || !j.dy || !j.w16 || !j.dy16 || !j.scratch) {
                fprintf(stderr, "pt-bench-conv-lowp: out of memory\n");
                return 1;
            }
            for (int64_t i = 0; i < nx; i++) j.x[i] = (float)(i % 13) * 0.1f - 0.6f;
            for (int64_t i = 0; i < nw; i++) j.w[i] = (float)(i % 7) * 0.05f - 0.15f;
            for (int64_t i = 0; i < ny; i++) j.dy[i] = (float)(i % 5) * 0.1f - 0.2f;
            for (int p = 0; p < 3; p++)
                for (int mi = 0; mi < nm; mi++) {
                    j.phase = p, j.t = methods[mi].t;
                    j.d.algo = methods[mi].im2col ? PT_CONV_ALGO_IM2COL : PT_CONV_ALGO_AUTO;
                    if (j.t != PT_F32) {
                        if (pt_lowp_gemm_select(j.t, methods[mi].variant) != PT_OK) continue;
                        be->lowp_from_f32(j.t, j.w16, j.w, nw);
                        be->lowp_from_f32(j.t, j.dy16, j.dy, ny);
                    }
                    const double t = time_ms(&j, ms);
                    if (t < 0) {
                        fprintf(stderr, "pt-bench-conv-lowp: %s %s failed: %s\n", sh->name,
                                phases[p], pt_error_message());
                        return 1;
                    }
                    printf("%s,%s,%s%s%s,%.3f\n", sh->name, phases[p],
                           j.t == PT_F32 ? "fp32" : pt_precision_name(j.t), j.t == PT_F32 ? "-" : ":",
                           methods[mi].variant, t);
                    fflush(stdout);
                }
            be->free(j.x), be->free(j.dx), be->free(j.w), be->free(j.dw), be->free(j.y);
            be->free(j.dy), be->free(j.w16), be->free(j.dy16), be->free(j.scratch);
        }
    return 0;
}
