/* Gradient compression state across steps: error feedback, DGC, density warm-up (compress.h). */
#include "compress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *kind_names[] = {"none", "topk", "sign", "signsgd", "fp16", "bf16"};

const char *pt_compress_kind_name(pt_compress_kind kind) { return kind_names[kind]; }

pt_status pt_compress_parse(const char *spec, pt_compress_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->error_feedback = true;
    cfg->algo = PT_SPARSE_SPARCML;
    const char *hint = "give none, topk:DENSITY (0 < DENSITY <= 1), sign, signsgd, fp16 or bf16";
    if (!strncmp(spec, "topk:", 5)) {
        char *end = NULL;
        cfg->kind = PT_COMPRESS_TOPK;
        cfg->density = strtod(spec + 5, &end);
        if (end == spec + 5 || *end || !(cfg->density > 0 && cfg->density <= 1))
            return PT_ERR(PT_ERR_ARG, hint, "--compress '%s': the density must be in (0, 1]", spec);
        return PT_OK;
    }
    for (int k = 0; k < (int)(sizeof kind_names / sizeof *kind_names); k++)
        if (k != PT_COMPRESS_TOPK && !strcmp(spec, kind_names[k])) {
            cfg->kind = (pt_compress_kind)k;
            return PT_OK;
        }
    return PT_ERR(PT_ERR_ARG, hint, "unknown --compress '%s'", spec);
}

pt_status pt_compressor_init(pt_compressor *z, const pt_compress_config *cfg, const pt_model *m)
{
    memset(z, 0, sizeof *z);
    z->cfg = *cfg;
    z->n = m->numel;
    if (cfg->dgc && cfg->kind != PT_COMPRESS_TOPK)
        return PT_ERR(PT_ERR_ARG, "use --compress topk:D with --dgc", "--dgc applies to top-k only");
    if (m->numel > UINT32_MAX)
        return PT_ERR(PT_ERR_ARG, "use a smaller model", "compression indexes %lld parameters with "
                      "32 bits", (long long)m->numel);
    const size_t n = (size_t)(z->n ? z->n : 1);
    z->nseg = m->nparams;
    z->seg_off = malloc(sizeof(int64_t) * (size_t)(m->nparams + 1));
    if (!z->seg_off) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for compression");
    for (int i = 0; i < m->nparams; i++) z->seg_off[i] = m->params[i].offset;
    z->seg_off[m->nparams] = m->numel;
    bool bad = false;
    if (cfg->kind == PT_COMPRESS_NONE || cfg->kind == PT_COMPRESS_FP16 || cfg->kind == PT_COMPRESS_BF16)
        return PT_OK;
    z->acc = malloc(sizeof(float) * n), z->out = malloc(sizeof(float) * n);
    bad |= !z->acc || !z->out;
    if (cfg->error_feedback && cfg->kind != PT_COMPRESS_SIGNSGD) {
        z->residual = calloc(n, sizeof(float));
        bad |= !z->residual;
    }
    if (cfg->dgc) {
        z->velocity = calloc(n, sizeof(float));
        bad |= !z->velocity;
    }
    if (cfg->kind == PT_COMPRESS_TOPK) {
        z->idx = malloc(sizeof(uint32_t) * n), z->val = malloc(sizeof(float) * n);
        if (cfg->algo == PT_SPARSE_GTOPK) z->gidx = malloc(sizeof(uint32_t) * n);
        bad |= !z->idx || !z->val || (cfg->algo == PT_SPARSE_GTOPK && !z->gidx);
    } else {
        z->bits = malloc(sizeof(uint32_t) * (size_t)(pt_sign_words(z->n) + 1));
        z->scales = malloc(sizeof(float) * (size_t)(z->nseg + 1));
        bad |= !z->bits || !z->scales;
    }
    if (bad) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for compression buffers (%lld elements)",
                           (long long)z->n);
    return PT_OK;
}

int pt_compressor_states(pt_compressor *z, const char **names, float **data, int max)
{
    int k = 0;
    if (z->residual && k < max) names[k] = "compress_residual", data[k++] = z->residual;
    if (z->velocity && k < max) names[k] = "dgc_velocity", data[k++] = z->velocity;
    return k;
}

void pt_compressor_reset(pt_compressor *z)
{
    const size_t n = (size_t)z->n;
    if (z->residual) memset(z->residual, 0, sizeof(float) * n);
    if (z->velocity) memset(z->velocity, 0, sizeof(float) * n);
}

void pt_compressor_free(pt_compressor *z)
{
    free(z->seg_off), free(z->residual), free(z->velocity), free(z->acc), free(z->out);
    free(z->idx), free(z->gidx), free(z->val), free(z->bits), free(z->scales);
    memset(z, 0, sizeof *z);
}

double pt_compressor_density(const pt_compressor *z, double epoch)
{
    const double d = z->cfg.density, w = z->cfg.warmup_epochs;
    if (!(w > 0) || d >= 0.25 || epoch >= w) return d;
    const double e = floor(epoch); /* one density per epoch, as DGC */
    return 0.25 * pow(d / 0.25, e / w);
}

