/* Gradient compression in data-parallel training (internal to src/parallel/): the state that
 * lives across steps on each rank, around the compressed collectives of paratrain/compress.h.
 *
 *   --compress topk:D   each rank sends the k = ceil(D n) entries of largest magnitude of its
 *                       accumulated gradient (--sparse-allreduce allgather | sparcml | gtopk)
 *   --compress sign     1 bit per element and one scale per parameter tensor (the mean |value|
 *                       of the tensor), summed over the ranks: EF-SignSGD (Karimireddy et al.,
 *                       ICML 2019) with --error-feedback, scaled signSGD without
 *   --compress signsgd  signSGD with majority vote (Bernstein et al., ICML 2018): the update
 *                       direction is the sign of the sum of the ranks' signs
 *   --compress fp16 | bf16   the dense gradient on a 16-bit wire, accumulated in fp32
 *
 * Error feedback (--error-feedback, topk and sign): what a rank does not send stays in its
 * residual and is added to the next step's gradient: acc = g + residual, residual = acc - sent.
 * The split is exact: each element of acc goes whole either to the message or to the residual
 * (top-k), or residual = acc - scale * sign(acc) is computed once (sign), so sent + residual ==
 * acc holds bit for bit (tests/t_compress_ef.c checks it).
 *
 * Deep Gradient Compression (--dgc, topk only; Lin, Han, Mao, Wang and Dally, ICLR 2018):
 *   momentum correction      the rank keeps the momentum u = m u + g itself and accumulates
 *                            u (not g) into the residual; the optimizer then runs without
 *                            momentum on the summed sparse update
 *   momentum factor masking  u is zeroed where an entry was sent, as the residual is
 *   local gradient clipping  with --clip-norm C, each rank clips its own gradient to C / sqrt(p)
 *                            before accumulating (instead of clipping the global gradient)
 *   density warm-up          --density-warmup-epochs E: epoch e < E uses density
 *                            0.25 (D / 0.25)^(e/E), so E = 4 and D = 0.001 gives DGC's
 *                            25%, 6.3%, 1.6%, 0.4%, then 0.1%
 *
 * The residual and DGC momentum are per rank; checkpoints hold them as /rank_state/
 * compress_residual and /rank_state/dgc_velocity, one row per rank (pt_compressor_states), so a
 * run resumed on the same number of ranks continues bit for bit. On another number of ranks, or
 * from a checkpoint without them, they start from zero (the log says so). */
#ifndef PT_PARALLEL_COMPRESS_H
#define PT_PARALLEL_COMPRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "paratrain/compress.h"
#include "paratrain/model.h"

typedef enum {
    PT_COMPRESS_NONE = 0,
    PT_COMPRESS_TOPK,
    PT_COMPRESS_SIGN,
    PT_COMPRESS_SIGNSGD,
    PT_COMPRESS_FP16,
    PT_COMPRESS_BF16
} pt_compress_kind;

typedef struct {
    pt_compress_kind kind;
    double density;       /* topk: the target density */
    pt_sparse_algo algo;  /* topk: how the sparse vectors are summed */
    double dense_switch;  /* sparcml: density where a vector goes dense (<= 0: default) */
    bool error_feedback;  /* topk, sign */
    bool dgc;             /* topk: momentum correction and masking, local clipping */
    float momentum;       /* dgc: the momentum the ranks apply locally */
    double clip_norm;     /* dgc: global norm target; each rank clips to clip_norm / sqrt(p) */
    double warmup_epochs; /* topk: density warm-up length in epochs (0: none) */
} pt_compress_config;

/* Parses a --compress spec ("none", "topk:0.001", "sign", "signsgd", "fp16", "bf16"). */
pt_status pt_compress_parse(const char *spec, pt_compress_config *cfg);
const char *pt_compress_kind_name(pt_compress_kind kind);

typedef struct {
    pt_compress_config cfg;
    int64_t n;
    int nseg;
    int64_t *seg_off; /* nseg + 1 boundaries: the model's parameter tensors */
    float *residual;  /* error feedback (n) */
    float *velocity;  /* dgc momentum (n) */
    float *acc;       /* the vector being compressed this step (n) */
    float *out;       /* the summed result (n) */
    uint32_t *idx, *gidx; /* top-k: this rank's indices; gtopk: the global survivors (gnnz) */
    int64_t gnnz;
    float *val;
    uint32_t *bits;
    float *scales;
    int64_t k; /* entries this rank selected in the last step (topk; n otherwise) */
} pt_compressor;

pt_status pt_compressor_init(pt_compressor *z, const pt_compress_config *cfg, const pt_model *m);
void pt_compressor_free(pt_compressor *z);

/* The state that spans steps (error-feedback residual, DGC momentum), n floats each: up to max
 * (name, buffer) pairs for the checkpoint; returns how many. */
int pt_compressor_states(pt_compressor *z, const char **names, float **data, int max);
/* Zeroes that state (a resume that cannot restore it). */
void pt_compressor_reset(pt_compressor *z);

/* The density of top-k at (fractional) epoch `epoch`, after the warm-up. */
double pt_compressor_density(const pt_compressor *z, double epoch);

/* Replaces g (this rank's gradient, n elements) with the sum over the ranks of what each sent.
 * Collective over c. */
pt_status pt_compressor_step(pt_compressor *z, pt_comm *c, float *g, double epoch);

#endif
