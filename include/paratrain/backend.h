/* The compute backend: one struct of function pointers, one implementation per device
 * (kernels/cpu: OpenMP + OpenBLAS; kernels/cuda: CUDA + cuBLAS, built with --with-cuda).
 * Today only the MLP's ops (GEMM, fused bias + activation, dropout, softmax cross-entropy,
 * reductions, optimizer updates) are entries; batch and layer norm, embedding, attention,
 * pooling, the convolutions and residual adds still compute on host pointers in src/nn, there is
 * no CUDA implementation and no cross-backend op test yet (issue 14 moves every op here).
 *
 * Conventions: matrices are row-major float32; pointers are device pointers of the backend;
 * scalar results (losses, norms, counts) are returned to the host. */
#ifndef PARATRAIN_BACKEND_H
#define PARATRAIN_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { PT_ACT_NONE = 0, PT_ACT_RELU, PT_ACT_GELU, PT_ACT_TANH } pt_act;

/* Hyper-parameters of one optimizer update; PyTorch's semantics (see src/optim/optim.c). */
typedef struct {
    float lr, momentum, weight_decay, beta1, beta2, eps;
    bool nesterov;
    bool decoupled_wd; /* AdamW */
    int64_t t;         /* 1-based step count, for Adam's bias correction */
} pt_update_params;

typedef struct pt_backend {
    const char *name;

    /* memory */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    void (*zero)(void *p, size_t bytes);
    void (*to_device)(void *dst, const void *host_src, size_t bytes);
    void (*to_host)(void *host_dst, const void *src, size_t bytes);

    /* C = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T; row-major, C is M x N. */
    void (*gemm)(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc);

    /* y[r, :] = act(y[r, :] + bias); pre_act (may be NULL) keeps y + bias before the activation. */
    void (*bias_act_forward)(float *y, float *pre_act, const float *bias, int rows, int cols,
                             pt_act act);
    /* dx = dy * act'(pre_act), elementwise over n; dx may alias dy. */
    void (*act_backward)(float *dx, const float *dy, const float *pre_act, int64_t n, pt_act act);
    /* db[c] = sum over rows of dy[r, c]. */
    void (*bias_backward)(float *db, const float *dy, int rows, int cols);

    /* Inverted dropout, in place: x[i] = keep ? x[i] / (1 - p) : 0, where keep is drawn from
     * Philox(seed, stream, index_base + i). The backward pass is the same call on the gradient
     * (the mask is recomputed, never stored). Rows are `cols` wide; row r has index base
     * (row_offset + r) * cols, so the mask of a sample does not depend on which rank holds it. */
    void (*dropout)(float *x, int rows, int cols, int64_t row_offset, float p, uint64_t seed,
                    uint64_t stream);
    /* The same mask on a block of columns: x holds columns [col_offset, col_offset + cols) of
     * rows that are row_width wide globally, so element (r, c) draws index
     * (row_offset + r) * row_width + col_offset + c. A tensor-parallel rank holding a column
     * slice drops exactly the serial run's elements. col_offset 0, row_width cols: `dropout`. */
    void (*dropout_cols)(float *x, int rows, int cols, int64_t row_offset, int64_t col_offset,
                         int64_t row_width, float p, uint64_t seed, uint64_t stream);

    /* Softmax cross-entropy over rows of logits with integer labels. Returns the summed loss;
     * counts correct argmax predictions into *correct (may be NULL). When dlogits is non-NULL it
     * receives (softmax - onehot) * grad_scale. */
    double (*softmax_xent)(const float *logits, const int32_t *labels, int rows, int cols,
                           float grad_scale, float *dlogits, int64_t *correct);

    /* reductions and elementwise */
    double (*sum_squares)(const float *x, int64_t n);
    void (*scale)(float *x, int64_t n, float alpha);
    bool (*all_finite)(const float *x, int64_t n);

    /* optimizer updates on a flat slice: w, grad, and the optimizer's state slices */
    void (*sgd_update)(float *w, const float *g, float *momentum_buf, int64_t n,
                       const pt_update_params *p);
    void (*adagrad_update)(float *w, const float *g, float *sum_sq, int64_t n,
                           const pt_update_params *p);
    void (*adam_update)(float *w, const float *g, float *m, float *v, int64_t n,
                        const pt_update_params *p);

    /* Optional (may be NULL: the backend is deterministic already). With on, every entry gives
     * the same bits for any thread count (or stream/block configuration); --reproducible sets it.
     * Process-wide, set before training starts. */
    void (*set_deterministic)(bool on);
} pt_backend;

/* The CPU backend (always built). */
const pt_backend *pt_backend_cpu(void);
/* The CUDA backend, or NULL when paratrain was built without --with-cuda or no GPU is present. */
const pt_backend *pt_backend_cuda(void);
/* By name: "cpu" or "cuda". NULL when unavailable. */
const pt_backend *pt_backend_by_name(const char *name);

#ifdef __cplusplus
}
#endif
#endif
