/* Models. All parameters live in one flat buffer and all gradients in another (design.md #1);
 * each parameter tensor is a view (name, shape, offset) into them, in a fixed order, so a
 * checkpoint, an allreduce or an optimizer step treats the whole model as one contiguous slice.
 *
 * A model is built from a spec string (docs/MODELS.md): "mlp:784-1024-1024-10", "cnn", "resnet",
 * "textcnn", "gpt:layers=4,heads=4,d=256,ctx=128"; keys left out take their defaults. */
#ifndef PARATRAIN_MODEL_H
#define PARATRAIN_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "paratrain/backend.h"
#include "paratrain/error.h"
#include "paratrain/loss_scale.h"
#include "paratrain/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

struct pt_comm; /* paratrain/comm.h */

#define PT_MAX_PARAMS 160
#define PT_MAX_NODES 160
#define PT_MAX_SLOTS 164
#define PT_MAX_BUFFERS 64
#define PT_NAME_LEN 64

typedef struct {
    char name[PT_NAME_LEN]; /* "fc1/weight": group/name, the checkpoint path under /params */
    int ndim;
    int64_t shape[PT_MAX_DIMS];
    int64_t offset; /* into the flat buffers, in elements */
    int64_t numel;
    int init;       /* pt_init_kind (src/nn/graph.h) */
    float init_arg; /* its bound, standard deviation or constant */
    /* Partition over the tensor-parallel group (design.md #11). shape/numel above are this
     * rank's local part; gshape/gnumel the global tensor (equal to them when not split).
     * split_dim < 0: the tensor is replicated over tp. Otherwise dimension split_dim is viewed
     * as split_blocks equal blocks (1 for a plain split; 3 for a fused q,k,v weight) and each
     * block is split over tp: this rank holds indices [split_start, split_start +
     * shape[split_dim] / split_blocks) of every block. A local index i along split_dim maps to
     * the global index (i / lb) * (gshape[split_dim] / split_blocks) + split_start + i % lb,
     * lb = shape[split_dim] / split_blocks. Initialization and checkpoints use the global index,
     * so every grid holds the serial run's numbers. grad_over_tp: replicated, but each tp rank
     * holds a partial gradient (sequence-parallel layer norms) that must be summed over tp. */
    int64_t gshape[PT_MAX_DIMS];
    int64_t gnumel;
    int split_dim;
    int split_blocks;
    int64_t split_start;
    int grad_over_tp;
    /* where its gradient sits in the model's g: offset, unless a pipeline stage backs only part
     * of the flat gradient (pt_model_restrict_grad); -1: this model holds none */
    int64_t goff;
} pt_param;

typedef struct {
    pt_act act;      /* hidden-layer activation (mlp) */
    float dropout;   /* dropout probability (mlp: after each hidden activation; cnn, textcnn:
                        before the classifier) */
    int sync_bn;     /* batch norm: statistics over the global batch (needs allreduce_sum) */
    int conv_algo;   /* conv2d: PT_CONV_ALGO_AUTO (direct kernels where they apply) or _IM2COL */
    /* Tensor parallelism (Megatron): the tp group's communicator (NULL, or size 1: none). The
     * model's communication nodes (f, g, vocabulary-parallel reductions) run on it. */
    struct pt_comm *tp;
    int sequence_parallel; /* --sequence-parallel (gpt): reduce-scatter/all-gather along the
                              sequence instead of tp allreduces; layer norms on sequence shards */
    int forward_only; /* evaluation and generate (issue 20): no activation gradients (every
                         slot's g is one shared buffer, for the loss's dlogits); backward must
                         not be called */
} pt_model_options;

/* PT_CONV_ALGO_AUTO / _IM2COL: paratrain/backend.h */

/* A model is a list of nodes (one op each) over activation slots, run in order forward and in
 * reverse order backward (src/nn/graph.h). Every slot holds `size` floats per sample. */
typedef struct {
    int64_t size;
    float *a; /* activations, max_batch x size */
    float *g; /* gradient w.r.t. a; NULL for the input slot */
} pt_slot;

