/* Models. All parameters live in one flat buffer and all gradients in another (design.md #1);
 * each parameter tensor is a view (name, shape, offset) into them, in a fixed order, so a
 * checkpoint, an allreduce or an optimizer step treats the whole model as one contiguous slice.
 *
 * A model is built from a spec string: "mlp:784-1024-1024-10" (later issues add cnn, gpt, ...). */
#ifndef PARATRAIN_MODEL_H
#define PARATRAIN_MODEL_H

#include <stdint.h>

#include "paratrain/backend.h"
#include "paratrain/error.h"
#include "paratrain/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PT_MAX_LAYERS 16
#define PT_MAX_PARAMS (2 * PT_MAX_LAYERS)
#define PT_NAME_LEN 64

typedef struct {
    char name[PT_NAME_LEN]; /* "fc1/weight": group/name, the checkpoint path under /params */
    int ndim;
    int64_t shape[PT_MAX_DIMS];
    int64_t offset; /* into the flat buffers, in elements */
    int64_t numel;
} pt_param;

typedef struct {
    pt_act act;      /* hidden-layer activation */
    float dropout;   /* dropout probability after each hidden activation */
} pt_model_options;

typedef struct pt_model {
    char spec[256];
    const pt_backend *be;
    pt_model_options opt;

    int nlayers;                 /* dense layers */
    int dims[PT_MAX_LAYERS + 1]; /* dims[0] = input features, dims[nlayers] = classes */

    int nparams;
    pt_param params[PT_MAX_PARAMS];
    int64_t numel; /* total parameter count */
    float *w;      /* flat parameters (backend memory) */
    float *g;      /* flat gradients, same layout */
    int g_external; /* g is owned by someone else (pt_model_use_grad_buffer) */
    int w_external; /* w is owned by someone else (pt_model_use_param_buffer) */

    /* activations for up to max_batch rows, one block: pre-activations z_i and outputs h_i */
    int max_batch;
    float *act_block;
    float *z[PT_MAX_LAYERS + 1];
    float *h[PT_MAX_LAYERS + 1];
    float *scratch; /* max_batch x max(dims): gradient w.r.t. a hidden output */
    const float *x; /* input of the last forward (not owned), for the first layer's dW */

    /* Called during the backward pass as soon as a layer's parameter gradients are final, with
     * the range of the flat gradient buffer they fill (ranges arrive from the end of the buffer
     * towards its start). Data parallelism starts gradient buckets from it. NULL: none. */
    void (*grad_ready)(void *arg, int64_t offset, int64_t count);
    void *grad_ready_arg;
} pt_model;

/* Parses a spec and allocates parameters, gradients and activations for max_batch rows. */
pt_status pt_model_create(pt_model *m, const char *spec, const pt_model_options *opt,
                          const pt_backend *be, int max_batch);
void pt_model_destroy(pt_model *m);
/* Makes g (numel floats of backend memory, owned by the caller, e.g. a shared-memory buffer
 * from pt_comm_buffer_alloc) the model's gradient buffer. */
void pt_model_use_grad_buffer(pt_model *m, float *g);
/* The same for the parameters; their current values are copied into w. */
void pt_model_use_param_buffer(pt_model *m, float *w);

/* Deterministic initialization from (seed, tensor index, element index): PyTorch's nn.Linear
 * default distribution (Kaiming-uniform weights, uniform bias, bound 1/sqrt(fan_in)). */
void pt_model_init(pt_model *m, uint64_t seed);

/* Forward pass over `rows` samples x (rows x dims[0]); returns logits (rows x classes), owned by
 * the model. `train` enables dropout, keyed by (seed, step) and the sample's global position
 * row_offset + r in the global batch. */
typedef struct {
    int train;
    uint64_t seed;
    int64_t step;
    int64_t row_offset;
} pt_fwd_ctx;

const float *pt_model_forward(pt_model *m, const float *x, int rows, const pt_fwd_ctx *ctx);

/* Loss of the last forward against labels; when dlogits_scale != 0, also backpropagates
 * (softmax - onehot) * dlogits_scale and OVERWRITES m->g. Returns the summed loss over rows. */
double pt_model_loss_backward(pt_model *m, const int32_t *labels, int rows, const pt_fwd_ctx *ctx,
                              float dlogits_scale, int64_t *correct);

int pt_model_classes(const pt_model *m);
int pt_model_input_size(const pt_model *m);
const pt_param *pt_model_find_param(const pt_model *m, const char *name);

#ifdef __cplusplus
}
#endif
#endif
