/* CPU embedding and attention kernels (moved from src/nn/ops_seq.c, same arithmetic).
 *
 * Embedding: y[t] = wte[tok[t]] + wpe[t]. The backward scatters into wte by column blocks, so
 * threads never write the same element and the sum order is fixed.
 *
 * Attention: o_i = sum_{j<=i} softmax_j(q_i . k_j / sqrt(dh)) v_j. The kernels are tiled as
 * FlashAttention's (blocks of queries against blocks of keys, an online softmax, fully masked
 * blocks skipped) and live in elementwise_kernels.c, built per ISA level. The backward recomputes
 * each probability from q, k and the saved log-sum-exp instead of keeping T x T matrices:
 *    p_ij = exp(s_ij - lse_i),  D_i = dO_i . o_i,  ds_ij = p_ij (dO_i . v_j - D_i)
 *    dq_i = sum_j ds_ij k_j / sqrt(dh),  dk_j = sum_i ds_ij q_i / sqrt(dh),  dv_j = sum_i p_ij dO_i */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "cpu_kernels.h"
#include "elementwise_kernels.h"

static inline int token_at(const float *row, int t, int V)
{
    int v = (int)row[t];
    return v < 0 ? 0 : v >= V ? V - 1 : v; /* data is validated on load; never index outside */
}

/* The row of this rank's wte slice holding token t of a sample, or -1 when another rank has it. */
static inline int local_row(const pt_embedding_desc *d, const float *row, int t)
{
    const int Vl = d->Vl ? d->Vl : d->V;
    const int v = token_at(row, t, d->V) - d->v0;
    return v >= 0 && v < Vl ? v : -1;
}

static pt_status cpu_embedding_forward(const pt_embedding_desc *d, int rows, const float *x,
                                       const float *wte, const float *wpe, float *y)
{
    const int T = d->T, D = d->D, stride = d->stride;
    if (d->no_wpe) wpe = NULL;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < rows; b++)
        for (int t = 0; t < T; t++) {
            const int v = local_row(d, x + (int64_t)b * stride, t);
            float *yt = y + ((int64_t)b * T + t) * D;
            if (v < 0) { /* another tp rank's token */
                for (int i = 0; i < D; i++) yt[i] = wpe ? wpe[(int64_t)t * D + i] : 0.0f;
                continue;
            }
            const float *e = wte + (int64_t)v * D;
            if (wpe)
                for (int i = 0; i < D; i++) yt[i] = e[i] + wpe[(int64_t)t * D + i];
            else
                memcpy(yt, e, sizeof(float) * (size_t)D);
        }
    return PT_OK;
}

static pt_status cpu_embedding_backward(const pt_embedding_desc *d, int rows, const float *x,
                                        const float *dy, float beta_wte, float *dwte, float *dwpe)
{
    const int T = d->T, D = d->D, stride = d->stride;
    const int Vl = d->Vl ? d->Vl : d->V;
    if (beta_wte == 0.0f) memset(dwte, 0, sizeof(float) * (size_t)Vl * D);
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < D; c0 += 16) {
        const int c1 = c0 + 16 < D ? c0 + 16 : D;
        for (int b = 0; b < rows; b++)
            for (int t = 0; t < T; t++) {
                const int v = local_row(d, x + (int64_t)b * stride, t);
                if (v < 0) continue;
                float *g = dwte + (int64_t)v * D;
                const float *s = dy + ((int64_t)b * T + t) * D;
                for (int c = c0; c < c1; c++) g[c] += s[c];
            }
    }
    if (!dwpe) return PT_OK;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *g = dwpe + (int64_t)t * D;
        for (int i = 0; i < D; i++) g[i] = 0.0f;
        for (int b = 0; b < rows; b++) {
            const float *s = dy + ((int64_t)b * T + t) * D;
            for (int i = 0; i < D; i++) g[i] += s[i];
        }
    }
    return PT_OK;
}

/* The attention entries run the tiled kernels of elementwise_kernels.c, at the ISA level
 * pt_cpu_ew_kernels_get() chose (they share its vectorized exp). */
static pt_status cpu_attention_forward(const pt_attention_desc *d, int rows, const float *qkv,
                                       float *y, float *lse)
{
    pt_cpu_ew_kernels_get()->attention_forward(d, rows, qkv, y, lse);
    return PT_OK;
}

static pt_status cpu_attention_backward(const pt_attention_desc *d, int rows, const float *qkv,
                                        const float *y, const float *dy, const float *lse,
                                        float beta, float *dqkv)
{
    pt_cpu_ew_kernels_get()->attention_backward(d, rows, qkv, y, dy, lse, beta, dqkv);
    return PT_OK;
}

void pt_cpu_register_attention(pt_backend *be)
{
    be->embedding_forward = cpu_embedding_forward;
    be->embedding_backward = cpu_embedding_backward;
    be->attention_forward = cpu_attention_forward;
    be->attention_backward = cpu_attention_backward;
}