struct pt_op;
typedef struct {
    const struct pt_op *op;
    int in[2];         /* input slots (-1: none) */
    int out;           /* output slot */
    int p[8];          /* parameter indices (-1: none) */
    int np;
    int b[2];          /* buffer indices (batch norm running statistics) */
    /* The op's descriptor: its shape and hyper-parameters, as the backend entries take them. */
    union {
        pt_linear_desc linear; /* linear, bias_act */
        pt_conv2d_desc conv2d;
        pt_pool2d_desc pool;   /* maxpool2d, avgpool2d */
        struct {               /* conv1d_max (TextCNN): L x E in, nw window sizes k[], F filters */
            int L, E, F, nw, k[4];
        } textcnn;
        pt_batchnorm_desc bn;
        pt_layernorm_desc ln;
        pt_embedding_desc embed;
        pt_attention_desc attn;
        struct {               /* tp_seq_gather / tp_seq_scatter: T positions of D */
            int T, D;
        } seq;
    } d;
    pt_act act;
    float dropout;
    int id;            /* dropout stream and log name */
    int64_t aux_row;   /* floats of saved state per sample */
    int64_t aux_fixed; /* floats of saved state per batch */
    float *aux;
    /* --precision bf16|fp16: 16-bit elements per sample of the layer input the op saves for
     * its backward (linear, conv1d_max; 0: none), and where they are */
    int64_t lp_row;
    uint16_t *lp;
} pt_node;

