/* The model: parameters in one flat buffer, gradients in another (design.md #1), and a list of
 * nodes run forward in order and backward in reverse (graph.h). This file owns memory, the
 * builder helpers, initialization, and the forward / loss / backward driver; the ops live in
 * ops_*.c and the model specs in models.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "paratrain/comm.h"
#include "paratrain/fault.h"
#include "paratrain/lowp.h"
#include "paratrain/rng.h"

/* ------------------------------------------------------------------ builder */

int pt_graph_param(pt_model *m, const char *name, int ndim, const int64_t *shape, pt_init_kind init,
                   float init_arg)
{
    if (m->nparams >= PT_MAX_PARAMS) return -1;
    pt_param *p = &m->params[m->nparams];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->numel = 1;
    for (int d = 0; d < ndim; d++) p->shape[d] = shape[d], p->numel *= shape[d];
    for (int d = 0; d < ndim; d++) p->gshape[d] = shape[d];
    p->gnumel = p->numel;
    p->split_dim = -1, p->split_blocks = 1;
    p->offset = m->numel;
    p->goff = p->offset;
    p->init = init;
    p->init_arg = init_arg;
    m->numel += p->numel;
    return m->nparams++;
}

int pt_graph_param_split(pt_model *m, const char *name, int ndim, const int64_t *gshape,
                         int split_dim, int blocks, pt_init_kind init, float init_arg)
{
    const int tp = m->tp_size;
    if (tp <= 1) return pt_graph_param(m, name, ndim, gshape, init, init_arg);
    if (gshape[split_dim] % ((int64_t)blocks * tp)) return -1;
    int64_t shape[PT_MAX_DIMS];
    for (int d = 0; d < ndim; d++) shape[d] = gshape[d];
    const int64_t part = gshape[split_dim] / blocks / tp; /* of each block, per rank */
    shape[split_dim] = part * blocks;
    const int t = pt_graph_param(m, name, ndim, shape, init, init_arg);
    if (t < 0) return -1;
    pt_param *p = &m->params[t];
    p->gnumel = 1;
    for (int d = 0; d < ndim; d++) p->gshape[d] = gshape[d], p->gnumel *= gshape[d];
    p->split_dim = split_dim, p->split_blocks = blocks;
    p->split_start = (int64_t)m->tp_rank * part;
    return t;
}

int64_t pt_param_global_index(const pt_param *p, int64_t i)
{
    if (p->split_dim < 0) return i;
    const int d = p->split_dim;
    int64_t inner = 1;
    for (int k = d + 1; k < p->ndim; k++) inner *= p->shape[k];
    const int64_t n = p->shape[d], lb = n / p->split_blocks;
    const int64_t outer = i / (inner * n), j = i / inner % n, rest = i % inner;
    const int64_t gj = (j / lb) * (p->gshape[d] / p->split_blocks) + p->split_start + j % lb;
    return (outer * p->gshape[d] + gj) * inner + rest;
}

int pt_graph_buffer(pt_model *m, const char *name, int64_t n, float init)
{
    if (m->nbuffers >= PT_MAX_BUFFERS) return -1;
    pt_param *p = &m->buffers[m->nbuffers];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = 1, p->shape[0] = n, p->numel = n, p->offset = m->nbuf;
    p->gshape[0] = n, p->gnumel = n, p->split_dim = -1, p->split_blocks = 1; /* never split */
    p->init = PT_INIT_CONST, p->init_arg = init;
    m->nbuf += n;
    return m->nbuffers++;
}

int pt_graph_slot(pt_model *m, int64_t size)
{
    if (m->nslots >= PT_MAX_SLOTS) return -1;
    m->slots[m->nslots].size = size;
    return m->nslots++;
}

pt_node *pt_graph_node(pt_model *m, const pt_op *op, int in0, int in1, int out)
{
    if (m->nnodes >= PT_MAX_NODES) return NULL;
    pt_node *n = &m->nodes[m->nnodes];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->in[0] = in0, n->in[1] = in1, n->out = out;
    for (int k = 0; k < 8; k++) n->p[k] = -1;
    n->b[0] = n->b[1] = -1;
    n->id = ++m->nnodes - m->nextra_nodes;
    return n;
}

