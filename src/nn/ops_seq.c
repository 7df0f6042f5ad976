/* Sequence ops: token (+ position) embedding and causal multi-head self-attention.
 *
 *   embedding   in: the sample's tokens (stored as floats, row stride ia[3]); out (T x D);
 *               ia = {T, D, V, stride, v0, Vl, no_wpe}; p = {wte (Vl x D), wpe (T x D) or -1}
 *     y[t] = wte[tok[t]] + wpe[t]. The backward scatters into wte by column blocks, so threads
 *     never write the same element and the sum order is fixed. A tied output layer (a linear node
 *     that borrows wte) adds its part of wte's gradient first; the embedding accumulates.
 *     Vocabulary-parallel (Vl > 0): this rank holds rows [v0, v0 + Vl) of wte; other tokens give
 *     0, and a tp_g node sums the ranks' outputs. wpe is replicated, so only the rank with
 *     no_wpe = 0 adds it (the sum counts it once; adding zeros keeps the serial bits); every rank
 *     computes its whole gradient.
 *
 *   attention   in: qkv (T x 3D, per position [q | k | v], head h in columns h*dh..), out (T x D);
 *               ia = {T, D, H}; saves the log-sum-exp of every (head, query) row, H*T floats
 *     o_i = sum_{j<=i} softmax_j(q_i . k_j / sqrt(dh)) v_j, one query row at a time. The backward
 *     recomputes each probability from q, k and the saved log-sum-exp instead of keeping the
 *     T x T matrices (memory O(T) per head, not O(T^2), as FlashAttention does):
 *        p_ij = exp(s_ij - lse_i),  D_i = dO_i . o_i,  ds_ij = p_ij (dO_i . v_j - D_i)
 *        dq_i = sum_j ds_ij k_j / sqrt(dh),  dk_j = sum_i ds_ij q_i / sqrt(dh),  dv_j = sum_i p_ij dO_i
 *     Threads take whole (sample, head) pairs, which write disjoint columns. */
#include <math.h>
#include <string.h>

#include "graph.h"

static inline int token_at(const float *row, int t, int V)
{
    int v = (int)row[t];
    return v < 0 ? 0 : v >= V ? V - 1 : v; /* data is validated on load; never index outside */
}

/* The row of this rank's wte slice holding token t of a sample, or -1 when another rank has it. */
static inline int local_row(const pt_node *n, const float *row, int t)
{
    const int V = n->ia[2], v0 = n->ia[4], Vl = n->ia[5] ? n->ia[5] : V;
    const int v = token_at(row, t, V) - v0;
    return v >= 0 && v < Vl ? v : -1;
}

static void embed_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int T = n->ia[0], D = n->ia[1], stride = n->ia[3];
    const float *x = pt_in(m, n, 0)->a, *wte = pt_pw(m, n, 0);
    const float *wpe = n->p[1] >= 0 && !n->ia[6] ? pt_pw(m, n, 1) : NULL;
    float *y = pt_out(m, n)->a;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < rows; b++)
        for (int t = 0; t < T; t++) {
            const int v = local_row(n, x + (int64_t)b * stride, t);
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
}

static void embed_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int T = n->ia[0], D = n->ia[1], stride = n->ia[3];
    const int Vl = n->ia[5] ? n->ia[5] : n->ia[2];
    const float *x = pt_in(m, n, 0)->a, *dy = pt_out(m, n)->g;
    float *dwte = pt_pg(m, n, 0);
    const float beta = pt_param_beta(m, n, 0);
    if (beta == 0.0f) m->be->zero(dwte, sizeof(float) * (size_t)Vl * D);
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < D; c0 += 16) {
        const int c1 = c0 + 16 < D ? c0 + 16 : D;
        for (int b = 0; b < rows; b++)
            for (int t = 0; t < T; t++) {
                const int v = local_row(n, x + (int64_t)b * stride, t);
                if (v < 0) continue;
                float *d = dwte + (int64_t)v * D;
                const float *g = dy + ((int64_t)b * T + t) * D;
                for (int c = c0; c < c1; c++) d[c] += g[c];
            }
    }
    if (n->p[1] < 0) return;
    float *dwpe = pt_pg(m, n, 1);
    pt_param_beta(m, n, 1);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *d = dwpe + (int64_t)t * D;
        for (int i = 0; i < D; i++) d[i] = 0.0f;
        for (int b = 0; b < rows; b++) {
            const float *g = dy + ((int64_t)b * T + t) * D;
            for (int i = 0; i < D; i++) d[i] += g[i];
        }
    }
}

