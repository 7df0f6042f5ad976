/* The model graph: ops, and the helpers the model builders (models.c) and the ops share.
 *
 * Activations are channels-last: an image sample is (H, W, C), a sequence sample (T, D). A node's
 * forward reads its input slots and writes its output slot; its backward reads the output slot's
 * gradient and writes its input slots' gradients and its parameters' gradients. A slot or a
 * parameter read by several nodes (a residual stream, a tied embedding) collects the sum: the
 * first writer in backward order overwrites, later ones accumulate (pt_in_beta, pt_param_beta),
 * so nothing is zeroed that is about to be overwritten. */
#ifndef PT_NN_GRAPH_H
#define PT_NN_GRAPH_H

#include "paratrain/model.h"

typedef enum { PT_INIT_ZERO = 0, PT_INIT_CONST, PT_INIT_UNIFORM, PT_INIT_NORMAL } pt_init_kind;

typedef struct pt_op {
    const char *name;
    /* floats of scratch the op needs for rows samples (0: none) */
    int64_t (*scratch)(const pt_model *m, const pt_node *n, int rows);
    void (*forward)(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx);
    void (*backward)(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx);
} pt_op;

/* the ops (one file per family) */
extern const pt_op pt_op_linear;    /* ops_dense.c */
extern const pt_op pt_op_add;       /* ops_dense.c */
extern const pt_op pt_op_conv2d;    /* ops_conv.c */
extern const pt_op pt_op_maxpool2d; /* ops_conv.c */
extern const pt_op pt_op_avgpool2d; /* ops_conv.c */
extern const pt_op pt_op_conv1d_max; /* ops_conv.c */
extern const pt_op pt_op_batchnorm; /* ops_norm.c */
extern const pt_op pt_op_layernorm; /* ops_norm.c */
extern const pt_op pt_op_embedding; /* ops_seq.c */
extern const pt_op pt_op_attention; /* ops_seq.c */
extern const pt_op pt_op_bias_act;  /* ops_dense.c: bias, activation, dropout (row-parallel) */
extern const pt_op pt_op_tp_f;      /* ops_tp.c: identity forward, allreduce backward */
extern const pt_op pt_op_tp_g;      /* ops_tp.c: allreduce forward, identity backward */
extern const pt_op pt_op_tp_seq_gather;  /* ops_tp.c: all-gather forward, reduce-scatter backward */
extern const pt_op pt_op_tp_seq_scatter; /* ops_tp.c: reduce-scatter forward, all-gather backward */
/* ops_tp.c: vocabulary-parallel softmax cross-entropy over local logits (rows x local_classes);
 * the same contract as the backend's softmax_xent over the global vocabulary */
double pt_tp_softmax_xent(pt_model *m, const float *logits, const int32_t *labels, int rows,
                          float grad_scale, float *dlogits, int64_t *correct);

/* builder (model.c) */
int pt_graph_param(pt_model *m, const char *name, int ndim, const int64_t *shape, pt_init_kind init,
                   float init_arg);
/* A parameter split over the tp group (pt_param's comment): dimension split_dim of gshape is
 * viewed as `blocks` equal blocks, each split in tp_size parts; this rank holds part tp_rank of
 * each. Without tp, the same as pt_graph_param. -1 when gshape does not divide (checked earlier
 * by the builders, with a message). */
int pt_graph_param_split(pt_model *m, const char *name, int ndim, const int64_t *gshape,
                         int split_dim, int blocks, pt_init_kind init, float init_arg);
int pt_graph_buffer(pt_model *m, const char *name, int64_t n, float init);
int pt_graph_slot(pt_model *m, int64_t size);
pt_node *pt_graph_node(pt_model *m, const pt_op *op, int in0, int in1, int out);
/* models.c: parses m->spec and adds the nodes */
pt_status pt_graph_build(pt_model *m);

/* for the ops */
static inline float *pt_pw(pt_model *m, const pt_node *n, int k) { return m->w + m->params[n->p[k]].offset; }
static inline float *pt_pg(pt_model *m, const pt_node *n, int k) { return m->g + m->params[n->p[k]].goff; }
static inline pt_slot *pt_in(pt_model *m, const pt_node *n, int k) { return &m->slots[n->in[k]]; }
static inline pt_slot *pt_out(pt_model *m, const pt_node *n) { return &m->slots[n->out]; }
/* 0 when this is the first gradient written to input k in this backward pass, else 1; marks it
 * written. Returns -1 when input k needs no gradient (the data). */
int pt_in_beta(pt_model *m, const pt_node *n, int k);
float pt_param_beta(pt_model *m, const pt_node *n, int k);
/* Records the first failure of a backend entry for pt_model_status (an asynchronous backend may
 * report a later op's failure here); the op goes on, so every output is defined. */
static inline void pt_op_check(pt_model *m, pt_status st)
{
    if (st != PT_OK && m->status == PT_OK) m->status = st;
}
/* dropout stream of node n at a step */
uint64_t pt_dropout_stream(int64_t step, int id);

#endif
