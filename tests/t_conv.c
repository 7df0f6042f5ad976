/* The direct convolution kernels (kernels/cpu/conv_direct.c) against a plain double-precision
 * convolution written out here, for every phase, on the model's shapes and on shapes that hit the
 * kernels' edges: 1 input channel, 8-channel tails after 16-channel panels, pixel counts that
 * leave a partial 6-row tile, stride 2, 1x1 kernels, padding 0 to k-1, accumulation (beta 1).
 * Error: max |ours - reference| / max |reference| below 1e-5 (float sums of up to 800 terms).
 * Each result must also be bitwise the same with 1 and 3 threads (the kernels promise a fixed
 * summation order). Shapes the kernels do not cover must say so, so the backend falls back.
 *
 * The kernels are those of the ISA level the library dispatched to: first this test checks that
 * the dispatch picked the kernels it should, from its own reading of CPUID and PT_CPU_ISA (the
 * highest level the CPU has, or the lower one PT_CPU_ISA asks for), and that those kernels were
 * really compiled for that level. tests/test_cpu_isa.sh runs it under every level the CPU has. */
#include "config.h"

#include <omp.h>
#include <string.h>

#include "../kernels/cpu/conv_direct.h"
#include "testutil.h"

#define TOL 1e-5

static void fill(float *a, int64_t n, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t r = (uint32_t)((i + 1) * 2654435761u ^ (seed * 40503u)) * 2246822519u;
        a[i] = (float)((r >> 8) / 16777216.0 * 2.0 - 1.0);
    }
}

/* x (B, H, H, Cin), w (Cout, k, k, Cin) -> y (B, Ho, Ho, Cout) in double; dy -> dx, dw */
static void reference(const pt_conv2d_desc *c, int B, const float *x, const float *w,
                      const float *bias, int relu, const float *dy, double *y, double *dx,
                      double *dw)
{
    const int H = c->H, Ci = c->Cin, Co = c->Cout, k = c->k, Ho = c->Ho;
    memset(dx, 0, sizeof(double) * (size_t)B * H * H * Ci);
    memset(dw, 0, sizeof(double) * (size_t)Co * k * k * Ci);
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Ho; ox++)
                for (int co = 0; co < Co; co++) {
                    double s = bias ? bias[co] : 0.0;
                    const int64_t o = (((int64_t)b * Ho + oy) * Ho + ox) * Co + co;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            const int iy = oy * c->stride - c->pad + ky, ix = ox * c->stride - c->pad + kx;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= H) continue;
                            for (int ci = 0; ci < Ci; ci++) {
                                const int64_t xi = (((int64_t)b * H + iy) * H + ix) * Ci + ci;
                                const int64_t wi = (((int64_t)co * k + ky) * k + kx) * Ci + ci;
                                s += (double)x[xi] * w[wi];
                                dx[xi] += (double)dy[o] * w[wi];
                                dw[wi] += (double)dy[o] * x[xi];
                            }
                        }
                    y[o] = relu && s < 0.0 ? 0.0 : s;
                }
}

static double err(const float *a, const double *ref, int64_t n)
{
    double num = 0.0, den = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs(a[i] - ref[i]);
        if (d > num || d != d) num = d;
        if (fabs(ref[i]) > den) den = fabs(ref[i]);
    }
    return num / den;
}

/* runs `phase` with 1 and 3 threads: returns the 3-thread result in out, checks bitwise equality */
static void run_phase(const pt_conv2d_desc *c, int B, int phase, const float *x, const float *w,
                      const float *bias, int relu, const float *dy, float beta, float *out,
                      int64_t n, const char *what)
{
    const int64_t ns = pt_conv_direct_scratch(c, B);
    float *scratch = malloc(sizeof(float) * (size_t)ns), *first = malloc(sizeof(float) * (size_t)n);
    float *init = malloc(sizeof(float) * (size_t)n);
    memcpy(init, out, sizeof(float) * (size_t)n);
    for (int pass = 0; pass < 2; pass++) {
        omp_set_num_threads(pass ? 3 : 1);
        memcpy(out, init, sizeof(float) * (size_t)n);
        fill(scratch, ns, 99); /* garbage: nothing may depend on the scratch's contents */
        if (phase == PT_CONV_FWD) pt_conv_direct_forward(c, B, x, w, bias, relu, out, scratch);
        else if (phase == PT_CONV_BWD_WEIGHT)
            pt_conv_direct_backward_weight(c, B, x, dy, beta, out, scratch);
        else pt_conv_direct_backward_input(c, B, dy, w, beta, out, scratch);
        if (!pass) memcpy(first, out, sizeof(float) * (size_t)n);
    }
    CHECK(!memcmp(first, out, sizeof(float) * (size_t)n), "%s: 1 and 3 threads differ", what);
    free(scratch), free(first), free(init);
}