/* ------------------------------------------------------------------ helpers for the ops */

int pt_in_beta(pt_model *m, const pt_node *n, int k)
{
    const int s = n->in[k];
    if (s < 0 || !m->slots[s].g) return -1;
    int written = m->slot_written[s];
    m->slot_written[s] = 1;
    return written;
}

float pt_param_beta(pt_model *m, const pt_node *n, int k)
{
    int written = m->param_written[n->p[k]];
    m->param_written[n->p[k]] = 1;
    return written ? 1.0f : 0.0f;
}

uint64_t pt_dropout_stream(int64_t step, int id)
{
    return ((uint64_t)PT_STREAM_DROPOUT << 56) ^ ((uint64_t)step << 8) ^ (uint64_t)id;
}

/* ------------------------------------------------------------------ create / destroy */

/* --- forward-only models (pt_model_options.forward_only; issue 20) ----------------------------
 * Forward reads and writes only the slots' activations and the nodes' aux; the loss writes its
 * dlogits (scale 0 in evaluation) into the last slot's g. So every slot's g points at one buffer
 * of the widest slot, which halves the block for evaluation and generate. */
static int64_t widest_slot(const pt_model *m)
{
    int64_t w = 0;
    for (int s = 1; s < m->nslots; s++) w = m->slots[s].size > w ? m->slots[s].size : w;
    return w;
}

/* The slots the nodes marked in `on` read or write (all of them when on is NULL; never the
 * input slot 0, which is m->input or an in-flight block's own). */
static void slots_of(const pt_model *m, const unsigned char *on, unsigned char *slot_on)
{
    memset(slot_on, on ? 0 : 1, PT_MAX_SLOTS);
    for (int i = 0; on && i < m->nnodes; i++)
        if (on[i]) {
            const pt_node *n = &m->nodes[i];
            if (n->in[0] > 0) slot_on[n->in[0]] = 1;
            if (n->in[1] > 0) slot_on[n->in[1]] = 1;
            if (n->out > 0) slot_on[n->out] = 1;
        }
}

/* Points every slot's activations and gradients (forward-only: one shared gradient buffer), then
 * every node's saved state, into an activation block laid out for `rows` rows; returns the end
 * of that layout. on (NULL: every node): only those nodes and their slots, the others left as
 * they point (a pipeline stage's in-flight block: the stage never touches them). */
static float *layout_block(pt_model *m, float *p, int rows, const unsigned char *on)
{
    unsigned char slot_on[PT_MAX_SLOTS];
    slots_of(m, on, slot_on);
    float *shared_g = p;
    if (m->opt.forward_only) p += (int64_t)rows * widest_slot(m);
    for (int s = 1; s < m->nslots; s++) {
        if (!slot_on[s]) continue;
        m->slots[s].a = p, p += (int64_t)rows * m->slots[s].size;
        if (m->opt.forward_only) m->slots[s].g = shared_g;
        else m->slots[s].g = p, p += (int64_t)rows * m->slots[s].size;
    }
    for (int i = 0; i < m->nnodes; i++) {
        pt_node *n = &m->nodes[i];
        if (on && !on[i]) continue;
        n->aux = p, p += (int64_t)rows * n->aux_row + n->aux_fixed;
    }
    for (int i = 0; i < m->nnodes; i++) { /* 16-bit saved inputs, 64-byte aligned */
        pt_node *n = &m->nodes[i];
        if (on && !on[i]) continue;
        n->lp = n->lp_row ? (uint16_t *)p : NULL;
        p += ((int64_t)rows * n->lp_row + 31) / 32 * 16;
    }
    return p;
}