typedef struct pt_model {
    char spec[256];
    const pt_backend *be;
    pt_model_options opt;

    int input_size; /* floats per sample */
    int classes;    /* outputs per target (vocabulary of a language model) */
    int targets;    /* targets per sample: 1, or the context length of a language model, whose
                       targets are its own input shifted by one token */

    int nparams;
    pt_param params[PT_MAX_PARAMS];
    int64_t numel; /* total parameter count */
    float *w;      /* flat parameters (backend memory) */
    float *g;      /* flat gradients, same layout (but see g_lo) */
    /* The part of the flat layout g backs: g[i] is the gradient of flat element g_lo + i for
     * g_lo <= element < g_hi; g_n >= g_hi - g_lo floats in all (a pipeline stage appends the
     * gradients of parameters it uses but another stage owns, at their goff). 0, numel, numel
     * unless pt_model_restrict_grad. */
    int64_t g_lo, g_hi, g_n;
    int g_external; /* g is owned by someone else (pt_model_use_grad_buffer) */
    /* Mixed precision (docs/MIXED_PRECISION.md): w stays the fp32 master copy; w16 is its
     * bf16/fp16 copy (same layout, backend memory) the dense layers compute with, refreshed by
     * pt_model_refresh_lowp after every change of w. PT_F32: w16 NULL. */
    pt_dtype precision;
    uint16_t *w16;
    /* PT_LOWP_STATS=1 in the environment (read by pt_model_set_precision): grad16 counts the
     * backward's 16-bit gradient conversions (be->lowp_flush_count's nonzero, flushed to zero,
     * subnormal), rank-local, accumulated until the caller resets them. 0: nothing is counted. */
    int lowp_stats;
    int64_t grad16[3];
    /* Loss scaling: the loss gradient is multiplied by ls.scale, and each parameter gradient
     * divided by it again as soon as backward has finished it (before gradient communication);
     * grad_nonfinite is set when one of them is not finite (reset by the caller per step). The
     * scaler's state is kept here so that checkpoints (src/io/ckpt.c) carry it. */
    pt_loss_scaler ls;
    int grad_nonfinite;
    int w_external; /* w is owned by someone else (pt_model_use_param_buffer) */

    /* Non-trained state saved with the model (batch-norm running statistics): backend memory
     * (be->to_host / to_device to read or write it). */
    int nbuffers;
    pt_param buffers[PT_MAX_BUFFERS];
    int64_t nbuf;
    float *buf;
    double *bn_host; /* host staging of a synchronized batch norm's 2C + 1 sums (nbuf + 1) */

    int nnodes, nslots;
    pt_node nodes[PT_MAX_NODES];
    pt_slot slots[PT_MAX_SLOTS];
    int max_batch;
    float *act_block;    /* every slot's activations, gradients and every node's saved state */
    float *scratch;      /* shared by the ops for one call at a time */
    int64_t scratch_size;
    float *input;        /* the input slot: the caller's batch uploaded (backend memory,
                            max_batch x input_size); in-flight blocks have their own */
    int32_t *tgt;        /* the loss's labels, max_batch x targets (backend memory): uploaded, or
                            a language model's shifted input */
    const float *x;      /* the caller's input of the last forward (host, not owned) */
    unsigned char slot_written[PT_MAX_SLOTS], param_written[PT_MAX_PARAMS]; /* backward */

    /* Called during the backward pass as soon as a layer's parameter gradients are final, with
     * the range of the flat gradient buffer they fill (ranges arrive from the end of the buffer
     * towards its start). Data parallelism starts gradient buckets from it. NULL: none. */
    void (*grad_ready)(void *arg, int64_t offset, int64_t count);
    void *grad_ready_arg;
    /* Sums n doubles over the data-parallel group in place (synchronized batch norm). */
    int (*allreduce_sum)(void *arg, double *x, int n);
    void *allreduce_arg;
    /* First failure an op recorded during the current forward/backward (an allreduce of sync
     * batch norm); the op still writes its output. Read with pt_model_status. */
    pt_status status;

    /* Tensor parallelism (docs/MODELS.md): tp_size 1 when none. A vocabulary-parallel model
     * (gpt at tp > 1) produces logits for vocabulary entries [vocab_start, vocab_start +
     * local_classes) only, and its loss reduces over tp (tp_xent: 4 doubles per target row). */
    int tp_size, tp_rank;
    int nextra_nodes; /* nodes the serial graph lacks (tp_f, tp_g, a row-parallel layer's
                         bias_act): they do not shift the serial nodes' ids (dropout streams) */
    int local_classes;
    int64_t vocab_start;
    double *tp_xent;      /* backend memory */
    double *tp_xent_host; /* its host copy, for the tp allreduces between the steps */

    /* Pipeline stages: activation blocks of the micro-batches in flight (block 0 is act_block;
     * the others hold inflight_rows rows), the one the slots point into, and the input each
     * forward saw (the caller's host pointer, and its upload: block 0's is m->input).
     * accumulate: backward adds to every parameter gradient (micro-batches). */
    struct { float *block; const float *x; float *input; } *inflight;
    int ninflight, cur_inflight, inflight_rows;
    /* the nodes blocks 1.. hold (pt_model_alloc_inflight's `nodes`), when has_inflight_nodes */
    unsigned char inflight_nodes[PT_MAX_NODES];
    int has_inflight_nodes;
    int accumulate;
    float *g_pass; /* accumulate: one backward pass's gradients, added to g */
} pt_model;

/* A spec in canonical form, every key in table order with its value (defaults filled in):
 * "gpt:d=32,layers=1" -> "gpt:layers=1,heads=4,d=32,ctx=128,vocab=256". Checks the spec fully
 * without building anything. Two specs name the same architecture iff their forms are equal. */
pt_status pt_model_spec_canonical(const char *spec, char *out, size_t len);
/* Same architecture (canonical forms equal; the texts, when either does not parse). */
bool pt_model_spec_same(const char *a, const char *b);
/* Whether the model's hidden layers take --activation (an MLP with a hidden layer). */
bool pt_model_spec_uses_activation(const char *spec);

/* Parses a spec and allocates parameters, gradients and activations for max_batch rows. */
pt_status pt_model_create(pt_model *m, const char *spec, const pt_model_options *opt,
                          const pt_backend *be, int max_batch);
void pt_model_destroy(pt_model *m);
/* Switches the model's compute to precision t (PT_F32, PT_BF16, PT_F16): allocates w16 and the
 * 16-bit saved inputs, lays the activations out again, and refreshes w16. Before the pipeline's
 * in-flight blocks are allocated. PT_ERR_ARG with a message when the backend has no
 * low-precision entries. */
