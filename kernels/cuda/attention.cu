/* CUDA token (+ position) embedding and causal multi-head self-attention, the CPU's semantics
 * (src/nn/ops_seq.c). Attention runs one block per (sample, head), one thread per query row (a
 * grid-stride over rows inside the block): the forward passes over the keys twice (max and sum,
 * then the output) instead of holding a row of probabilities; the backward recomputes the
 * probabilities from the saved log-sum-exp, and thread t writes the rows t of dq, dk and dv
 * (dk_t and dv_t sum over the queries i >= t in order, as the CPU), so nothing is shared and no
 * atomics are needed. Fine for correctness and for short contexts; not tuned (no tiling, no
 * shared-memory K/V, O(T^2 dh) per block). The embedding's wte gradient is a scatter made
 * deterministic by giving each thread one column and walking the tokens in order. */
#include <math.h>

#include "cuda_common.h"

static __device__ inline int local_row(const pt_embedding_desc *d, const float *row, int t)
{
    int v = (int)row[t];
    v = v < 0 ? 0 : v >= d->V ? d->V - 1 : v; /* validated on load; never index outside */
    const int Vl = d->Vl ? d->Vl : d->V;
    v -= d->v0;
    return v >= 0 && v < Vl ? v : -1;
}

__global__ void k_embed_fwd(pt_embedding_desc d, int rows, const float *tokens, const float *wte,
                            const float *wpe, float *y)
{
    const int T = d.T, D = d.D;
    GRID_STRIDE(i, (int64_t)rows * T * D)
    {
        const int c = (int)(i % D), t = (int)(i / D % T);
        const int64_t b = i / ((int64_t)T * D);
        const int v = local_row(&d, tokens + b * d.stride, t);
        const float e = v >= 0 ? wte[(int64_t)v * D + c] : 0.0f;
        y[i] = wpe ? e + wpe[(int64_t)t * D + c] : e;
    }
}

static pt_status cuda_embedding_forward(const pt_embedding_desc *d, int rows, const float *tokens,
                                        const float *wte, const float *wpe, float *y)
{
    const int64_t n = (int64_t)rows * d->T * d->D;
    if (n <= 0) return PT_OK;
    k_embed_fwd<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, pt_cuda_stream()>>>(
        *d, rows, tokens, wte, d->no_wpe ? NULL : wpe, y);
    PT_CUDA_LAUNCH_CHECK("embedding_forward");
    return PT_OK;
}

/* one thread per column c: dwte[v][c] (+)= dy over the tokens in (sample, position) order */
__global__ void k_embed_dwte(pt_embedding_desc d, int rows, const float *tokens, const float *dy,
                             float beta, float *dwte)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x, D = d.D, T = d.T;
    if (c >= D) return;
    const int Vl = d.Vl ? d.Vl : d.V;
    if (beta == 0.0f)
        for (int v = 0; v < Vl; v++) dwte[(int64_t)v * D + c] = 0.0f;
    for (int b = 0; b < rows; b++)
        for (int t = 0; t < T; t++) {
            const int v = local_row(&d, tokens + (int64_t)b * d.stride, t);
            if (v >= 0) dwte[(int64_t)v * D + c] += dy[((int64_t)b * T + t) * D + c];
        }
}

__global__ void k_embed_dwpe(pt_embedding_desc d, int rows, const float *dy, float *dwpe)
{
    const int T = d.T, D = d.D;
    GRID_STRIDE(i, (int64_t)T * D)
    {
        float s = 0.0f;
        for (int b = 0; b < rows; b++) s += dy[(int64_t)b * T * D + i];
        dwpe[i] = s;
    }
}

static pt_status cuda_embedding_backward(const pt_embedding_desc *d, int rows, const float *tokens,
                                         const float *dy, float beta_wte, float *dwte, float *dwpe)
{
    cudaStream_t st = pt_cuda_stream();
    if (d->D > 0) {
        k_embed_dwte<<<(d->D + 63) / 64, 64, 0, st>>>(*d, rows, tokens, dy, beta_wte, dwte);
        PT_CUDA_LAUNCH_CHECK("embedding_backward (wte)");
    }
    const int64_t n = (int64_t)d->T * d->D;
    if (dwpe && n > 0) {
        k_embed_dwpe<<<pt_cuda_blocks(n), PT_CUDA_THREADS, 0, st>>>(*d, rows, dy, dwpe);
        PT_CUDA_LAUNCH_CHECK("embedding_backward (wpe)");
    }
    return PT_OK;
}

