/* pt-bench-lowp: GFLOP/s of the low-precision GEMM variants (include/paratrain/lowp.h) next to
 * OpenBLAS cblas_sgemm on fp32, at the shapes the models run (benchmarks/bench_lowp_gemm.sh).
 *
 * For each shape and each repetition, every method runs once in turn (interleaved, so drift in the
 * machine's load hits all alike); one sample is as many calls as fill ~--ms milliseconds, after
 * one warm-up call. Prints one CSV row per sample:
 *   shape,ta,tb,m,n,k,method,gflops
 * methods: sgemm (fp32 inputs), then <dtype>:<variant> for every variant this CPU runs.
 *
 *   pt-bench-lowp [--reps N] [--ms MS] [--shape NAME]   (threads: OMP_NUM_THREADS) */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "paratrain/lowp.h"

typedef struct {
    const char *name;
    int ta, tb, m, n, k;
} shape;

/* mlp 784-1024-1024-10 at batch 128 (src/nn/ops_dense.c: y = x W^T, dW = dz^T x, dx = dz W), gpt
 * d256 at batch 16 x context 128 (qkv, attention out, mlp up, mlp down), a square 1024 */
static const shape shapes[] = {
    {"mlp_fwd1", 0, 1, 128, 1024, 784},  {"mlp_fwd2", 0, 1, 128, 1024, 1024},
    {"mlp_dx2", 0, 0, 128, 1024, 1024},  {"mlp_dw2", 1, 0, 1024, 1024, 128},
    {"mlp_dx1", 0, 0, 128, 784, 1024},   {"mlp_dw1", 1, 0, 1024, 784, 128},
    {"gpt_qkv", 0, 1, 2048, 768, 256},   {"gpt_proj", 0, 1, 2048, 256, 256},
    {"gpt_up", 0, 1, 2048, 1024, 256},   {"gpt_down", 0, 1, 2048, 256, 1024},
    {"square", 0, 0, 1024, 1024, 1024},
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    char label[40];
    pt_dtype t; /* PT_F32: cblas_sgemm */
    const char *variant;
} method;

static int run(const method *me, const shape *s, const float *af, const float *bf, const uint16_t *ah,
               const uint16_t *bh, float *c)
{
    const int lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    if (me->t == PT_F32) {
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans,
                    s->m, s->n, s->k, 1.f, af, lda, bf, ldb, 0.f, c, s->n);
        return 0;
    }
    if (pt_lowp_gemm(me->t, s->ta, s->tb, s->m, s->n, s->k, 1.f, ah, lda, bh, ldb, 0.f, c, s->n) != PT_OK) {
        fprintf(stderr, "pt-bench-lowp: %s: %s\n", me->label, pt_error_message());
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int reps = 1;
    double ms = 100;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ms") && i + 1 < argc) ms = atof(argv[++i]);
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: pt-bench-lowp [--reps N] [--ms MS] [--shape NAME]\n");
            return 2;
        }
    }
    if (reps < 1 || ms <= 0) {
        fprintf(stderr, "pt-bench-lowp: --reps must be >= 1 and --ms > 0\n");
        return 2;
    }
    method ms_list[16];
    int nm = 0;
    ms_list[nm++] = (method){"sgemm", PT_F32, NULL};
    const pt_dtype types[2] = {PT_BF16, PT_F16};
    for (int d = 0; d < 2; d++)
        for (int i = 0; pt_lowp_gemm_variant_name(i); i++) {
            const char *v = pt_lowp_gemm_variant_name(i);
            if (!pt_lowp_gemm_available(types[d], v, NULL)) continue;
            method *me = &ms_list[nm++];
            snprintf(me->label, sizeof me->label, "%s:%s", pt_precision_name(types[d]), v);
            me->t = types[d], me->variant = v;
        }
    size_t maxa = 0, maxb = 0, maxc = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const size_t a = (size_t)shapes[s].m * shapes[s].k, b = (size_t)shapes[s].k * shapes[s].n;
        const size_t c = (size_t)shapes[s].m * shapes[s].n;
        maxa = a > maxa ? a : maxa, maxb = b > maxb ? b : maxb, maxc = c > maxc ? c : maxc;
    }
    float *af = malloc(maxa * 4), *bf = malloc(maxb * 4), *c = malloc(maxc * 4);
    uint16_t *ah = malloc(maxa * 2), *bh = malloc(maxb * 2);
    if (!af || !bf || !c || !ah || !bh) {
        fprintf(stderr, "pt-bench-lowp: out of memory\n");
        return 1;
    }
    uint64_t st = 88172645463325252ull;
    for (size_t i = 0; i < maxa; i++) st ^= st << 13, st ^= st >> 7, st ^= st << 17, af[i] = (float)(st % 2001) / 1000.f - 1.f;
    for (size_t i = 0; i < maxb; i++) st ^= st << 13, st ^= st >> 7, st ^= st << 17, bf[i] = (float)(st % 2001) / 1000.f - 1.f;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const shape *sh = &shapes[s];
        if (only && strcmp(only, sh->name)) continue;
        const double flop = 2.0 * sh->m * sh->n * sh->k;
        int iters[16];
        for (int j = 0; j < nm; j++) { /* warm-up, and the calls per sample */
            const method *me = &ms_list[j];
            if (me->t != PT_F32) {
                pt_lowp_from_f32(me->t, ah, af, (int64_t)maxa);
                pt_lowp_from_f32(me->t, bh, bf, (int64_t)maxb);
                if (pt_lowp_gemm_select(me->t, me->variant) != PT_OK) {
                    fprintf(stderr, "pt-bench-lowp: %s\n", pt_error_message());
                    return 1;
                }
            }
            const double t0 = now();
            if (run(me, sh, af, bf, ah, bh, c)) return 1;
            const double dt = now() - t0;
            iters[j] = (int)(ms * 1e-3 / (dt > 1e-6 ? dt : 1e-6)) + 1;
        }
        for (int r = 0; r < reps; r++)
            for (int j = 0; j < nm; j++) {
                const method *me = &ms_list[j];
                if (me->t != PT_F32) { /* the inputs in this dtype (not timed) */
                    pt_lowp_from_f32(me->t, ah, af, (int64_t)maxa);
                    pt_lowp_from_f32(me->t, bh, bf, (int64_t)maxb);
                    pt_lowp_gemm_select(me->t, me->variant);
                }
                const double t0 = now();
                for (int it = 0; it < iters[j]; it++)
                    if (run(me, sh, af, bf, ah, bh, c)) return 1;
                const double dt = now() - t0;
                printf("%s,%d,%d,%d,%d,%d,%s,%.2f\n", sh->name, sh->ta, sh->tb, sh->m, sh->n, sh->k,
                       me->label, flop * iters[j] / dt * 1e-9);
                fflush(stdout);
            }
    }
    free(af), free(bf), free(c), free(ah), free(bh);
    return 0;
}