/* DGC's local clipping: this rank's gradient to norm clip / sqrt(p). */
static void clip_local(float *g, int64_t n, double clip, int p)
{
    double ss = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : ss)
    for (int64_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    const double limit = clip / sqrt((double)p), norm = sqrt(ss);
    if (norm <= limit) return;
    const float s = (float)(limit / (norm + 1e-6));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) g[i] *= s;
}

/* acc = what this step compresses: g (+ the residual), or with DGC the momentum-corrected
 * accumulation residual += (u = m u + g). */
static void accumulate(pt_compressor *z, const float *g)
{
    const int64_t n = z->n;
    float *acc = z->acc, *r = z->residual, *u = z->velocity;
    const float m = z->cfg.momentum;
    if (u) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            u[i] = m * u[i] + g[i];
            acc[i] = (r ? r[i] : 0.0f) + u[i];
        }
    } else if (r) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) acc[i] = g[i] + r[i];
    } else {
        memcpy(acc, g, sizeof(float) * (size_t)n);
    }
}

static pt_status step_topk(pt_compressor *z, pt_comm *c, float *g, double epoch)
{
    const int64_t n = z->n;
    int64_t k = (int64_t)ceil(pt_compressor_density(z, epoch) * (double)n);
    if (k > n) k = n;
    z->k = k;
    accumulate(z, g);
    PT_TRY(pt_topk_select(z->acc, n, k, z->idx, z->val));
    /* the residual keeps the unsent entries whole: acc = sent + residual, bit for bit */
    if (z->residual) {
        memcpy(z->residual, z->acc, sizeof(float) * (size_t)n);
        for (int64_t e = 0; e < k; e++) z->residual[z->idx[e]] = 0.0f;
    }
    int64_t gnnz = -1;
    PT_TRY(pt_sparse_allreduce(c, z->cfg.algo, z->idx, z->val, k, n, k, z->cfg.dense_switch, g,
                               z->cfg.algo == PT_SPARSE_GTOPK ? z->gidx : NULL, &gnnz));
    /* gTop-k: what this rank selected but the global selection dropped was not applied; error
     * feedback takes it back (and DGC keeps its momentum) */
    const bool gtopk = z->cfg.algo == PT_SPARSE_GTOPK && gnnz >= 0;
    z->gnnz = gnnz;
    int64_t j = 0;
    for (int64_t e = 0; e < k; e++) {
        const uint32_t i = z->idx[e];
        bool kept = true;
        if (gtopk) {
            while (j < gnnz && z->gidx[j] < i) j++;
            kept = j < gnnz && z->gidx[j] == i;
        }
        if (!kept && z->residual) z->residual[i] = z->val[e];
        if (kept && z->velocity) z->velocity[i] = 0.0f; /* momentum factor masking */
    }
    return PT_OK;
}

static pt_status step_sign(pt_compressor *z, pt_comm *c, float *g)
{
    const int64_t n = z->n;
    const bool majority = z->cfg.kind == PT_COMPRESS_SIGNSGD;
    accumulate(z, g);
    pt_sign_pack(z->acc, n, z->bits);
    for (int s = 0; s < z->nseg && !majority; s++) {
        const int64_t lo = z->seg_off[s], hi = z->seg_off[s + 1];
        double l1 = 0.0;
        for (int64_t i = lo; i < hi; i++) l1 += fabsf(z->acc[i]);
        const float scale = hi > lo ? (float)(l1 / (double)(hi - lo)) : 0.0f;
        z->scales[s] = scale;
        if (z->residual)
            for (int64_t i = lo; i < hi; i++) {
                const float sent = signbit(z->acc[i]) ? -scale : scale;
                z->residual[i] = z->acc[i] - sent;
            }
    }
    z->k = n;
    return pt_sign_allreduce(c, z->bits, z->scales, n, z->seg_off, z->nseg, majority, g);
}

pt_status pt_compressor_step(pt_compressor *z, pt_comm *c, float *g, double epoch)
{
    pt_status st = PT_OK;
    if (z->cfg.dgc && z->cfg.clip_norm > 0) clip_local(g, z->n, z->cfg.clip_norm, c->size);
    switch (z->cfg.kind) {
    case PT_COMPRESS_TOPK: st = step_topk(z, c, g, epoch); break;
    case PT_COMPRESS_SIGN:
    case PT_COMPRESS_SIGNSGD: st = step_sign(z, c, g); break;
    case PT_COMPRESS_FP16: st = pt_allreduce_lowp(c, g, z->n, PT_F16), z->k = z->n; break;
    case PT_COMPRESS_BF16: st = pt_allreduce_lowp(c, g, z->n, PT_BF16), z->k = z->n; break;
    case PT_COMPRESS_NONE: break;
    }
    return st;
}
