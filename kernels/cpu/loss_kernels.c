/* CPU loss kernels: softmax cross-entropy (double accumulation), a language model's shifted
 * targets, and the three steps of the vocabulary-parallel cross-entropy. */
#include <math.h>
#include <omp.h>

#include "cpu_kernels.h"

static double cpu_softmax_xent(const float *logits, const int32_t *labels, int rows, int cols,
                               float grad_scale, float *dlogits, int64_t *correct)
{
    double loss = 0.0;
    int64_t ncorrect = 0;
#pragma omp parallel for schedule(static) reduction(+ : loss, ncorrect) if ((int64_t)rows * cols >= PT_CPU_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *z = logits + (int64_t)r * cols;
        float zmax = z[0];
        int argmax = 0;
        for (int c = 1; c < cols; c++)
            if (z[c] > zmax) zmax = z[c], argmax = c;
        double sum = 0.0;
        for (int c = 0; c < cols; c++) sum += exp((double)(z[c] - zmax));
        const int y = labels[r];
        loss += log(sum) - (double)(z[y] - zmax);
        ncorrect += argmax == y;
        if (dlogits) {
            float *d = dlogits + (int64_t)r * cols;
            const double inv = 1.0 / sum;
            for (int c = 0; c < cols; c++)
                d[c] = (float)(exp((double)(z[c] - zmax)) * inv) * grad_scale;
            d[y] -= grad_scale;
        }
    }
    if (correct) *correct = ncorrect;
    return loss;
}

static pt_status cpu_lm_targets(const float *tokens, int rows, int T, int stride, int32_t *tgt)
{
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < T; t++)
            tgt[(int64_t)r * T + t] = (int32_t)tokens[(int64_t)r * stride + t + 1];
    return PT_OK;
}

/* The vocabulary-parallel cross-entropy's three steps (backend.h gives the stat layout). The
 * argmax is the lowest global index holding the global max, as the serial argmax (first maximum)
 * picks; results equal softmax_xent's on the gathered logits up to the order of the sum of
 * exponentials. */
static pt_status cpu_vp_xent_max(const float *logits, int rows, int cols, double *stat)
{
#pragma omp parallel for schedule(static) if ((int64_t)rows * cols >= 65536)
    for (int r = 0; r < rows; r++) {
        const float *z = logits + (int64_t)r * cols;
        float mx = z[0];
        for (int c = 1; c < cols; c++) mx = z[c] > mx ? z[c] : mx;
        stat[r] = mx;
    }
    return PT_OK;
}

static pt_status cpu_vp_xent_sums(const float *logits, const int32_t *labels, int rows, int cols,
                                  int64_t v0, double *stat)
{
    const double *zmax = stat;
    double *sums = stat + rows, *argmax = stat + 3 * (int64_t)rows;
#pragma omp parallel for schedule(static) if ((int64_t)rows * cols >= 65536)
    for (int r = 0; r < rows; r++) {
        const float *z = logits + (int64_t)r * cols;
        const float mx = (float)zmax[r];
        double sum = 0.0;
        int first = -1;
        for (int c = 0; c < cols; c++) {
            sum += exp((double)(z[c] - mx));
            if (first < 0 && z[c] == mx) first = c;
        }
        const int64_t y = labels[r] - v0;
        sums[2 * r] = sum;
        sums[2 * r + 1] = y >= 0 && y < cols ? (double)(z[y] - mx) : 0.0; /* from its owner */
        argmax[r] = first >= 0 ? (double)(v0 + first) : INFINITY;
    }
    return PT_OK;
}

static double cpu_vp_xent_finish(const float *logits, const int32_t *labels, int rows, int cols,
                                 int64_t v0, const double *stat, float grad_scale, float *dlogits,
                                 int64_t *correct)
{
    const double *zmax = stat, *sums = stat + rows, *argmax = stat + 3 * (int64_t)rows;
    double loss = 0.0;
    int64_t ncorrect = 0;
    for (int r = 0; r < rows; r++) { /* serial: the loss sums in row order */
        loss += log(sums[2 * r]) - sums[2 * r + 1];
        ncorrect += argmax[r] == (double)labels[r];
    }
    if (dlogits) {
#pragma omp parallel for schedule(static) if ((int64_t)rows * cols >= 65536)
        for (int r = 0; r < rows; r++) {
            const float *z = logits + (int64_t)r * cols;
            const float mx = (float)zmax[r];
            const double inv = 1.0 / sums[2 * r];
            float *d = dlogits + (int64_t)r * cols;
            for (int c = 0; c < cols; c++)
                d[c] = (float)(exp((double)(z[c] - mx)) * inv) * grad_scale;
            const int64_t y = labels[r] - v0;
            if (y >= 0 && y < cols) d[y] -= grad_scale;
        }
    }
    if (correct) *correct = ncorrect;
    return loss;
}

void pt_cpu_register_loss(pt_backend *be)
{
    be->softmax_xent = cpu_softmax_xent;
    be->lm_targets = cpu_lm_targets;
    be->vp_xent_max = cpu_vp_xent_max;
    be->vp_xent_sums = cpu_vp_xent_sums;
    be->vp_xent_finish = cpu_vp_xent_finish;
}