static int64_t block_floats(const pt_model *m, int rows, const unsigned char *on)
{
    unsigned char slot_on[PT_MAX_SLOTS];
    slots_of(m, on, slot_on);
    int64_t total = m->opt.forward_only ? (int64_t)rows * widest_slot(m) : 0;
    for (int s = 1; s < m->nslots; s++)
        if (slot_on[s]) total += (m->opt.forward_only ? 1 : 2) * (int64_t)rows * m->slots[s].size;
    for (int i = 0; i < m->nnodes; i++)
        if (!on || on[i])
            total += (int64_t)rows * m->nodes[i].aux_row + m->nodes[i].aux_fixed +
                     ((int64_t)rows * m->nodes[i].lp_row + 31) / 32 * 16;
    return total;
}

/* The activation block for max_batch rows (every slot's activations and gradients, every
 * node's saved state, then the ops' shared scratch) and the slots pointed into it. */
static pt_status alloc_block(pt_model *m)
{
    int64_t scratch = 0;
    for (int i = 0; i < m->nnodes; i++) {
        pt_node *n = &m->nodes[i];
        if (n->op->scratch) {
            int64_t need = n->op->scratch(m, n, m->max_batch);
            scratch = need > scratch ? need : scratch;
        }
    }
    const size_t abytes = sizeof(float) * (size_t)(block_floats(m, m->max_batch, NULL) + scratch);
    if (m->act_block) m->be->free(m->act_block);
    m->act_block = m->be->alloc(abytes ? abytes : 64);
    if (!m->act_block)
        return PT_ERR(PT_ERR_NOMEM, "lower --batch", "cannot allocate %zu bytes of activations",
                      abytes);
    m->scratch = layout_block(m, m->act_block, m->max_batch, NULL);
    m->scratch_size = scratch;
    return PT_OK;
}

pt_status pt_model_create(pt_model *m, const char *spec, const pt_model_options *opt,
                          const pt_backend *be, int max_batch)
{
    memset(m, 0, sizeof *m);
    if (strlen(spec) >= sizeof m->spec)
        return PT_ERR(PT_ERR_ARG, NULL, "model spec is too long");
    snprintf(m->spec, sizeof m->spec, "%s", spec);
    m->be = be;
    m->opt = *opt;
    if (opt->dropout < 0.0f || opt->dropout >= 1.0f)
        return PT_ERR(PT_ERR_ARG, "use a probability in [0, 1)", "bad dropout %g", opt->dropout);
    if (max_batch < 1) return PT_ERR(PT_ERR_ARG, NULL, "max_batch must be positive");
    m->max_batch = max_batch;
    m->targets = 1;
    m->tp_size = opt->tp ? opt->tp->size : 1;
    m->tp_rank = opt->tp ? opt->tp->rank : 0;
    pt_graph_slot(m, 0); /* slot 0: the input; its size is set by the builder */
    PT_TRY(pt_graph_build(m)); /* refuses layouts tp does not divide, before any allocation */
    m->slots[0].size = m->input_size;
    if (!m->local_classes) m->local_classes = m->classes;

    size_t pbytes = sizeof(float) * (size_t)m->numel;
    m->w = be->alloc(pbytes);
    m->g = be->alloc(pbytes);
    /* the buffers (running statistics) and the host staging of sync batch norm's sums, which
     * are 2C + 1 <= nbuf + 1 doubles */
    const size_t bbytes = sizeof(float) * (size_t)m->nbuf;
    const size_t hbytes = sizeof(double) * (size_t)(m->nbuf + 1);
    m->buf = m->nbuf ? be->alloc(bbytes) : NULL;
    m->bn_host = !m->nbuf ? NULL : pt_host_alloc(be, hbytes);
    if (!m->w || !m->g || (m->nbuf && (!m->buf || !m->bn_host))) {
        pt_model_destroy(m);
        return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate %zu bytes of parameters", 2 * pbytes);
    }
    be->zero(m->w, pbytes);
    be->zero(m->g, pbytes);
    m->g_lo = 0, m->g_hi = m->g_n = m->numel;
    if (m->nbuf) be->zero(m->buf, bbytes);

    /* One block: every slot's activations and gradients (the input slot has neither: it is
     * m->input, where each forward uploads the caller's batch), then every node's saved state. */
    pt_status st = alloc_block(m);
    if (st != PT_OK) {
        pt_model_destroy(m);
        return st;
    }
    const size_t ibytes = sizeof(float) * (size_t)max_batch * (size_t)m->input_size;
    m->input = be->alloc(ibytes ? ibytes : 64);
    m->tgt = be->alloc(sizeof(int32_t) * (size_t)max_batch * (size_t)m->targets);
    const int vp = m->local_classes != m->classes;
    if (vp) {
        const size_t xbytes = 4 * sizeof(double) * (size_t)max_batch * (size_t)m->targets;
        m->tp_xent = be->alloc(xbytes);
        m->tp_xent_host = pt_host_alloc(be, xbytes);
    }
    if (!m->input || !m->tgt || (vp && (!m->tp_xent || !m->tp_xent_host))) {
        pt_model_destroy(m);
        return PT_ERR(PT_ERR_NOMEM, "lower --batch", "cannot allocate the input of %d rows",
                      max_batch);
    }
    m->slots[0].a = m->input;
    m->precision = PT_F32;
    pt_loss_scale_init(&m->ls, PT_LOSS_SCALE_NONE, 1.0, 0);
    return PT_OK;
}

