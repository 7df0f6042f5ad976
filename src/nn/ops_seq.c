/* Sequence ops: token (+ position) embedding and causal multi-head self-attention. The arithmetic
 * is the backend's (embedding_* and attention_* entries; kernels/cpu/attention_kernels.c).
 *
 *   embedding   in: the sample's tokens (stored as floats, row stride d.embed.stride); out (T x D);
 *               d.embed; p = {wte (Vl x D), wpe (T x D) or -1}
 *     y[t] = wte[tok[t]] + wpe[t]. A tied output layer (a linear node that borrows wte) adds its
 *     part of wte's gradient first; the embedding accumulates. Vocabulary-parallel (Vl > 0): this
 *     rank holds rows [v0, v0 + Vl) of wte; other tokens give 0, and a tp_g node sums the ranks'
 *     outputs. wpe is replicated, so only the rank with no_wpe = 0 adds it (the sum counts it
 *     once; adding zeros keeps the serial bits); every rank computes its whole gradient.
 *
 *   attention   in: qkv (T x 3D, per position [q | k | v], head h in columns h*dh..), out (T x D);
 *               d.attn; saves the log-sum-exp of every (head, query) row, H*T floats per sample. */
#include "graph.h"

static void embed_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const float *wpe = n->p[1] >= 0 ? pt_pw(m, n, 1) : NULL; /* the entry skips it for no_wpe */
    pt_op_check(m, m->be->embedding_forward(&n->d.embed, rows, pt_in(m, n, 0)->a, pt_pw(m, n, 0), wpe,
                                      pt_out(m, n)->a));
}

static void embed_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const float beta = pt_param_beta(m, n, 0);
    float *dwpe = NULL;
    if (n->p[1] >= 0) {
        pt_param_beta(m, n, 1); /* marks it written: the entry overwrites it */
        dwpe = pt_pg(m, n, 1);
    }
    pt_op_check(m, m->be->embedding_backward(&n->d.embed, rows, pt_in(m, n, 0)->a, pt_out(m, n)->g,
                                       beta, pt_pg(m, n, 0), dwpe));
}

const pt_op pt_op_embedding = {"embedding", NULL, embed_forward, embed_backward};

static void attn_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    pt_op_check(m, m->be->attention_forward(&n->d.attn, rows, pt_in(m, n, 0)->a, pt_out(m, n)->a,
                                      n->aux));
}

static void attn_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int beta = pt_in_beta(m, n, 0);
    if (beta < 0) return;
    pt_slot *in = pt_in(m, n, 0), *out = pt_out(m, n);
    pt_op_check(m, m->be->attention_backward(&n->d.attn, rows, in->a, out->a, out->g, n->aux,
                                       (float)beta, in->g));
}

const pt_op pt_op_attention = {"attention", NULL, attn_forward, attn_backward};
