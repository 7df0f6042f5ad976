/* Normalization ops.
 *
 *   batchnorm   in/out (HW x C), ia = {HW, C}; p = {gamma, beta}; b = {running_mean,
 *               running_var}; fa = {momentum, eps}; act NONE or ReLU (fused)
 *     Training normalizes with the batch's statistics over rows*HW values per channel, biased
 *     variance; the running statistics follow PyTorch: r = (1 - momentum) r + momentum s, with the
 *     unbiased variance. With opt.sync_bn the per-channel sums (forward: sum, sum of squares,
 *     count; backward: sum dy, sum dy*xhat) are summed over the data-parallel group through
 *     m->allreduce_sum, so every rank normalizes with the global batch's statistics and the result
 *     equals one rank training the whole batch. Without it each rank uses its own share
 *     (docs/MODELS.md). Evaluation uses the running statistics. Sums are in double.
 *
 *   layernorm   in/out (P x D), ia = {P, D}; p = {gamma, beta}; fa[1] = eps; per position. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

/* sums[c] += f(row r, channel c) over rows [0, N) for two quantities at once, in a fixed block
 * order so a fixed thread count gives the same bits every time. */
#define NB_BLOCKS 64
static void channel_sums(const float *a, const float *b, const float *mean, const float *rstd,
                         int64_t N, int C, int mode, double *s0, double *s1)
{
    double *part = calloc((size_t)NB_BLOCKS * 2 * C, sizeof(double));
    if (!part) return; /* small; cannot realistically fail */
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < NB_BLOCKS; blk++) {
        int64_t r0 = N * blk / NB_BLOCKS, r1 = N * (blk + 1) / NB_BLOCKS;
        double *p0 = part + (int64_t)blk * 2 * C, *p1 = p0 + C;
        for (int64_t r = r0; r < r1; r++) {
            const float *ar = a + r * C;
            if (mode == 0) { /* sum x, sum x^2 */
                for (int c = 0; c < C; c++) p0[c] += ar[c], p1[c] += (double)ar[c] * ar[c];
            } else { /* a = dy, b = x: sum dy, sum dy * xhat */
                const float *br = b + r * C;
                for (int c = 0; c < C; c++)
                    p0[c] += ar[c], p1[c] += (double)ar[c] * ((br[c] - mean[c]) * rstd[c]);
            }
        }
    }
    for (int c = 0; c < C; c++) s0[c] = s1[c] = 0.0;
    for (int blk = 0; blk < NB_BLOCKS; blk++)
        for (int c = 0; c < C; c++) s0[c] += part[(int64_t)blk * 2 * C + c],
                                    s1[c] += part[(int64_t)blk * 2 * C + C + c];
    free(part);
}

static void bn_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int C = n->ia[1];
    const int64_t N = (int64_t)rows * n->ia[0];
    const float *x = pt_in(m, n, 0)->a, *gamma = pt_pw(m, n, 0), *beta = pt_pw(m, n, 1);
    float *y = pt_out(m, n)->a, *mean = n->aux, *rstd = n->aux + C;
    float *rm = m->buf + m->buffers[n->b[0]].offset, *rv = m->buf + m->buffers[n->b[1]].offset;
    const float mom = n->fa[0], eps = n->fa[1];
    if (ctx->train) {
        double *s0 = malloc(sizeof(double) * (2 * (size_t)C + 1)), *s1 = s0 + C;
        if (!s0) return; /* a few hundred bytes */
        channel_sums(x, NULL, NULL, NULL, N, C, 0, s0, s1);
        s0[2 * C] = (double)N;
        if (m->opt.sync_bn && m->allreduce_sum) m->allreduce_sum(m->allreduce_arg, s0, 2 * C + 1);
        const double cnt = s0[2 * C];
        for (int c = 0; c < C; c++) {
            double mu = s0[c] / cnt, var = s1[c] / cnt - mu * mu;
            if (var < 0) var = 0;
            mean[c] = (float)mu;
            rstd[c] = (float)(1.0 / sqrt(var + eps));
            rm[c] = (1.0f - mom) * rm[c] + mom * (float)mu;
            rv[c] = (1.0f - mom) * rv[c] + mom * (float)(cnt > 1 ? var * cnt / (cnt - 1) : var);
        }
        free(s0);
    } else {
        for (int c = 0; c < C; c++) mean[c] = rm[c], rstd[c] = 1.0f / sqrtf(rv[c] + eps);
    }
    const int relu = n->act == PT_ACT_RELU;
#pragma omp parallel for schedule(static) if (N * C >= 16384)
    for (int64_t r = 0; r < N; r++)
        for (int c = 0; c < C; c++) {
            float v = gamma[c] * (x[r * C + c] - mean[c]) * rstd[c] + beta[c];
            y[r * C + c] = relu && v < 0.0f ? 0.0f : v;
        }
}

