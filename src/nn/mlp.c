/* Multi-layer perceptron: dense layers, activation and dropout between them, softmax
 * cross-entropy at the end. Forward and backward side by side.
 *
 *   forward, layer i:   z_i = h_{i-1} W_i^T + b_i      (W_i stored out x in, as nn.Linear)
 *                       h_i = dropout(act(z_i))         (hidden layers only)
 *   backward, layer i:  dW_i = dz_i^T h_{i-1},  db_i = colsum(dz_i)
 *                       dh_{i-1} = dz_i W_i,  dz_{i-1} = dropout(dh_{i-1}) * act'(z_{i-1})
 *
 * The input gradient of the first layer is never formed (the data needs none). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/model.h"
#include "paratrain/rng.h"

static pt_status parse_mlp_spec(pt_model *m, const char *dims_str)
{
    const char *p = dims_str;
    int n = 0;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0 || v > (1 << 24))
            return PT_ERR(PT_ERR_ARG, "write it as mlp:IN-HIDDEN-...-CLASSES, e.g. mlp:784-1024-1024-10",
                          "bad model spec 'mlp:%s': '%s' is not a positive layer width", dims_str, p);
        if (n > PT_MAX_LAYERS)
            return PT_ERR(PT_ERR_ARG, NULL, "bad model spec 'mlp:%s': more than %d layers",
                          dims_str, PT_MAX_LAYERS);
        m->dims[n++] = (int)v;
        if (*end == '-') end++;
        else if (*end != '\0')
            return PT_ERR(PT_ERR_ARG, "separate widths with '-', e.g. mlp:784-1024-10",
                          "bad model spec 'mlp:%s': unexpected '%c'", dims_str, *end);
        p = end;
    }
    if (n < 2)
        return PT_ERR(PT_ERR_ARG, "an MLP needs at least an input and an output width",
                      "bad model spec 'mlp:%s'", dims_str);
    m->nlayers = n - 1;
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
    if (strncmp(spec, "mlp:", 4) != 0)
        return PT_ERR(PT_ERR_ARG, "known models: mlp:IN-HIDDEN-...-CLASSES",
                      "unknown model spec '%s'", spec);
    PT_TRY(parse_mlp_spec(m, spec + 4));

    int64_t off = 0;
    for (int i = 0; i < m->nlayers; i++) {
        pt_param *w = &m->params[m->nparams++], *b = &m->params[m->nparams++];
        snprintf(w->name, sizeof w->name, "fc%d/weight", i + 1);
        w->ndim = 2, w->shape[0] = m->dims[i + 1], w->shape[1] = m->dims[i];
        w->numel = (int64_t)m->dims[i + 1] * m->dims[i], w->offset = off, off += w->numel;
        snprintf(b->name, sizeof b->name, "fc%d/bias", i + 1);
        b->ndim = 1, b->shape[0] = m->dims[i + 1];
        b->numel = m->dims[i + 1], b->offset = off, off += b->numel;
    }
    m->numel = off;

    size_t pbytes = sizeof(float) * (size_t)off;
    m->w = be->alloc(pbytes);
    PT_ALLOC_CHECK(m->w, pbytes);
    m->g = be->alloc(pbytes);
    PT_ALLOC_CHECK(m->g, pbytes);
    be->zero(m->w, pbytes);
    be->zero(m->g, pbytes);

    /* z_i and h_i for every layer output, plus one scratch row block of the widest layer. */
    m->max_batch = max_batch;
    int widest = 0;
    int64_t act = 0;
    for (int i = 0; i <= m->nlayers; i++) widest = m->dims[i] > widest ? m->dims[i] : widest;
    for (int i = 1; i <= m->nlayers; i++) act += 2 * (int64_t)max_batch * m->dims[i];
    act += (int64_t)max_batch * widest;
    size_t abytes = sizeof(float) * (size_t)act;
    m->act_block = be->alloc(abytes);
    PT_ALLOC_CHECK(m->act_block, abytes);
    float *p = m->act_block;
    for (int i = 1; i <= m->nlayers; i++) {
        m->z[i] = p, p += (int64_t)max_batch * m->dims[i];
        m->h[i] = p, p += (int64_t)max_batch * m->dims[i];
    }
    m->scratch = p;
    return PT_OK;
}

void pt_model_destroy(pt_model *m)
{
    if (!m->be) return;
    if (!m->w_external) m->be->free(m->w);
    if (!m->g_external) m->be->free(m->g);
    m->be->free(m->act_block);
    memset(m, 0, sizeof *m);
}

void pt_model_use_grad_buffer(pt_model *m, float *g)
{
    if (!m->g_external) m->be->free(m->g);
    m->g = g;
    m->g_external = 1;
    m->be->zero(m->g, sizeof(float) * (size_t)m->numel);
}