pt_status pt_model_set_precision(pt_model *m, pt_dtype t);
/* Adds the flush counts of src converted to dst16 (n elements, m->precision) to m->grad16 when
 * m->lowp_stats; otherwise does nothing. */
pt_status pt_model_count_grad16(pt_model *m, const float *src, const uint16_t *dst16, int64_t n);
/* Bytes the model holds per parameter: the fp32 value, plus its 16-bit compute copy (w16) at
 * bf16/fp16. The gradient and the optimizer state stay fp32. */
static inline double pt_model_param_bytes(const pt_model *m) { return m->precision == PT_F32 ? 4.0 : 6.0; }
/* Bytes of an activation block for `rows` rows: every slot's values and gradients, every node's
 * saved state and, at bf16/fp16, the 16-bit saved inputs (the ops' shared scratch not counted). */
int64_t pt_model_block_bytes(const pt_model *m, int rows);
/* w16 = lowp(w) (nothing at PT_F32): after init, a load, a broadcast and every update. */
pt_status pt_model_refresh_lowp(pt_model *m);

/* Makes g (numel floats of backend memory, owned by the caller, e.g. a shared-memory buffer
 * from pt_comm_buffer_alloc) the model's gradient buffer. */
void pt_model_use_grad_buffer(pt_model *m, float *g);
/* The same for the parameters; their current values are copied into w. */
void pt_model_use_param_buffer(pt_model *m, float *w);
/* A pipeline stage's gradients: g (and the accumulation buffer) shrink to the flat range
 * [lo, hi) plus, after it, the parameters t with extra[t] set (used, not owned; extra may be
 * NULL); every other parameter's goff becomes -1 and its gradient must never be written. Before
 * pt_model_alloc_inflight and before anyone keeps a pointer to g; g is zeroed. PT_ERR_NOMEM with
 * a message (the old buffer kept) when the new one cannot be allocated. */
pt_status pt_model_restrict_grad(pt_model *m, int64_t lo, int64_t hi, const unsigned char *extra);

/* Deterministic initialization from (seed, tensor index, GLOBAL element index, so a tensor-
 * parallel rank holds exactly its slice of the serial run's tensor): PyTorch's nn.Linear
 * default distribution (Kaiming-uniform weights, uniform bias, bound 1/sqrt(fan_in)). Fails with
 * PT_ERR_NOMEM (parameters left as they were) when its staging buffer cannot be allocated;
 * PT_FAULT_INJECT=model-init-alloc makes that allocation fail, for the tests. */
pt_status pt_model_init(pt_model *m, uint64_t seed);

/* Forward pass over `rows` samples x (rows x input_size); returns logits (rows x targets x
 * pt_model_local_classes), owned by the model. `train` enables dropout, keyed by (seed, step) and the sample's global position
 * row_offset + r in the global batch. */
typedef struct {
    int train;
    uint64_t seed;
    int64_t step;
    int64_t row_offset;
} pt_fwd_ctx;

const float *pt_model_forward(pt_model *m, const float *x, int rows, const pt_fwd_ctx *ctx);

/* Loss of the last forward against labels (a language model ignores them and predicts its input
 * shifted by one); when dlogits_scale != 0, also backpropagates (softmax - onehot) * dlogits_scale
 * and OVERWRITES m->g. Returns the summed per-sample loss over rows (a language model's
 * per-sample loss is the mean over its targets); *correct counts correct targets. */
double pt_model_loss_backward(pt_model *m, const int32_t *labels, int rows, const pt_fwd_ctx *ctx,
                              float dlogits_scale, int64_t *correct);