void pt_model_destroy(pt_model *m)
{
    if (!m->be) return;
    if (!m->w_external) m->be->free(m->w);
    if (!m->g_external) m->be->free(m->g);
    if (m->w16) m->be->free(m->w16);
    m->be->free(m->act_block);
    m->be->free(m->input);
    for (int k = 1; k < m->ninflight; k++) {
        m->be->free(m->inflight[k].block);
        m->be->free(m->inflight[k].input);
    }
    free(m->inflight);
    if (m->g_pass) m->be->free(m->g_pass);
    if (m->buf) m->be->free(m->buf);
    pt_host_free(m->be, m->bn_host);
    m->be->free(m->tgt);
    m->be->free(m->tp_xent);
    pt_host_free(m->be, m->tp_xent_host);
    memset(m, 0, sizeof *m);
}

void pt_model_use_grad_buffer(pt_model *m, float *g)
{
    if (!m->g_external) m->be->free(m->g);
    m->g = g;
    m->g_external = 1;
    m->be->zero(m->g, sizeof(float) * (size_t)m->g_n);
}

pt_status pt_model_restrict_grad(pt_model *m, int64_t lo, int64_t hi, const unsigned char *extra)
{
    if (lo < 0 || hi < lo || hi > m->numel || m->g_external || m->g_pass)
        return PT_ERR(PT_ERR_INTERNAL, NULL, "pt_model_restrict_grad: range [%lld, %lld) of %lld",
                      (long long)lo, (long long)hi, (long long)m->numel);
    int64_t n = hi - lo;
    for (int t = 0; extra && t < m->nparams; t++)
        if (extra[t]) n += m->params[t].numel;
    const size_t bytes = sizeof(float) * (size_t)(n ? n : 1);
    float *g = m->be->alloc(bytes);
    if (!g)
        return PT_ERR(PT_ERR_NOMEM, "lower the model size", "cannot allocate %zu bytes of the "
                      "stage's gradients", bytes);
    m->be->zero(g, bytes);
    m->be->free(m->g);
    m->g = g, m->g_lo = lo, m->g_hi = hi, m->g_n = n;
    int64_t at = hi - lo;
    for (int t = 0; t < m->nparams; t++) {
        pt_param *p = &m->params[t];
        if (extra && extra[t]) p->goff = at, at += p->numel;
        else if (p->offset >= lo && p->offset + p->numel <= hi) p->goff = p->offset - lo;
        else p->goff = -1;
    }
    return PT_OK;
}

void pt_model_use_param_buffer(pt_model *m, float *w)
{
    m->be->copy(w, m->w, sizeof(float) * (size_t)m->numel);
    if (!m->w_external) m->be->free(m->w);
    m->w = w;
    m->w_external = 1;
}

