/* The compute backend: one struct of function pointers, one implementation per device
 * (kernels/cpu: OpenMP + OpenBLAS, always built; kernels/cuda: CUDA + cuBLAS, --with-cuda).
 * Every op a model runs is an entry here; src/nn keeps only the graph, the wiring and the model
 * specs, and calls these entries with backend (device) pointers (docs/ARCHITECTURE.md, "The
 * backend", says what a new backend must implement).
 *
 * Conventions
 *  - Matrices are row-major float32; every pointer argument is backend memory (allocated with
 *    `alloc`) unless its comment says host. Activations are channels-last: an image sample is
 *    (H, W, C), a sequence sample (T, D).
 *  - Each op family has one small descriptor struct (its shape and hyper-parameters); a model
 *    node stores the descriptor of its op (pt_node.d), and the entries take it by pointer.
 *  - `beta` on an output gradient: 0 overwrites it, 1 adds into it (a slot or a parameter read by
 *    several nodes collects the sum: graph.h).
 *  - Entries return a status; the asynchronous CUDA backend reports a kernel's failure at the
 *    latest from the next `synchronize`. Entries that return a scalar to the host (losses, norms)
 *    synchronize.
 *  - Workspace: entries that need scratch say how much (a `*_scratch` entry, in floats) and take
 *    it as an argument; no entry allocates per call.
 *  - Entries marked OPTIONAL may be NULL; every other entry must be implemented. */
#ifndef PARATRAIN_BACKEND_H
#define PARATRAIN_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paratrain/error.h"
#include "paratrain/tensor.h" /* pt_dtype */

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

/* ------------------------------------------------------------------ op descriptors */

/* linear: y = x W^T + b over rows * P positions (W is Dout x Din, as nn.Linear). A column-parallel
 * layer holds output columns [col_offset, col_offset + Dout) of a layer global_dout wide (0: Dout),
 * which keys its dropout mask. bias_act (P, Din = Dout = D) uses the same descriptor. */
typedef struct {
    int P, Din, Dout;
    int col_offset, global_dout;
} pt_linear_desc;

/* conv2d, square images: input H x H x Cin, output Ho x Ho x Cout, weight (Cout, k, k, Cin). */
enum { PT_CONV_ALGO_AUTO = 0, PT_CONV_ALGO_IM2COL = 1 };
typedef struct {
    int H, Cin, Cout, k, stride, pad, Ho;
    int algo; /* PT_CONV_ALGO_*: AUTO lets the backend pick its fastest kernel per phase */
} pt_conv2d_desc;

/* max / average pooling, square windows without padding: H x H x C -> Ho x Ho x C. */
typedef struct {
    int H, C, k, stride, Ho;
} pt_pool2d_desc;

/* TextCNN's max over time of one window size: conv is (rows * L) x F (the convolution at every
 * start position, windows crossing a sample boundary included and ignored); per sample and filter
 * the max over the L - k + 1 full windows, + bias, ReLU, into columns [y_col, y_col + F) of y
 * (rows x y_width). */
typedef struct {
    int L, F, k;
    int y_col, y_width;
} pt_maxtime_desc;

/* batch norm over n rows of C channels (n = batch * H * W); layer norm over n rows of D. */
typedef struct {
    int C;
    float momentum, eps;
    pt_act act; /* NONE or RELU (fused) */
} pt_batchnorm_desc;
typedef struct {
    int D;
    float eps;
} pt_layernorm_desc;

/* token (+ position) embedding: tokens are floats, T per sample at row stride `stride`; y is
 * (rows, T, D). Vocabulary-parallel when Vl > 0: this rank holds rows [v0, v0 + Vl) of wte; other
 * tokens give 0 (+ wpe); no_wpe skips the position table (a replicated wpe counted once). */
typedef struct {
    int T, D, V, stride;
    int v0, Vl, no_wpe;
} pt_embedding_desc;

/* causal multi-head self-attention: qkv (T x 3D per sample, [q | k | v], head h in columns
 * h*D/H ..), y (T x D); saves the log-sum-exp of every (head, query) row: rows * H * T floats. */
typedef struct {
    int T, D, H;
} pt_attention_desc;

/* ------------------------------------------------------------------ the interface */