/* The pieces a pipeline stage runs (docs/ARCHITECTURE.md, "Pipeline parallelism"):
 * forward over nodes [n0, n1) (x is the data: the first stage's input, and a language model's
 * targets on the last); the loss of the last node's output (its gradient, scaled, into that
 * slot's g); backward over nodes [n0, n1) from the gradient in the slot of node n1 - 1's output
 * (the loss's, or one received from the next stage), ending with the gradient of the stage's
 * input slot. With m->accumulate set, parameter gradients add up over calls; else the first
 * writer overwrites (what pt_model_loss_backward does). */
void pt_model_forward_range(pt_model *m, const float *x, int rows, const pt_fwd_ctx *ctx, int n0,
                            int n1);
double pt_model_loss(pt_model *m, const int32_t *labels, int rows, float dlogits_scale,
                     int64_t *correct);
void pt_model_backward_range(pt_model *m, int rows, const pt_fwd_ctx *ctx, int n0, int n1);
/* k activation blocks, block 0 the model's own and the others for `rows` rows, so k
 * micro-batches can be in flight between their forward and their backward; select_inflight
 * points the slots (and the input) at block k. nodes (nnodes flags, or NULL: all): the nodes
 * this rank runs; blocks 1.. hold only their slots and saved state, so a pipeline stage's
 * blocks are the size of its part of the model (block 0 stays whole: evaluation runs it). */
pt_status pt_model_alloc_inflight(pt_model *m, int k, int rows, const unsigned char *nodes);
void pt_model_select_inflight(pt_model *m, int k);
/* The one activation slot that crosses a cut before node c (produced before c, read at or after
 * it: the output of node c - 1), or -1 when c is no place to cut (0, nnodes, or more than one
 * live slot, e.g. inside a residual block). The data (slot 0) is everywhere and does not count. */
int pt_model_cut_slot(const pt_model *m, int c);
/* Estimated floating-point operations of node i's forward per sample (the partition's cost). */
double pt_model_node_flops(const pt_model *m, int i);

/* PT_OK, or the first error an op recorded since the last pt_model_forward began (the message
 * is in pt_error_message). Check it after forward and after backward: an op that fails still
 * writes its output (from local data), so nothing is left unwritten, but the step is invalid. */
pt_status pt_model_status(const pt_model *m);

int pt_model_classes(const pt_model *m);
/* Targets per sample (1 for a classifier; the context length for a language model). */
int pt_model_targets(const pt_model *m);
/* True when the model has batch-norm layers (their batch statistics depend on the batch split). */
int pt_model_has_batchnorm(const pt_model *m);
int pt_model_input_size(const pt_model *m);
const pt_param *pt_model_find_param(const pt_model *m, const char *name);

/* Tensor parallelism (Megatron; the layouts are in docs/MODELS.md). The tp group's size and this
 * rank's place in it (1 and 0 without tp).
 *
 * Which parameters are sharded: p->split_dim >= 0 means this rank holds a distinct slice of the
 * global tensor (its gradient is complete for that slice, and a tp rank's gradient-norm
 * contribution is its own slice: sum the squares over tp). p->split_dim < 0 means every tp rank
 * holds the whole tensor and, after backward, the same whole gradient (count it once, e.g. on tp
 * rank 0, in a norm), unless p->grad_over_tp, where each holds a partial gradient to be summed
 * over tp first. Gradients are reduced over dp as usual in both cases; never over tp. */
int pt_model_tp_size(const pt_model *m);
int pt_model_tp_rank(const pt_model *m);
/* Logit columns per target this rank produces: pt_model_classes, or its vocabulary slice
 * (vocab_start onwards) for a vocabulary-parallel model. */
int pt_model_local_classes(const pt_model *m);
/* The flat index in the global tensor (gshape, row-major) of local element i of p. */
int64_t pt_param_global_index(const pt_param *p, int64_t i);

/* Samples ntokens bytes from a language model (gpt) after `prompt` into out: temperature 0 is
 * greedy; top_k > 0 keeps the k likeliest tokens; draws are Philox(seed, ., i). */
pt_status pt_generate(pt_model *m, const char *prompt, int ntokens, float temperature, int top_k,
                      uint64_t seed, unsigned char *out);

#ifdef __cplusplus
}
#endif
#endif