static void check_shape(int H, int Cin, int Cout, int k, int s, int pad)
{
    enum { B = 3 };
    pt_conv2d_desc c = {H, Cin, Cout, k, s, pad, (H + 2 * pad - k) / s + 1};
    const int Ho = c.Ho;
    const int64_t nx = (int64_t)B * H * H * Cin, ny = (int64_t)B * Ho * Ho * Cout,
                  nw = (int64_t)Cout * k * k * Cin;
    float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * nw),
          *bias = malloc(sizeof(float) * Cout), *dy = malloc(sizeof(float) * ny),
          *y = malloc(sizeof(float) * ny), *dx = malloc(sizeof(float) * nx),
          *dw = malloc(sizeof(float) * nw), *dx0 = malloc(sizeof(float) * nx),
          *dw0 = malloc(sizeof(float) * nw);
    double *ry = malloc(sizeof(double) * ny), *rdx = malloc(sizeof(double) * nx),
           *rdw = malloc(sizeof(double) * nw);
    fill(x, nx, 1), fill(w, nw, 2), fill(bias, Cout, 3), fill(dy, ny, 4), fill(dx0, nx, 5),
        fill(dw0, nw, 6);
    char what[128];
    for (int relu = 0; relu < 2; relu++) {
        const float *bs = relu ? bias : NULL;
        reference(&c, B, x, w, bs, relu, dy, ry, rdx, rdw);
        snprintf(what, sizeof what, "H%d Cin%d Cout%d k%d s%d pad%d %s", H, Cin, Cout, k, s, pad,
                 relu ? "bias+relu" : "plain");
        if (pt_conv_direct_supported(&c, PT_CONV_FWD)) {
            run_phase(&c, B, PT_CONV_FWD, x, w, bs, relu, dy, 0.0f, y, ny, what);
            CHECK(err(y, ry, ny) < TOL, "%s forward: error %.3g", what, err(y, ry, ny));
        }
        if (relu) continue; /* the backward phases do not see the activation */
        for (int beta = 0; beta < 2; beta++) {
            if (pt_conv_direct_supported(&c, PT_CONV_BWD_WEIGHT)) {
                memcpy(dw, dw0, sizeof(float) * nw);
                run_phase(&c, B, PT_CONV_BWD_WEIGHT, x, w, NULL, 0, dy, (float)beta, dw, nw, what);
                if (beta) for (int64_t i = 0; i < nw; i++) dw[i] -= dw0[i];
                CHECK(err(dw, rdw, nw) < TOL, "%s weight gradient (beta %d): error %.3g", what,
                      beta, err(dw, rdw, nw));
            }
            if (pt_conv_direct_supported(&c, PT_CONV_BWD_INPUT)) {
                memcpy(dx, dx0, sizeof(float) * nx);
                run_phase(&c, B, PT_CONV_BWD_INPUT, x, w, NULL, 0, dy, (float)beta, dx, nx, what);
                if (beta) for (int64_t i = 0; i < nx; i++) dx[i] -= dx0[i];
                CHECK(err(dx, rdx, nx) < 2 * TOL, "%s input gradient (beta %d): error %.3g", what,
                      beta, err(dx, rdx, nx));
            }
        }
    }
    printf("%-40s forward %d, weight gradient %d, input gradient %d\n", what,
           pt_conv_direct_supported(&c, PT_CONV_FWD),
           pt_conv_direct_supported(&c, PT_CONV_BWD_WEIGHT),
           pt_conv_direct_supported(&c, PT_CONV_BWD_INPUT));
    free(x), free(w), free(bias), free(dy), free(y), free(dx), free(dw), free(dx0), free(dw0);
    free(ry), free(rdx), free(rdw);
}