static __device__ inline float dot(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* block (b, h) = blockIdx.x: threads take query rows i */
__global__ void k_attn_fwd(pt_attention_desc d, const float *qkv, float *y, float *lse)
{
    const int T = d.T, D = d.D, H = d.H, dh = D / H;
    const int b = blockIdx.x / H, h = blockIdx.x % H;
    const float scale = 1.0f / sqrtf((float)dh);
    const float *base = qkv + (int64_t)b * T * 3 * D + h * dh;
    for (int i = threadIdx.x; i < T; i += blockDim.x) {
        const float *q = base + (int64_t)i * 3 * D;
        float mx = -INFINITY;
        for (int j = 0; j <= i; j++)
            mx = fmaxf(mx, dot(q, base + (int64_t)j * 3 * D + D, dh) * scale);
        float sum = 0.0f;
        for (int j = 0; j <= i; j++)
            sum += expf(dot(q, base + (int64_t)j * 3 * D + D, dh) * scale - mx);
        const float inv = 1.0f / sum;
        float *o = y + ((int64_t)b * T + i) * D + h * dh;
        for (int c = 0; c < dh; c++) o[c] = 0.0f;
        for (int j = 0; j <= i; j++) {
            const float *k = base + (int64_t)j * 3 * D + D, *v = k + D;
            const float w = expf(dot(q, k, dh) * scale - mx) * inv;
            for (int c = 0; c < dh; c++) o[c] += w * v[c];
        }
        lse[((int64_t)b * H + h) * T + i] = mx + logf(sum);
    }
}

static pt_status cuda_attention_forward(const pt_attention_desc *d, int rows, const float *qkv,
                                        float *y, float *lse)
{
    if (rows <= 0 || d->T <= 0) return PT_OK;
    const int threads = d->T < 128 ? 32 * ((d->T + 31) / 32) : 128;
    k_attn_fwd<<<rows * d->H, threads, 0, pt_cuda_stream()>>>(*d, qkv, y, lse);
    PT_CUDA_LAUNCH_CHECK("attention_forward");
    return PT_OK;
}

/* dynamic shared memory: T floats of D_i = dO_i . o_i */
__global__ void k_attn_bwd(pt_attention_desc d, const float *qkv, const float *y, const float *dy,
                           const float *lse, float beta, float *dqkv)
{
    extern __shared__ float Dsh[];
    const int T = d.T, D = d.D, H = d.H, dh = D / H;
    const int b = blockIdx.x / H, h = blockIdx.x % H;
    const float scale = 1.0f / sqrtf((float)dh);
    const float *base = qkv + (int64_t)b * T * 3 * D + h * dh;
    const float *dO0 = dy + (int64_t)b * T * D + h * dh, *o0 = y + (int64_t)b * T * D + h * dh;
    const float *l0 = lse + ((int64_t)b * H + h) * T;
    float *dbase = dqkv + (int64_t)b * T * 3 * D + h * dh;
    for (int i = threadIdx.x; i < T; i += blockDim.x)
        Dsh[i] = dot(dO0 + (int64_t)i * D, o0 + (int64_t)i * D, dh);
    __syncthreads();
    for (int t = threadIdx.x; t < T; t += blockDim.x) {
        const float *qt = base + (int64_t)t * 3 * D, *kt = qt + D, *vt = kt + D;
        const float *dOt = dO0 + (int64_t)t * D;
        float *dq = dbase + (int64_t)t * 3 * D, *dk = dq + D, *dv = dk + D;
        if (beta == 0.0f)
            for (int c = 0; c < dh; c++) dq[c] = dk[c] = dv[c] = 0.0f;
        /* dq_t = sum_{j <= t} ds_tj k_j */
        for (int j = 0; j <= t; j++) {
            const float *k = base + (int64_t)j * 3 * D + D, *v = k + D;
            const float p = expf(dot(qt, k, dh) * scale - l0[t]);
            const float ds = p * (dot(dOt, v, dh) - Dsh[t]) * scale;
            for (int c = 0; c < dh; c++) dq[c] += ds * k[c];
        }
        /* dk_t = sum_{i >= t} ds_it q_i, dv_t = sum_{i >= t} p_it dO_i */
        for (int i = t; i < T; i++) {
            const float *q = base + (int64_t)i * 3 * D, *dOi = dO0 + (int64_t)i * D;
            const float p = expf(dot(q, kt, dh) * scale - l0[i]);
            const float ds = p * (dot(dOi, vt, dh) - Dsh[i]) * scale;
            for (int c = 0; c < dh; c++) {
                dk[c] += ds * q[c];
                dv[c] += p * dOi[c];
            }
        }
    }
}

static pt_status cuda_attention_backward(const pt_attention_desc *d, int rows, const float *qkv,
                                         const float *y, const float *dy, const float *lse,
                                         float beta, float *dqkv)
{
    if (rows <= 0 || d->T <= 0) return PT_OK;
    const int threads = d->T < 128 ? 32 * ((d->T + 31) / 32) : 128;
    const size_t shmem = sizeof(float) * (size_t)d->T;
    if (shmem > 48 * 1024)
        return PT_ERR(PT_ERR_ARG, "use a context of at most 12288 tokens with --backend cuda",
                      "attention_backward: context %d needs %zu bytes of shared memory", d->T,
                      shmem);
    k_attn_bwd<<<rows * d->H, threads, shmem, pt_cuda_stream()>>>(*d, qkv, y, dy, lse, beta, dqkv);
    PT_CUDA_LAUNCH_CHECK("attention_backward");
    return PT_OK;
}

void pt_cuda_register_attention(pt_backend *be)
{
    be->embedding_forward = cuda_embedding_forward;
    be->embedding_backward = cuda_embedding_backward;
    be->attention_forward = cuda_attention_forward;
    be->attention_backward = cuda_attention_backward;
}