pt_status pt_model_set_precision(pt_model *m, pt_dtype t)
{
    if (t != PT_F32 && t != PT_BF16 && t != PT_F16)
        return PT_ERR(PT_ERR_ARG, "use fp32, bf16 or fp16", "unknown precision %d", (int)t);
    if (t == m->precision) return PT_OK;
    if (m->ninflight)
        return PT_ERR(PT_ERR_ARG, NULL, "pt_model_set_precision: after the in-flight blocks");
    if (t != PT_F32 && (!m->be->lowp_gemm || !m->be->lowp_from_f32 || !m->be->lowp_round))
        return PT_ERR(PT_ERR_ARG, "use --precision fp32 on this backend, or --backend cpu",
                      "--precision %s: the %s backend has no low-precision kernels",
                      pt_precision_name(t), m->be->name);
    m->precision = t;
    /* read once here so that the backward pays one branch per conversion when it is off */
    const char *st = getenv("PT_LOWP_STATS");
    m->lowp_stats = t != PT_F32 && m->be->lowp_flush_count && st && !strcmp(st, "1");
    memset(m->grad16, 0, sizeof m->grad16);
    for (int i = 0; i < m->nnodes; i++) {
        pt_node *n = &m->nodes[i];
        n->lp_row = 0;
        if (t == PT_F32) continue;
        if (n->op == &pt_op_linear) n->lp_row = (int64_t)n->d.linear.P * n->d.linear.Din;
        if (n->op == &pt_op_conv1d_max) n->lp_row = (int64_t)n->d.textcnn.L * n->d.textcnn.E;
    }
    if (m->w16) m->be->free(m->w16), m->w16 = NULL;
    if (t != PT_F32 && m->numel) {
        const size_t bytes = sizeof(uint16_t) * (size_t)m->numel;
        if (!(m->w16 = m->be->alloc(bytes)))
            return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate %zu bytes of %s weights", bytes,
                          pt_precision_name(t));
    }
    PT_TRY(alloc_block(m));
    return pt_model_refresh_lowp(m);
}

pt_status pt_model_count_grad16(pt_model *m, const float *src, const uint16_t *dst16, int64_t n)
{
    if (!m->lowp_stats || n <= 0) return PT_OK;
    int64_t c[3];
    PT_TRY(m->be->lowp_flush_count(m->precision, src, dst16, n, c));
    for (int i = 0; i < 3; i++) m->grad16[i] += c[i];
    return PT_OK;
}

pt_status pt_model_refresh_lowp(pt_model *m)
{
    if (m->precision == PT_F32 || !m->numel) return PT_OK;
    return m->be->lowp_from_f32(m->precision, m->w16, m->w, m->numel);
}

/* Each tensor draws from its own Philox stream (tensor index), element by element at the element's
 * index in the global tensor, so the values depend neither on the rank count, nor on the tp split,
 * nor on any other tensor. */
pt_status pt_model_init(pt_model *m, uint64_t seed)
{
    /* one host staging buffer of the largest tensor, for each parameter in turn (not the whole
     * model: a pipeline stage's peak memory would count it), then for the buffers */
    int64_t most = m->nbuf;
    for (int t = 0; t < m->nparams; t++)
        most = m->params[t].numel > most ? m->params[t].numel : most;
    const size_t bytes = sizeof(float) * (size_t)most;
    float *host = pt_fault_everywhere("model-init-alloc") ? NULL : malloc(bytes ? bytes : 1);
    if (!host)
        return PT_ERR(PT_ERR_NOMEM, "give each rank more memory, or use a smaller model",
                      "pt_model_init: cannot allocate %zu bytes to initialize the parameters of "
                      "'%s'", bytes, m->spec);
    for (int t = 0; t < m->nparams; t++) {
        const pt_param *pp = &m->params[t];
        const uint64_t stream = PT_STREAM_INIT + (uint64_t)t;
        float *dst = host;
        for (int64_t i = 0; i < pp->numel; i++) {
            const uint64_t gi = (uint64_t)pt_param_global_index(pp, i);
            switch ((pt_init_kind)pp->init) {
            case PT_INIT_ZERO: dst[i] = 0.0f; break;
            case PT_INIT_CONST: dst[i] = pp->init_arg; break;
            case PT_INIT_UNIFORM:
                dst[i] = (2.0f * pt_rng_uniform(seed, stream, gi) - 1.0f) * pp->init_arg;
                break;
            case PT_INIT_NORMAL:
                dst[i] = pt_rng_normal(seed, stream, gi) * pp->init_arg;
                break;
            }
        }
        m->be->to_device(m->w + pp->offset, host, sizeof(float) * (size_t)pp->numel);
    }
    for (int b = 0; b < m->nbuffers; b++)
        for (int64_t i = 0; i < m->buffers[b].numel; i++)
            host[m->buffers[b].offset + i] = m->buffers[b].init_arg;
    if (m->nbuf) m->be->to_device(m->buf, host, sizeof(float) * (size_t)m->nbuf);
    free(host);
    return PT_OK;
}

