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

void pt_cpu_register_loss(pt_backend *be)
{
    be->softmax_xent = cpu_softmax_xent;
}