void pt_model_use_param_buffer(pt_model *m, float *w)
{
    memcpy(w, m->w, sizeof(float) * (size_t)m->numel); /* host memory: the CPU backend */
    if (!m->w_external) m->be->free(m->w);
    m->w = w;
    m->w_external = 1;
}

void pt_model_init(pt_model *m, uint64_t seed)
{
    float *host = malloc(sizeof(float) * (size_t)m->numel);
    if (!host) return; /* numel was allocated once already; cannot realistically fail here */
    for (int t = 0; t < m->nparams; t++) {
        const pt_param *pp = &m->params[t];
        /* nn.Linear: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
        int fan_in = m->dims[t / 2];
        float bound = 1.0f / sqrtf((float)fan_in);
        for (int64_t i = 0; i < pp->numel; i++)
            host[pp->offset + i] =
                (2.0f * pt_rng_uniform(seed, PT_STREAM_INIT + (uint64_t)t, (uint64_t)i) - 1.0f) *
                bound;
    }
    m->be->to_device(m->w, host, sizeof(float) * (size_t)m->numel);
    free(host);
}

static inline uint64_t dropout_stream(int64_t step, int layer)
{
    return ((uint64_t)PT_STREAM_DROPOUT << 56) ^ ((uint64_t)step << 8) ^ (uint64_t)layer;
}

const float *pt_model_forward(pt_model *m, const float *x, int rows, const pt_fwd_ctx *ctx)
{
    const pt_backend *be = m->be;
    const float *in = x;
    m->x = x;
    for (int i = 1; i <= m->nlayers; i++) {
        const pt_param *W = &m->params[2 * (i - 1)], *b = &m->params[2 * (i - 1) + 1];
        const int din = m->dims[i - 1], dout = m->dims[i];
        const int last = i == m->nlayers;
        float *out = last ? m->z[i] : m->h[i];
        be->gemm(false, true, rows, dout, din, 1.0f, in, din, m->w + W->offset, din, 0.0f, out,
                 dout);
        if (last) {
            be->bias_act_forward(out, NULL, m->w + b->offset, rows, dout, PT_ACT_NONE);
        } else {
            be->bias_act_forward(out, m->z[i], m->w + b->offset, rows, dout, m->opt.act);
            if (ctx->train && m->opt.dropout > 0.0f)
                be->dropout(out, rows, dout, ctx->row_offset, m->opt.dropout, ctx->seed,
                            dropout_stream(ctx->step, i));
        }
        in = out;
    }
    return m->z[m->nlayers];
}

double pt_model_loss_backward(pt_model *m, const int32_t *labels, int rows, const pt_fwd_ctx *ctx,
                              float dlogits_scale, int64_t *correct)
{
    const pt_backend *be = m->be;
    const int L = m->nlayers;
    if (dlogits_scale == 0.0f)
        return be->softmax_xent(m->z[L], labels, rows, m->dims[L], 0.0f, NULL, correct);

    /* dz_L overwrites the logits, and each dz_{i-1} overwrites the pre-activation z_{i-1} it is
     * computed from: neither is needed again this step. */
    double loss =
        be->softmax_xent(m->z[L], labels, rows, m->dims[L], dlogits_scale, m->z[L], correct);
    for (int i = L; i >= 1; i--) {
        const pt_param *W = &m->params[2 * (i - 1)], *b = &m->params[2 * (i - 1) + 1];
        const int din = m->dims[i - 1], dout = m->dims[i];
        const float *dz = m->z[i];
        const float *in = i > 1 ? m->h[i - 1] : m->x;
        be->gemm(true, false, dout, din, rows, 1.0f, dz, dout, in, din, 0.0f, m->g + W->offset,
                 din);
        be->bias_backward(m->g + b->offset, dz, rows, dout);
        if (m->grad_ready) m->grad_ready(m->grad_ready_arg, W->offset, W->numel + b->numel);
        if (i == 1) break;
        float *dh = m->scratch;
        be->gemm(false, false, rows, din, dout, 1.0f, dz, dout, m->w + W->offset, din, 0.0f, dh,
                 din);
        if (ctx->train && m->opt.dropout > 0.0f)
            be->dropout(dh, rows, din, ctx->row_offset, m->opt.dropout, ctx->seed,
                        dropout_stream(ctx->step, i - 1));
        be->act_backward(m->z[i - 1], dh, m->z[i - 1], (int64_t)rows * din, m->opt.act);
    }
    return loss;
}

int pt_model_classes(const pt_model *m) { return m->dims[m->nlayers]; }
int pt_model_input_size(const pt_model *m) { return m->dims[0]; }

const pt_param *pt_model_find_param(const pt_model *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}