/* ------------------------------------------------------------------ forward / backward */

/* The caller's host batch into the input slot (m->input, or the in-flight block's). */
static void upload_input(pt_model *m, const float *x, int rows)
{
    m->x = x;
    m->be->to_device(m->slots[0].a, x, sizeof(float) * (size_t)rows * (size_t)m->input_size);
}

const float *pt_model_forward(pt_model *m, const float *x, int rows, const pt_fwd_ctx *ctx)
{
    m->status = PT_OK;
    /* evaluation may follow a change of w the trainer did not see (a pipeline's gather) */
    if (!ctx->train) pt_op_check(m, pt_model_refresh_lowp(m));
    upload_input(m, x, rows);
    for (int i = 0; i < m->nnodes; i++) m->nodes[i].op->forward(m, &m->nodes[i], rows, ctx);
    return m->slots[m->nodes[m->nnodes - 1].out].a;
}

/* Lowest flat offset of the parameters a node owns, p[0..np) (numel when none). A node may also
 * use parameters it does not own, after p[np - 1] (a tied output layer uses the embedding). */
static int64_t node_low(const pt_model *m, const pt_node *n)
{
    int64_t lo = m->numel;
    for (int k = 0; k < n->np; k++)
        if (n->p[k] >= 0 && m->params[n->p[k]].offset < lo) lo = m->params[n->p[k]].offset;
    return lo;
}

/* The loss of the last forward (the last node's output) and, when dlogits_scale != 0, its
 * gradient into that slot's g. */
double pt_model_loss(pt_model *m, const int32_t *labels, int rows, float dlogits_scale,
                     int64_t *correct)
{
    const pt_backend *be = m->be;
    pt_slot *out = &m->slots[m->nodes[m->nnodes - 1].out];
    const int T = m->targets;
    const int32_t *y = m->tgt;
    pt_status st = PT_OK;
    if (T > 1) /* language model: predict token t + 1 from tokens <= t (the uploaded input) */
        st = be->lm_targets(m->slots[0].a, rows, T, m->input_size, m->tgt);
    else
        be->to_device(m->tgt, labels, sizeof(int32_t) * (size_t)rows);
    pt_op_check(m, st);
    dlogits_scale *= (float)m->ls.scale; /* loss scaling: 1 unless fp16 (unscaled in backward) */
    if (m->local_classes != m->classes) /* vocabulary-parallel logits: reduce over tp */
        return pt_tp_softmax_xent(m, out->a, y, rows * T, dlogits_scale / (float)T,
                                  dlogits_scale == 0.0f ? NULL : out->g, correct) / T;
    return be->softmax_xent(out->a, y, rows * T, m->classes, dlogits_scale / (float)T,
                            dlogits_scale == 0.0f ? NULL : out->g, correct) / T;
}

/* Loss scaling: gradient elements [off, off + n), final, back to true units, and whether they
 * are finite noted (an fp16 overflow shows as Inf or NaN here). Before any communication sees
 * them, so buckets, ZeRO and pipelines carry unscaled gradients. */
