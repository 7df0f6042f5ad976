/* CPU pooling entries, channels-last: max and average pooling over square windows without
 * padding, and TextCNN's max over time.
 *
 * Max pooling keeps, per output, the index of its winner inside the sample's H x H x C image (the
 * first maximum, as PyTorch); the backward adds each output's gradient there, sample by sample
 * (disjoint, so threads never race). Max over time keeps the winning start position per
 * (sample, filter); its backward scatters dy to the winners and sums db over the samples in
 * order, so the sums do not depend on the thread count. */
#include <float.h>
#include <stdint.h>
#include <string.h>

#include "cpu_kernels.h"

static pt_status cpu_maxpool2d_forward(const pt_pool2d_desc *d, int rows, const float *x, float *y,
                                       int32_t *arg)
{
    const int H = d->H, C = d->C, k = d->k, s = d->stride, Ho = d->Ho;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < rows; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Ho; ox++)
                for (int c = 0; c < C; c++) {
                    float best = -FLT_MAX;
                    int32_t at = 0;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            const int32_t i = ((oy * s + ky) * H + ox * s + kx) * C + c;
                            const float v = x[(int64_t)b * H * H * C + i];
                            if (v > best) best = v, at = i; /* first maximum wins, as PyTorch */
                        }
                    const int64_t o = (((int64_t)b * Ho + oy) * Ho + ox) * C + c;
                    y[o] = best;
                    arg[o] = at;
                }
    return PT_OK;
}

static pt_status cpu_maxpool2d_backward(const pt_pool2d_desc *d, int rows, const float *dy,
                                        const int32_t *arg, float beta, float *dx)
{
    const int H = d->H, C = d->C, Ho = d->Ho;
    const int64_t in_row = (int64_t)H * H * C, out_row = (int64_t)Ho * Ho * C;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < rows; b++) {
        float *dd = dx + b * in_row;
        if (beta == 0.0f) memset(dd, 0, sizeof(float) * (size_t)in_row);
        for (int64_t o = 0; o < out_row; o++) dd[arg[b * out_row + o]] += dy[b * out_row + o];
    }
    return PT_OK;
}

static pt_status cpu_avgpool2d_forward(const pt_pool2d_desc *d, int rows, const float *x, float *y)
{
    const int H = d->H, C = d->C, k = d->k, s = d->stride, Ho = d->Ho;
    const float inv = 1.0f / (float)(k * k);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < rows; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Ho; ox++) {
                float *yo = y + (((int64_t)b * Ho + oy) * Ho + ox) * C;
                for (int c = 0; c < C; c++) yo[c] = 0.0f;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        const float *xi =
                            x + (((int64_t)b * H + oy * s + ky) * H + ox * s + kx) * C;
                        for (int c = 0; c < C; c++) yo[c] += xi[c];
                    }
                for (int c = 0; c < C; c++) yo[c] *= inv;
            }
    return PT_OK;
}

static pt_status cpu_avgpool2d_backward(const pt_pool2d_desc *d, int rows, const float *dy,
                                        float beta, float *dx)
{
    const int H = d->H, C = d->C, k = d->k, s = d->stride, Ho = d->Ho;
    const float inv = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < rows; b++) {
        if (beta == 0.0f)
            memset(dx + (int64_t)b * H * H * C, 0, sizeof(float) * (size_t)H * H * C);
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Ho; ox++) {
                const float *g = dy + (((int64_t)b * Ho + oy) * Ho + ox) * C;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        float *dd = dx + (((int64_t)b * H + oy * s + ky) * H + ox * s + kx) * C;
                        for (int c = 0; c < C; c++) dd[c] += g[c] * inv;
                    }
            }
    }
    return PT_OK;
}

static pt_status cpu_maxtime_forward(const pt_maxtime_desc *d, int rows, const float *conv,
                                     const float *bias, float *y, int32_t *arg)
{
    const int L = d->L, F = d->F, k = d->k;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < rows; b++)
        for (int f = 0; f < F; f++) {
            float best = -FLT_MAX;
            int32_t at = 0;
            for (int t = 0; t + k <= L; t++) {
                const float v = conv[((int64_t)b * L + t) * F + f];
                if (v > best) best = v, at = t;
            }
            best += bias[f];
            y[(int64_t)b * d->y_width + d->y_col + f] = best > 0.0f ? best : 0.0f;
            arg[(int64_t)b * F + f] = at;
        }
    return PT_OK;
}

static pt_status cpu_maxtime_backward(const pt_maxtime_desc *d, int rows, const float *dy,
                                      const int32_t *arg, float *dconv, float *db)
{
    const int L = d->L, F = d->F;
    memset(dconv, 0, sizeof(float) * (size_t)rows * L * F);
    for (int f = 0; f < F; f++) db[f] = 0.0f;
    for (int b = 0; b < rows; b++)
        for (int f = 0; f < F; f++) {
            const float g = dy[(int64_t)b * d->y_width + d->y_col + f];
            dconv[((int64_t)b * L + arg[(int64_t)b * F + f]) * F + f] = g;
            db[f] += g;
        }
    return PT_OK;
}

void pt_cpu_register_pool(pt_backend *be)
{
    be->maxpool2d_forward = cpu_maxpool2d_forward;
    be->maxpool2d_backward = cpu_maxpool2d_backward;
    be->avgpool2d_forward = cpu_avgpool2d_forward;
    be->avgpool2d_backward = cpu_avgpool2d_backward;
    be->maxtime_forward = cpu_maxtime_forward;
    be->maxtime_backward = cpu_maxtime_backward;
}