const pt_op pt_op_embedding = {"embedding", NULL, embed_forward, embed_backward};

static inline float dot(const float *a, const float *b, int n)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void attn_forward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int T = n->ia[0], D = n->ia[1], H = n->ia[2], dh = D / H;
    const float scale = 1.0f / sqrtf((float)dh);
    const float *qkv = pt_in(m, n, 0)->a;
    float *y = pt_out(m, n)->a, *lse = n->aux;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < rows; b++)
        for (int h = 0; h < H; h++) {
            float p[T];
            const float *base = qkv + (int64_t)b * T * 3 * D + h * dh;
            for (int i = 0; i < T; i++) {
                const float *q = base + (int64_t)i * 3 * D;
                float mx = -INFINITY;
                for (int j = 0; j <= i; j++) {
                    p[j] = dot(q, base + (int64_t)j * 3 * D + D, dh) * scale;
                    mx = p[j] > mx ? p[j] : mx;
                }
                float sum = 0.0f;
                for (int j = 0; j <= i; j++) sum += (p[j] = expf(p[j] - mx));
                const float inv = 1.0f / sum;
                float *o = y + ((int64_t)b * T + i) * D + h * dh;
                for (int c = 0; c < dh; c++) o[c] = 0.0f;
                for (int j = 0; j <= i; j++) {
                    const float *v = base + (int64_t)j * 3 * D + 2 * D, w = p[j] * inv;
#pragma omp simd
                    for (int c = 0; c < dh; c++) o[c] += w * v[c];
                }
                lse[((int64_t)b * H + h) * T + i] = mx + logf(sum);
            }
        }
}

static void attn_backward(pt_model *m, pt_node *n, int rows, const pt_fwd_ctx *ctx)
{
    const int T = n->ia[0], D = n->ia[1], H = n->ia[2], dh = D / H;
    const float scale = 1.0f / sqrtf((float)dh);
    pt_slot *in = pt_in(m, n, 0), *out = pt_out(m, n);
    const int beta = pt_in_beta(m, n, 0);
    if (beta < 0) return;
    const float *qkv = in->a, *y = out->a, *dy = out->g, *lse = n->aux;
    float *dqkv = in->g;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < rows; b++)
        for (int h = 0; h < H; h++) {
            const float *base = qkv + (int64_t)b * T * 3 * D + h * dh;
            float *dbase = dqkv + (int64_t)b * T * 3 * D + h * dh;
            if (!beta)
                for (int t = 0; t < T; t++)
                    for (int part = 0; part < 3; part++)
                        memset(dbase + (int64_t)t * 3 * D + part * D, 0, sizeof(float) * (size_t)dh);
            for (int i = 0; i < T; i++) {
                const float *q = base + (int64_t)i * 3 * D;
                const float *dO = dy + ((int64_t)b * T + i) * D + h * dh;
                const float *o = y + ((int64_t)b * T + i) * D + h * dh;
                const float l = lse[((int64_t)b * H + h) * T + i], Di = dot(dO, o, dh);
                float *dq = dbase + (int64_t)i * 3 * D;
                for (int j = 0; j <= i; j++) {
                    const float *k = base + (int64_t)j * 3 * D + D, *v = k + D;
                    const float pj = expf(dot(q, k, dh) * scale - l);
                    const float ds = pj * (dot(dO, v, dh) - Di) * scale;
                    float *dk = dbase + (int64_t)j * 3 * D + D, *dv = dk + D;
#pragma omp simd
                    for (int c = 0; c < dh; c++) {
                        dq[c] += ds * k[c];
                        dk[c] += ds * q[c];
                        dv[c] += pj * dO[c];
                    }
                }
            }
        }
}

const pt_op pt_op_attention = {"attention", NULL, attn_forward, attn_backward};