static void unscale_at(pt_model *m, int64_t at, int64_t n)
{
    if (m->ls.mode == PT_LOSS_SCALE_NONE || n <= 0) return;
    pt_op_check(m, m->be->scale(m->g + at, n, (float)(1.0 / m->ls.scale)));
    if (!m->be->all_finite(m->g + at, n)) m->grad_nonfinite = 1;
}

/* Flat elements [off, off + n), as far as g backs them (a pipeline stage's range). */
static void unscale(pt_model *m, int64_t off, int64_t n)
{
    const int64_t lo = off > m->g_lo ? off : m->g_lo;
    const int64_t hi = off + n < m->g_hi ? off + n : m->g_hi;
    unscale_at(m, lo - m->g_lo, hi - lo);
}

/* Backward over [n0, n1), the first writer of each gradient overwriting it. */
static void backward_nodes(pt_model *m, int rows, const pt_fwd_ctx *ctx, int n0, int n1)
{
    memset(m->slot_written, 0, sizeof m->slot_written);
    memset(m->param_written, 0, sizeof m->param_written);
    m->slot_written[m->nodes[n1 - 1].out] = 1;
    /* Parameters are laid out in node order, so when node i is done every parameter from its
     * lowest offset to the end is final (a tied embedding sits at offset 0 and is final last). */
    int64_t ready = m->numel;
    for (int i = n1 - 1; i >= n0; i--) {
        pt_node *n = &m->nodes[i];
        n->op->backward(m, n, rows, ctx);
        int64_t lo = node_low(m, n);
        if (lo < ready) {
            unscale(m, lo, ready - lo);
            if (m->grad_ready) m->grad_ready(m->grad_ready_arg, lo, ready - lo);
            ready = lo;
        }
    }
    /* gradients written below `ready` by nodes that do not own them (a pipeline stage's tied
     * output layer, whose embedding lives on another stage) */
    for (int t = 0; t < m->nparams; t++)
        if (m->param_written[t] && m->params[t].offset < ready)
            unscale_at(m, m->params[t].goff, m->params[t].numel);
}

void pt_model_backward_range(pt_model *m, int rows, const pt_fwd_ctx *ctx, int n0, int n1)
{
    if (!m->accumulate) {
        backward_nodes(m, rows, ctx, n0, n1);
        return;
    }
    /* Accumulate: the ops overwrite some gradients whatever their beta (biases, norms), so the
     * pass runs into a gradient buffer of its own and what it wrote (param_written) is added
     * to m->g. */
    float *g = m->g;
    m->g = m->g_pass;
    backward_nodes(m, rows, ctx, n0, n1);
    m->g = g;
    for (int t = 0; t < m->nparams; t++)
        if (m->param_written[t]) {
            const pt_param *p = &m->params[t];
            m->be->accumulate(g + p->goff, m->g_pass + p->goff, p->numel, 1.0f);
        }
}

double pt_model_loss_backward(pt_model *m, const int32_t *labels, int rows, const pt_fwd_ctx *ctx,
                              float dlogits_scale, int64_t *correct)
{
    const double loss = pt_model_loss(m, labels, rows, dlogits_scale, correct);
    if (dlogits_scale == 0.0f) return loss;
    pt_model_backward_range(m, rows, ctx, 0, m->nnodes);
    return loss;
}

/* ------------------------------------------------------------------ pipeline stages */

void pt_model_forward_range(pt_model *m, const float *x, int rows, const pt_fwd_ctx *ctx, int n0,
                            int n1)
{
    m->status = PT_OK;
    upload_input(m, x, rows); /* into the current block's input: one per micro-batch in flight */
    if (m->ninflight) m->inflight[m->cur_inflight].x = x;
    for (int i = n0; i < n1; i++) m->nodes[i].op->forward(m, &m->nodes[i], rows, ctx);
}

