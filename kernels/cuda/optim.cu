/* CUDA optimizer updates on a flat slice, operation by operation as the CPU's (torch.optim 1.13):
 * one thread per element; the bias corrections are computed once on the host, as the CPU does. */
#include <math.h>

#include "cuda_common.h"

__global__ void k_sgd(float *w, const float *g, float *buf, int64_t n, float lr, float mu, float wd,
                      bool nesterov)
{
    GRID_STRIDE(i, n)
    {
        float d = g[i] + wd * w[i];
        if (buf) {
            buf[i] = mu * buf[i] + d;
            d = nesterov ? d + mu * buf[i] : buf[i];
        }
        w[i] -= lr * d;
    }
}

static pt_status cuda_sgd_update(float *w, const float *g, float *buf, int64_t n,
                                 const pt_update_params *p)
{
    if (n <= 0) return PT_OK;
    k_sgd<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(
        w, g, buf, n, p->lr, p->momentum, p->weight_decay, p->nesterov);
    PT_CUDA_LAUNCH_CHECK("sgd_update");
    return PT_OK;
}

__global__ void k_adagrad(float *w, const float *g, float *sum_sq, int64_t n, float lr, float wd,
                          float eps)
{
    GRID_STRIDE(i, n)
    {
        const float d = g[i] + wd * w[i];
        sum_sq[i] += d * d;
        w[i] -= lr * d / (sqrtf(sum_sq[i]) + eps);
    }
}

static pt_status cuda_adagrad_update(float *w, const float *g, float *sum_sq, int64_t n,
                                     const pt_update_params *p)
{
    if (n <= 0) return PT_OK;
    k_adagrad<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(
        w, g, sum_sq, n, p->lr, p->weight_decay, p->eps);
    PT_CUDA_LAUNCH_CHECK("adagrad_update");
    return PT_OK;
}

__global__ void k_adam(float *w, const float *g, float *m, float *v, int64_t n, float lr, float wd,
                       float b1, float b2, float eps, float step_size, float bc2_sqrt,
                       bool decoupled)
{
    GRID_STRIDE(i, n)
    {
        float d = g[i];
        if (decoupled)
            w[i] *= 1.0f - lr * wd;
        else
            d += wd * w[i];
        m[i] = b1 * m[i] + (1.0f - b1) * d;
        v[i] = b2 * v[i] + (1.0f - b2) * d * d;
        w[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}

static pt_status cuda_adam_update(float *w, const float *g, float *m, float *v, int64_t n,
                                  const pt_update_params *p)
{
    if (n <= 0) return PT_OK;
    const float bc1 = 1.0f - powf(p->beta1, (float)p->t);
    const float bc2_sqrt = sqrtf(1.0f - powf(p->beta2, (float)p->t));
    k_adam<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(
        w, g, m, v, n, p->lr, p->weight_decay, p->beta1, p->beta2, p->eps, p->lr / bc1, bc2_sqrt,
        p->decoupled_wd);
    PT_CUDA_LAUNCH_CHECK("adam_update");
    return PT_OK;
}

void pt_cuda_register_optim(pt_backend *be)
{
    be->sgd_update = cuda_sgd_update;
    be->adagrad_update = cuda_adagrad_update;
    be->adam_update = cuda_adam_update;
}
