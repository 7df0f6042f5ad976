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
 *     (docs/MODELS.md). Evaluation uses the running statistics. Sums are in double, in the
 *     model's scratch (sized at model build by bn_scratch): no allocation per call, so nothing
 *     can fail half-way but the allreduce. When that fails the op records the error in
 *     m->status (pt_model_status) and normalizes with this rank's own statistics, so its output
 *     is always written; the caller must not use the step.
 *
 *   layernorm   in/out (P x D), ia = {P, D}; p = {gamma, beta}; fa[1] = eps; per position. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "graph.h"

/* sums[c] += f(row r, channel c) over rows [0, N) for two quantities at once, in a fixed block
 * order so a fixed thread count gives the same bits every time. */
#define NB_BLOCKS 64

/* The op's scratch: per-block partial sums (NB_BLOCKS x 2C), then the 2C + 1 totals (sums and
 * the count), all doubles; in floats, plus one for aligning the doubles. */
static int64_t bn_scratch(const pt_model *m, const pt_node *n, int rows)
{
    const int64_t C = n->ia[1];
    return 2 * ((int64_t)NB_BLOCKS * 2 * C + 2 * C + 1) + 1;
}

static double *bn_part(pt_model *m)
{
    return (double *)(((uintptr_t)m->scratch + 7) & ~(uintptr_t)7);
}

/* `part` holds NB_BLOCKS * 2 * C doubles (bn_part). */
static void channel_sums(const float *a, const float *b, const float *mean, const float *rstd,
                         int64_t N, int C, int mode, double *part, double *s0, double *s1)
{
    memset(part, 0, sizeof(double) * (size_t)NB_BLOCKS * 2 * (size_t)C);
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
}

/* Sums the 2C + 1 totals over the data-parallel group (sync batch norm). On failure records the
 * error and recomputes this rank's own sums (the buffer's contents are undefined after a failed
 * allreduce), so the op still produces a defined output. */
static void sync_sums(pt_model *m, const char *phase, int C, double *s, void (*local)(void *),
                      void *arg)
{
    if (!m->opt.sync_bn || !m->allreduce_sum) return;
    const int rc = m->allreduce_sum(m->allreduce_arg, s, 2 * C + 1);
    if (rc == 0) return;
    if (m->status == PT_OK)
        m->status = PT_ERR(PT_ERR_MPI, "a rank may have died or the network failed; see the "
                                       "other ranks' messages",
                           "synchronized batch norm: the allreduce of the %s channel sums failed "
                           "(error code %d)", phase, rc);
    local(arg);
}

struct fwd_sums {
    const float *x;
    int64_t N;
    int C;
    double *part, *s;
};
static void fwd_local(void *arg)
{
    struct fwd_sums *a = arg;
    channel_sums(a->x, NULL, NULL, NULL, a->N, a->C, 0, a->part, a->s, a->s + a->C);
    a->s[2 * a->C] = (double)a->N;
}

struct bwd_sums {
    const float *dy, *x, *mean, *rstd;
    int64_t N;
    int C;
    double *part, *s;
};
static void bwd_local(void *arg)
{
    struct bwd_sums *a = arg;
    channel_sums(a->dy, a->x, a->mean, a->rstd, a->N, a->C, 1, a->part, a->s, a->s + a->C);
    a->s[2 * a->C] = (double)a->N;
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
        double *part = bn_part(m), *s0 = part + (int64_t)NB_BLOCKS * 2 * C, *s1 = s0 + C;
        struct fwd_sums a = {x, N, C, part, s0};
        fwd_local(&a);
        sync_sums(m, "forward", C, s0, fwd_local, &a);
        const double cnt = s0[2 * C];
        for (int c = 0; c < C; c++) {
            double mu = s0[c] / cnt, var = s1[c] / cnt - mu * mu;
            if (var < 0) var = 0;
            mean[c] = (float)mu;
            rstd[c] = (float)(1.0 / sqrt(var + eps));
            rm[c] = (1.0f - mom) * rm[c] + mom * (float)mu;
            rv[c] = (1.0f - mom) * rv[c] + mom * (float)(cnt > 1 ? var * cnt / (cnt - 1) : var);
        }
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
    double *part = bn_part(m), *s = part + (int64_t)NB_BLOCKS * 2 * C, *s0 = s, *s1 = s + C;
    struct bwd_sums a = {dy, x, mean, rstd, N, C, part, s};
    bwd_local(&a);
    float *dgamma = pt_pg(m, n, 0), *dbeta = pt_pg(m, n, 1);
    pt_param_beta(m, n, 0), pt_param_beta(m, n, 1);
    /* the parameter gradients are this rank's sums: the gradient allreduce adds the ranks' */
    for (int c = 0; c < C; c++) dgamma[c] = (float)s1[c], dbeta[c] = (float)s0[c];
    sync_sums(m, "backward", C, s, bwd_local, &a);
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
}

const pt_op pt_op_batchnorm = {"batchnorm", bn_scratch, bn_forward, bn_backward};

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