static void bn_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int C = n->ia[1];
    const int64_t N = (int64_t)rows * n->ia[0];
    pt_slot *in = pt_in(m, n, 0), *out = pt_out(m, n);
    const float *x = in->a, *gamma = pt_pw(m, n, 0), *mean = n->aux, *rstd = n->aux + C;
    float *dy = out->g;
    if (n->act == PT_ACT_RELU) m->be->act_backward(dy, dy, out->a, N * C, PT_ACT_RELU);
    double *s = malloc(sizeof(double) * (2 * (size_t)C + 1)), *s0 = s, *s1 = s + C;
    if (!s) return;
    channel_sums(dy, x, mean, rstd, N, C, 1, s0, s1);
    float *dgamma = pt_pg(m, n, 0), *dbeta = pt_pg(m, n, 1);
    pt_param_beta(m, n, 0), pt_param_beta(m, n, 1);
    for (int c = 0; c < C; c++) dgamma[c] = (float)s1[c], dbeta[c] = (float)s0[c];
    s[2 * C] = (double)N;
    if (m->opt.sync_bn && m->allreduce_sum) m->allreduce_sum(m->allreduce_arg, s, 2 * C + 1);
    const int beta = pt_in_beta(m, n, 0);
    if (beta >= 0) {
        float *dx = in->g, a[C], b[C], k[C];
        const double cnt = s[2 * C];
        for (int c = 0; c < C; c++) {
            k[c] = gamma[c] * rstd[c];
            a[c] = (float)(s0[c] / cnt);
            b[c] = (float)(s1[c] / cnt);
        }
#pragma omp parallel for schedule(static) if (N * C >= 16384)
        for (int64_t r = 0; r < N; r++)
            for (int c = 0; c < C; c++) {
                const float xhat = (x[r * C + c] - mean[c]) * rstd[c];
                const float v = k[c] * (dy[r * C + c] - a[c] - xhat * b[c]);
                dx[r * C + c] = beta ? dx[r * C + c] + v : v;
            }
    }
    free(s);
}

const pt_op pt_op_batchnorm = {"batchnorm", NULL, bn_forward, bn_backward};

/* ------------------------------------------------------------------ layer norm */

static void ln_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int D = n->ia[1];
    const int64_t N = (int64_t)rows * n->ia[0];
    const float *x = pt_in(m, n, 0)->a, *gamma = pt_pw(m, n, 0), *beta = pt_pw(m, n, 1);
    float *y = pt_out(m, n)->a, *stat = n->aux;
    const float eps = n->fa[1];
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) {
        const float *xr = x + r * D;
        float mu = 0.0f, var = 0.0f;
        for (int i = 0; i < D; i++) mu += xr[i];
        mu /= (float)D;
        for (int i = 0; i < D; i++) var += (xr[i] - mu) * (xr[i] - mu);
        const float rs = 1.0f / sqrtf(var / (float)D + eps);
        float *yr = y + r * D;
        for (int i = 0; i < D; i++) yr[i] = (xr[i] - mu) * rs * gamma[i] + beta[i];
        stat[2 * r] = mu, stat[2 * r + 1] = rs;
    }
}

static void ln_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int D = n->ia[1];
    const int64_t N = (int64_t)rows * n->ia[0];
    pt_slot *in = pt_in(m, n, 0);
    const float *x = in->a, *gamma = pt_pw(m, n, 0), *dy = pt_out(m, n)->g, *stat = n->aux;
    float *dgamma = pt_pg(m, n, 0), *dbeta = pt_pg(m, n, 1);
    pt_param_beta(m, n, 0), pt_param_beta(m, n, 1);
    /* parameter gradients: columns split across threads, rows summed in order */
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < D; c0 += 32) {
        const int c1 = c0 + 32 < D ? c0 + 32 : D;
        for (int c = c0; c < c1; c++) dgamma[c] = dbeta[c] = 0.0f;
        for (int64_t r = 0; r < N; r++) {
            const float mu = stat[2 * r], rs = stat[2 * r + 1];
            for (int c = c0; c < c1; c++) {
                dgamma[c] += dy[r * D + c] * (x[r * D + c] - mu) * rs;
                dbeta[c] += dy[r * D + c];
            }
        }
    }
    const int beta = pt_in_beta(m, n, 0);
    if (beta < 0) return;
    float *dx = in->g;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) {
        const float mu = stat[2 * r], rs = stat[2 * r + 1];
        const float *xr = x + r * D, *dyr = dy + r * D;
        float mg = 0.0f, mgx = 0.0f;
        for (int i = 0; i < D; i++) {
            const float g = dyr[i] * gamma[i];
            mg += g, mgx += g * (xr[i] - mu) * rs;
        }
        mg /= (float)D, mgx /= (float)D;
        float *dxr = dx + r * D;
        for (int i = 0; i < D; i++) {
            const float v = rs * (dyr[i] * gamma[i] - mg - (xr[i] - mu) * rs * mgx);
            dxr[i] = beta ? dxr[i] + v : v;
        }
    }
}

const pt_op pt_op_layernorm = {"layernorm", NULL, ln_forward, ln_backward};
