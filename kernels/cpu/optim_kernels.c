/* CPU optimizer updates on a flat slice (SGD with momentum / Nesterov, AdaGrad, Adam(W)): the
 * loops are compiled once per ISA level in elementwise_kernels.c, picked at run time. */
#include "cpu_kernels.h"
#include "elementwise_kernels.h"

static pt_status cpu_sgd_update(float *w, const float *g, float *buf, int64_t n,
                                const pt_update_params *p)
{
    pt_cpu_ew_kernels_get()->sgd_update(w, g, buf, n, p);
    return PT_OK;
}

static pt_status cpu_adagrad_update(float *w, const float *g, float *sum_sq, int64_t n,
                                    const pt_update_params *p)
{
    pt_cpu_ew_kernels_get()->adagrad_update(w, g, sum_sq, n, p);
    return PT_OK;
}

static pt_status cpu_adam_update(float *w, const float *g, float *m, float *v, int64_t n,
                                 const pt_update_params *p)
{
    pt_cpu_ew_kernels_get()->adam_update(w, g, m, v, n, p);
    return PT_OK;
}

void pt_cpu_register_optim(pt_backend *be)
{
    be->sgd_update = cpu_sgd_update;
    be->adagrad_update = cpu_adagrad_update;
    be->adam_update = cpu_adam_update;
}