pt_status pt_model_alloc_inflight(pt_model *m, int k, int rows, const unsigned char *nodes)
{
    if (k < 1 || rows < 1 || rows > m->max_batch)
        return PT_ERR(PT_ERR_ARG, NULL, "in-flight activations: %d blocks of %d rows", k, rows);
    m->has_inflight_nodes = nodes != NULL;
    if (nodes) memcpy(m->inflight_nodes, nodes, (size_t)m->nnodes);
    m->inflight = calloc((size_t)k, sizeof *m->inflight);
    if (!m->inflight) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for in-flight activations");
    m->ninflight = k;
    m->inflight[0].block = m->act_block; /* the model's own block (also evaluation's) */
    m->inflight[0].input = m->input;
    const unsigned char *on = m->has_inflight_nodes ? m->inflight_nodes : NULL;
    const size_t bytes = sizeof(float) * (size_t)block_floats(m, rows, on);
    const size_t ibytes = sizeof(float) * (size_t)rows * (size_t)m->input_size + 64;
    for (int i = 1; i < k; i++)
        if (!(m->inflight[i].block = m->be->alloc(bytes ? bytes : 64)) ||
            !(m->inflight[i].input = m->be->alloc(ibytes)))
            return PT_ERR(PT_ERR_NOMEM, "lower --batch or use 1f1b",
                          "cannot allocate %d blocks of %zu bytes of in-flight activations", k,
                          bytes);
    m->inflight_rows = rows;
    m->cur_inflight = 0;
    if (!m->g_pass && !(m->g_pass = m->be->alloc(sizeof(float) * (size_t)(m->g_n ? m->g_n : 1))))
        return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the gradient of one micro-batch");
    return PT_OK;
}

void pt_model_select_inflight(pt_model *m, int k)
{
    if (k == m->cur_inflight || k < 0 || k >= m->ninflight) return;
    /* block 0: the whole model (evaluation runs it too); the others: the stage's nodes */
    if (k == 0) layout_block(m, m->inflight[0].block, m->max_batch, NULL);
    else layout_block(m, m->inflight[k].block, m->inflight_rows,
                      m->has_inflight_nodes ? m->inflight_nodes : NULL);
    m->cur_inflight = k;
    m->x = m->inflight[k].x;
    m->slots[0].a = m->inflight[k].input;
}

int pt_model_cut_slot(const pt_model *m, int c)
{
    if (c <= 0 || c >= m->nnodes) return -1;
    int found = -1, count = 0;
    for (int i = 0; i < c; i++) {
        const int s = m->nodes[i].out;
        int live = 0;
        for (int j = c; j < m->nnodes && !live; j++)
            live = m->nodes[j].in[0] == s || m->nodes[j].in[1] == s;
        if (live && s != found) found = s, count++;
    }
    return count == 1 && found == m->nodes[c - 1].out ? found : -1;
}

double pt_model_node_flops(const pt_model *m, int i)
{
    const pt_node *n = &m->nodes[i];
    const pt_linear_desc *l = &n->d.linear;
    if (n->op == &pt_op_linear) return 2.0 * l->P * (double)l->Din * l->Dout;
    if (n->op == &pt_op_attention) return 4.0 * n->d.attn.T * (double)n->d.attn.T * n->d.attn.D;
    if (n->op == &pt_op_conv2d)
        return 2.0 * n->d.conv2d.Ho * (double)n->d.conv2d.Ho * n->d.conv2d.Cout * n->d.conv2d.k *
               n->d.conv2d.k * n->d.conv2d.Cin;
    return (double)m->slots[n->out].size; /* elementwise */
}

pt_status pt_model_status(const pt_model *m) { return m->status; }

int pt_model_classes(const pt_model *m) { return m->classes; }
int pt_model_local_classes(const pt_model *m) { return m->local_classes; }
int pt_model_tp_size(const pt_model *m) { return m->tp_size; }
int pt_model_tp_rank(const pt_model *m) { return m->tp_rank; }
int pt_model_input_size(const pt_model *m) { return m->input_size; }
int pt_model_targets(const pt_model *m) { return m->targets; }

int pt_model_has_batchnorm(const pt_model *m)
{
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].op == &pt_op_batchnorm) return 1;
    return 0;
}

const pt_param *pt_model_find_param(const pt_model *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

int64_t pt_model_block_bytes(const pt_model *m, int rows)
{
    return (int64_t)sizeof(float) * block_floats(m, rows, NULL);
}