int main(void)
{
    pt_conv2d_desc probe = {8, 8, 8, 3, 1, 1, 8};
#if !PT_HAVE_X86_KERNELS
    CHECK(!pt_conv_direct_kernels() && !pt_conv_direct_supported(&probe, PT_CONV_FWD),
          "a build without x86 kernels dispatched to some");
    if (test_failures) return test_exit_code("t_conv");
    printf("SKIP: this build has no direct conv kernels (not x86-64); im2col is used\n");
    return 77;
#else
    /* which kernels the dispatch must have picked: 0 baseline, 1 avx2, 2 avx512 */
    static const char *const isa_names[] = {"baseline", "avx2", "avx512"};
    __builtin_cpu_init();
    int want = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                   ? (__builtin_cpu_supports("avx512f") ? 2 : 1) : 0;
    const char *env = getenv("PT_CPU_ISA");
    if (env && *env) {
        int req = -1;
        for (int i = 0; i < 3; i++)
            if (strcmp(env, isa_names[i]) == 0) req = i;
        CHECK(req >= 0, "PT_CPU_ISA=%s is not a level this test knows", env);
        if (req >= 0 && req < want) want = req;
    }
    const pt_conv_kernels *kern = pt_conv_direct_kernels();
    printf("conv kernels: %s (expected %s; PT_CPU_ISA=%s)\n", kern ? kern->isa : "none (im2col)",
           isa_names[want], env ? env : "");
    if (want == 0) {
        CHECK(!kern, "dispatch picked the %s kernels, expected none (baseline)", kern->isa);
        CHECK(!pt_conv_direct_supported(&probe, PT_CONV_FWD), "baseline claims direct kernels");
        return test_exit_code("t_conv");
    }
    CHECK(kern && strcmp(kern->isa, isa_names[want]) == 0,
          "dispatch picked the %s kernels, expected %s", kern ? kern->isa : "no", isa_names[want]);
    if (!kern) return test_exit_code("t_conv");
    CHECK(kern->vw == (want == 2 ? 16 : 8) && kern->mr == (want == 2 ? 8 : 6),
          "%s kernels with %d floats per vector and %d-row tiles", kern->isa, kern->vw, kern->mr);
    CHECK(pt_conv_direct_supported(&probe, PT_CONV_FWD), "the %s kernels refuse a plain shape",
          kern->isa);
#endif
    /* what the kernels must refuse */
    pt_conv2d_desc no1 = {8, 8, 12, 3, 1, 1, 8}, no2 = {8, 12, 8, 3, 1, 1, 8},
                  no3 = {8, 8, 8, 3, 2, 1, 4}, no4 = {8, 8, 8, 3, 1, 3, 12};
    CHECK(!pt_conv_direct_supported(&no1, PT_CONV_FWD), "Cout 12 forward accepted");
    CHECK(!pt_conv_direct_supported(&no1, PT_CONV_BWD_WEIGHT), "Cout 12 weight grad accepted");
    CHECK(!pt_conv_direct_supported(&no2, PT_CONV_BWD_INPUT), "Cin 12 input grad accepted");
    CHECK(!pt_conv_direct_supported(&no3, PT_CONV_BWD_INPUT), "stride 2 input grad accepted");
    CHECK(!pt_conv_direct_supported(&no4, PT_CONV_BWD_INPUT), "pad > k-1 input grad accepted");

    check_shape(12, 1, 32, 5, 1, 2);  /* cnn conv1 (smaller image) */
    check_shape(7, 32, 64, 5, 1, 2);  /* cnn conv2 */
    check_shape(8, 1, 16, 3, 1, 1);   /* resnet stem */
    check_shape(8, 16, 16, 3, 1, 1);  /* resnet block */
    check_shape(8, 16, 32, 3, 2, 1);  /* resnet downsampling conv */
    check_shape(8, 16, 32, 1, 2, 0);  /* resnet projection shortcut */
    check_shape(9, 8, 24, 3, 2, 1);   /* odd image, stride 2, 16 + 8 channel panels */
    check_shape(5, 24, 8, 5, 1, 1);   /* pad < k-1, 8-wide panel only, 16 + 8 input channels */
    check_shape(6, 8, 40, 3, 1, 0);   /* no padding, 2 x 16 + 8 */
    check_shape(5, 3, 8, 2, 1, 1);    /* even kernel, 3 channels (partial 6-column tiles) */
    check_shape(4, 8, 12, 3, 1, 1);   /* not covered: must report so */
    return test_exit_code("t_conv");
}