typedef struct pt_backend {
    const char *name;

    /* ---- memory ---- */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    void (*zero)(void *p, size_t bytes);
    void (*to_device)(void *dst, const void *host_src, size_t bytes);
    void (*to_host)(void *host_dst, const void *src, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes); /* device to device */
    /* Waits for every queued entry; returns the first failure since the last call. */
    pt_status (*synchronize)(void);
    /* Host memory for MPI staging (pinned on CUDA). OPTIONAL: NULL means malloc/free. */
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *p);

    /* ---- dense (kernels/cpu/dense_kernels.c) ---- */
    /* C = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T; row-major, C is M x N. */
    pt_status (*gemm)(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                      int lda, const float *b, int ldb, float beta, float *c, int ldc);

    /* ---- low precision (kernels/cpu/dense_kernels.c; --precision bf16|fp16) ---- */
    /* Low-precision matrices are flat uint16 arrays of bf16 or fp16 (t: PT_BF16 or PT_F16).
     * OPTIONAL, all three together: a backend without them runs fp32 only (the model refuses
     * --precision bf16|fp16 on it). */
    /* C = alpha * op(A) * op(B) + beta * C with A, B of dtype t, C fp32, fp32 accumulation;
     * the same row-major convention as gemm. */
    pt_status (*lowp_gemm)(pt_dtype t, bool trans_a, bool trans_b, int m, int n, int k,
                           float alpha, const uint16_t *a, int lda, const uint16_t *b, int ldb,
                           float beta, float *c, int ldc);
    /* dst[i] = t(src[i]), round to nearest even (fp16 overflow: Inf); n elements. */
    pt_status (*lowp_from_f32)(pt_dtype t, uint16_t *dst, const float *src, int64_t n);
    /* dst[i] = float(t(src[i])): src rounded to t and widened back (dst may alias src); conv2d's
     * rounded route (src/nn/ops_conv.c) feeds the fp32 conv2d entries with it. */
    pt_status (*lowp_round)(pt_dtype t, float *dst, const float *src, int64_t n);
    /* OPTIONAL (PT_LOWP_STATS=1, docs/MIXED_PRECISION.md): of n elements converted by
     * lowp_from_f32 (src fp32, dst16 its dtype-t copy), counts[0] = how many src are nonzero,
     * counts[1] = how many of those became +-0 in t, counts[2] = how many became subnormal in t.
     * Overwrites counts; NULL: the model counts nothing. */
    pt_status (*lowp_flush_count)(pt_dtype t, const float *src, const uint16_t *dst16, int64_t n,
                                  int64_t counts[3]);

    /* ---- elementwise (kernels/cpu/elementwise_kernels.c) ---- */
    /* y[r, :] = act(y[r, :] + bias); pre_act (may be NULL) keeps y + bias before the activation. */
    pt_status (*bias_act_forward)(float *y, float *pre_act, const float *bias, int rows, int cols,
                                  pt_act act);
    /* dx = dy * act'(pre_act), elementwise over n; dx may alias dy. For ReLU, pre_act may be the
     * activation's output (positive exactly where the input was). */
    pt_status (*act_backward)(float *dx, const float *dy, const float *pre_act, int64_t n,
                              pt_act act);
    /* db[c] = sum over rows of dy[r, c]. */
    pt_status (*bias_backward)(float *db, const float *dy, int rows, int cols);
    /* y = relu(x), elementwise; y may alias x. */
    pt_status (*relu)(float *y, const float *x, int64_t n);
    /* y = a + b, then ReLU when relu; y may alias a or b. */
    pt_status (*add)(float *y, const float *a, const float *b, int64_t n, bool relu);
    /* dst = src (beta 0) or dst += src (beta 1). */
    pt_status (*accumulate)(float *dst, const float *src, int64_t n, float beta);

    /* Inverted dropout, in place: x[i] = keep ? x[i] / (1 - p) : 0, where keep is drawn from
     * Philox(seed, stream, index_base + i). The backward pass is the same call on the gradient
     * (the mask is recomputed, never stored). Rows are `cols` wide; row r has index base
     * (row_offset + r) * cols, so the mask of a sample does not depend on which rank holds it. */
    pt_status (*dropout)(float *x, int rows, int cols, int64_t row_offset, float p, uint64_t seed,
                         uint64_t stream);
    /* The same mask on a block of columns: x holds columns [col_offset, col_offset + cols) of
     * rows that are row_width wide globally, so element (r, c) draws index
     * (row_offset + r) * row_width + col_offset + c. A tensor-parallel rank holding a column
     * slice drops exactly the serial run's elements. col_offset 0, row_width cols: `dropout`. */
    pt_status (*dropout_cols)(float *x, int rows, int cols, int64_t row_offset, int64_t col_offset,
                              int64_t row_width, float p, uint64_t seed, uint64_t stream);

    /* ---- convolution (kernels/cpu/conv_kernels.c) ---- */
    /* Floats of workspace the three conv2d entries need for `rows` samples. */
    int64_t (*conv2d_scratch)(const pt_conv2d_desc *d, int rows);
    /* y = act(conv(x, w) + bias); bias may be NULL; act NONE or RELU. */
    pt_status (*conv2d_forward)(const pt_conv2d_desc *d, int rows, const float *x, const float *w,
                                const float *bias, pt_act act, float *y, float *scratch);
    /* dw = beta_w dw + dy^T col(x) */
    pt_status (*conv2d_backward_weight)(const pt_conv2d_desc *d, int rows, const float *x,
                                        const float *dy, float beta_w, float *dw, float *scratch);
    /* dx = beta_x dx + col2im(dy w) */
    pt_status (*conv2d_backward_input)(const pt_conv2d_desc *d, int rows, const float *dy,
                                       const float *w, float beta_x, float *dx, float *scratch);
    /* The kernel an AUTO conv2d runs for a phase (0 forward, 1 weight, 2 input): 1 direct (no
     * column matrix), 0 im2col + GEMM. OPTIONAL (NULL: one kernel only). Tests use it. */
    int (*conv2d_uses_direct)(const pt_conv2d_desc *d, int phase);

    /* ---- low-precision convolution (kernels/cpu/conv_lowp.c; --precision bf16|fp16) ---- */
    /* conv2d with the column matrix in 16 bits (dtype t) and its products through a 16-bit
     * GEMM: 16-bit operands, fp32 accumulation, fp32 outputs (x, y, dw, dx, bias are fp32; w16
     * and dy16 are t, in backend memory). OPTIONAL, all four together: a backend without them
     * cannot run conv2d in bf16/fp16 (the model refuses it). d->algo is ignored (one kernel). */
    /* Floats of workspace the three entries need for `rows` samples. */
    int64_t (*conv2d_lowp_scratch)(pt_dtype t, const pt_conv2d_desc *d, int rows);
    /* y = act(conv(t(x), w16) + bias); bias may be NULL; act NONE or RELU. */
    pt_status (*conv2d_lowp_forward)(pt_dtype t, const pt_conv2d_desc *d, int rows,
                                     const float *x, const uint16_t *w16, const float *bias,
                                     pt_act act, float *y, float *scratch);
    /* dw = beta_w dw + dy16^T col(t(x)) */
    pt_status (*conv2d_lowp_backward_weight)(pt_dtype t, const pt_conv2d_desc *d, int rows,
                                             const float *x, const uint16_t *dy16, float beta_w,
                                             float *dw, float *scratch);
    /* dx = beta_x dx + col2im(dy16 w16), the col2im sums in fp32 */
    pt_status (*conv2d_lowp_backward_input)(pt_dtype t, const pt_conv2d_desc *d, int rows,
                                            const uint16_t *dy16, const uint16_t *w16,
                                            float beta_x, float *dx, float *scratch);

    /* ---- pooling (kernels/cpu/pool_kernels.c) ---- */
    /* argmax (rows * Ho * Ho * C int32) keeps each output's winner (first maximum, as PyTorch). */
    pt_status (*maxpool2d_forward)(const pt_pool2d_desc *d, int rows, const float *x, float *y,
                                   int32_t *argmax);
    pt_status (*maxpool2d_backward)(const pt_pool2d_desc *d, int rows, const float *dy,
                                    const int32_t *argmax, float beta, float *dx);
    pt_status (*avgpool2d_forward)(const pt_pool2d_desc *d, int rows, const float *x, float *y);
    pt_status (*avgpool2d_backward)(const pt_pool2d_desc *d, int rows, const float *dy,
                                    float beta, float *dx);
    /* TextCNN (pt_maxtime_desc): forward writes y's columns and the winning start position per
     * (sample, filter) into argmax (rows x F int32). The backward writes dconv (rows*L x F,
     * zero but at each winner: dy there) and db = column sums of dy's slice (overwritten); dy
     * already carries the ReLU's derivative. */
    pt_status (*maxtime_forward)(const pt_maxtime_desc *d, int rows, const float *conv,
                                 const float *bias, float *y, int32_t *argmax);
    pt_status (*maxtime_backward)(const pt_maxtime_desc *d, int rows, const float *dy,
                                  const int32_t *argmax, float *dconv, float *db);

    /* ---- normalization (kernels/cpu/norm_kernels.c) ---- */
    /* Batch norm in training is three steps, so a synchronized batch norm can sum the statistics
     * over the data-parallel group between them (the caller moves `sums` to the host, allreduces
     * and moves them back): stats -> [allreduce] -> forward_apply. sums is 2C + 1 doubles:
     * sum x, sum x^2, then the row count. Scratch: batchnorm_scratch floats. */
    int64_t (*batchnorm_scratch)(const pt_batchnorm_desc *d);
    pt_status (*batchnorm_stats)(const pt_batchnorm_desc *d, int64_t n, const float *x,
                                 double *sums, float *scratch);
    /* train: mean/rstd from sums (biased variance), and running_* updated as PyTorch does
     * (r = (1 - momentum) r + momentum s, unbiased variance); eval (sums NULL): mean/rstd from
     * running_*. Then y = act(gamma (x - mean) rstd + beta). mean, rstd: C floats saved for the
     * backward. */
    pt_status (*batchnorm_forward_apply)(const pt_batchnorm_desc *d, int64_t n, const float *x,
                                         const double *sums, const float *gamma,
                                         const float *beta, float *running_mean,
                                         float *running_var, float *mean, float *rstd, float *y);
    /* backward: sums = (sum dy, sum dy * xhat, n) (2C + 1 doubles), dgamma = sum dy * xhat,
     * dbeta = sum dy (this rank's, overwritten); dy already carries the fused ReLU's derivative.
     * Then [allreduce sums] and backward_apply: dx = beta_x dx + gamma rstd (dy - s0/n - xhat s1/n). */
    pt_status (*batchnorm_backward_stats)(const pt_batchnorm_desc *d, int64_t n, const float *dy,
                                          const float *x, const float *mean, const float *rstd,
                                          double *sums, float *dgamma, float *dbeta,
                                          float *scratch);
    pt_status (*batchnorm_backward_apply)(const pt_batchnorm_desc *d, int64_t n, const float *dy,
                                          const float *x, const float *gamma, const float *mean,
                                          const float *rstd, const double *sums, float beta_x,
                                          float *dx);
    /* layer norm per row; stat keeps (mean, rstd) per row: 2n floats. dgamma, dbeta overwritten;
     * dx = beta_x dx + ..., skipped when dx is NULL. */
    pt_status (*layernorm_forward)(const pt_layernorm_desc *d, int64_t n, const float *x,
                                   const float *gamma, const float *beta, float *y, float *stat);
    pt_status (*layernorm_backward)(const pt_layernorm_desc *d, int64_t n, const float *x,
                                    const float *dy, const float *gamma, const float *stat,
                                    float *dgamma, float *dbeta, float beta_x, float *dx);

    /* ---- embedding and attention (kernels/cpu/attention_kernels.c) ---- */
    /* wpe may be NULL (no position table, or no_wpe). */
    pt_status (*embedding_forward)(const pt_embedding_desc *d, int rows, const float *tokens,
                                   const float *wte, const float *wpe, float *y);
    /* dwte = beta_wte dwte + scatter(dy) (its Vl or V rows); dwpe (may be NULL) = sum over the
     * batch of dy, overwritten. */
    pt_status (*embedding_backward)(const pt_embedding_desc *d, int rows, const float *tokens,
                                    const float *dy, float beta_wte, float *dwte, float *dwpe);
    pt_status (*attention_forward)(const pt_attention_desc *d, int rows, const float *qkv,
                                   float *y, float *lse);
    /* dqkv = beta dqkv + the gradient through q, k and v (recomputing probabilities from lse). */
    pt_status (*attention_backward)(const pt_attention_desc *d, int rows, const float *qkv,
                                    const float *y, const float *dy, const float *lse, float beta,
                                    float *dqkv);

    /* ---- loss (kernels/cpu/loss_kernels.c) ---- */
    /* Softmax cross-entropy over rows of logits with integer labels (backend memory). Returns the
     * summed loss; counts correct argmax predictions into *correct (host, may be NULL). When
     * dlogits is non-NULL it receives (softmax - onehot) * grad_scale. */
    double (*softmax_xent)(const float *logits, const int32_t *labels, int rows, int cols,
                           float grad_scale, float *dlogits, int64_t *correct);
    /* A language model's targets: tgt[r * T + t] = token t + 1 of sample r (tokens are floats,
     * row stride `stride`). */
    pt_status (*lm_targets)(const float *tokens, int rows, int T, int stride, int32_t *tgt);
    /* Vocabulary-parallel cross-entropy (ops_tp.c reduces between the three steps over tp):
     * this rank holds columns [v0, v0 + cols) of every row. stat is 4 doubles per row:
     * [0, rows) max, [rows, 3 rows) (sum of exp(z - max), z[target] - max) pairs,
     * [3 rows, 4 rows) lowest global index of the max (INFINITY when none here).
     *   vp_xent_max:   stat[r] = local max of row r             -> allreduce MAX
     *   vp_xent_sums:  the pairs and the argmax from the max    -> allreduce SUM, MIN
     *   vp_xent_finish: returns the summed loss, *correct (host), dlogits when non-NULL. */
    pt_status (*vp_xent_max)(const float *logits, int rows, int cols, double *stat);
    pt_status (*vp_xent_sums)(const float *logits, const int32_t *labels, int rows, int cols,
                              int64_t v0, double *stat);
    double (*vp_xent_finish)(const float *logits, const int32_t *labels, int rows, int cols,
                             int64_t v0, const double *stat, float grad_scale, float *dlogits,
                             int64_t *correct);

    /* ---- reductions (kernels/cpu/elementwise_kernels.c) ---- */
    double (*sum_squares)(const float *x, int64_t n);
    pt_status (*scale)(float *x, int64_t n, float alpha);
    bool (*all_finite)(const float *x, int64_t n);

    /* ---- optimizer updates on a flat slice (kernels/cpu/optim_kernels.c) ---- */
    pt_status (*sgd_update)(float *w, const float *g, float *momentum_buf, int64_t n,
                            const pt_update_params *p);
    pt_status (*adagrad_update)(float *w, const float *g, float *sum_sq, int64_t n,
                                const pt_update_params *p);
    pt_status (*adam_update)(float *w, const float *g, float *m, float *v, int64_t n,
                             const pt_update_params *p);

    /* OPTIONAL (NULL: the backend is deterministic already). With on, every entry gives the same
     * bits for any thread count (or stream/block configuration); --reproducible sets it.
     * Process-wide, set before training starts. */
    void (*set_deterministic)(bool on);
} pt_backend;

/* The CPU backend (always built). */
const pt_backend *pt_backend_cpu(void);
/* The CUDA backend, or NULL when paratrain was built without --with-cuda or no GPU is present
 * (pt_backend_cuda_why says which, for the message). */
const pt_backend *pt_backend_cuda(void);
const char *pt_backend_cuda_why(void);
/* By name: "cpu" or "cuda". NULL when unavailable. */
const pt_backend *pt_backend_by_name(const char *name);
/* Host memory for staging data between the backend and MPI or files: the backend's host_alloc
 * (pinned on CUDA) where it has one, else malloc; pt_host_free takes NULL. */
void *pt_host_alloc(const pt_backend *be, size_t bytes);
void pt_host_free(const pt_backend *be, void *p);
/* Picks the CUDA device of a rank: its node-local rank modulo the devices present. Before the
 * first CUDA entry; PT_ERR_CUDA with a message when there is no device. */
pt_status pt_backend_cuda_select(int local_rank);

#ifdef __cplusplus
}
#endif
#endif
