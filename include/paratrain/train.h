/* Training and evaluation (the programs in src/cli/ are thin shells around these).
 *
 * The ranks form a process grid (paratrain/grid.h) of pp x dp x tp. A global batch of `batch`
 * samples is split contiguously over the dp ranks (every rank of a tp group sees the same rows);
 * each dp rank's gradient is its samples' summed gradient divided by the GLOBAL batch, so the sum
 * over dp is the gradient of the global batch whatever the grid. The loop and its step strategies
 * are src/train/ and src/parallel/ (docs/ARCHITECTURE.md). */
#ifndef PARATRAIN_TRAIN_H
#define PARATRAIN_TRAIN_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "paratrain/data.h"
#include "paratrain/error.h"
#include "paratrain/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char data[PT_PATH_MAX];
    char model[256];
    char activation[16];
    double dropout;
    char augment[32]; /* training images: none, flip, crop:P, flip,crop:P */
    char optimizer[16];
    double lr, momentum, weight_decay, beta1, beta2, eps; /* < 0: the optimizer's default */
    char schedule[16];
    int64_t warmup_steps, step_size;
    double gamma, min_lr;
    double clip_norm; /* <= 0: off */
    int64_t batch;    /* global batch */
    int64_t epochs, max_steps;
    int64_t stop_at; /* end this invocation at this step (checkpoint, no final eval); 0: off */
    uint64_t seed;
    int64_t log_every, eval_every, ckpt_every; /* steps; eval_every 0: every epoch */
    int64_t early_stop;                        /* patience in evaluations; 0: off */
    char ckpt_dir[PT_PATH_MAX];
    char resume[PT_PATH_MAX];
    char metrics[PT_PATH_MAX];
    char allreduce[32];
    int64_t tp, pp;      /* tensor- and pipeline-parallel sizes of the grid (dp = ranks / (tp pp)) */
    char grid_order[32]; /* the grid's axes, outermost first: a permutation of pp,dp,tp */
    char pipeline[16];   /* --pp > 1: gpipe, 1f1b or interleaved */
    int64_t micro_batches, virtual_stages; /* micro-batches per step (0: pp); model chunks */
    char pp_split[128];  /* first node of stages 1.. ("7,14"; empty: balanced by FLOPs) */
    char trace[PT_PATH_MAX]; /* --pp > 1: Chrome-trace JSON of a few steps (empty: none) */
    int64_t trace_steps;     /* steps it records (after the first, when there are more) */
    bool recompute;          /* --pp > 1: keep each in-flight micro-batch's stage input only and
                                rerun the stage's forward right before its backward */
    bool sequence_parallel; /* tp > 1: layer norms and dropout split along the sequence */
    int64_t zero;        /* ZeRO stage: 0 (replicated optimizer state), 1 (sharded), -1 auto */
    double bucket_mb;    /* gradient bucket size in MiB (0: one allreduce after backward) */
    bool sync_bn;        /* batch norm over the global batch (synchronized statistics) */
    char conv_algo[16];  /* conv2d: auto (direct kernels where they apply) or im2col */
    bool reproducible;   /* bitwise-identical results for any rank count (exact reduction) */
    int64_t repro_chunk; /* --reproducible: samples per gradient chunk (-1 auto) */
    char compress[32];          /* gradient compression: none, topk:D, sign, signsgd, fp16, bf16 */
    char sparse_allreduce[16];  /* topk: allgather, sparcml or gtopk */
    bool error_feedback;        /* topk, sign: keep what was not sent for the next step */
    bool dgc;                   /* topk: DGC momentum correction/masking and local clipping */
    double density_warmup_epochs; /* topk: DGC's exponential density warm-up (0: off) */
    double sparcml_switch;      /* sparcml: density where a merged vector goes dense */
    char backend[16];
    /* mixed precision (docs/MIXED_PRECISION.md; issue 17) */
    char precision[8];          /* fp32, bf16 or fp16: the dense layers' compute */
    char loss_scale[32];        /* dynamic, none or VALUE ("": dynamic for fp16, else none) */
    int64_t loss_scale_window;  /* dynamic: clean steps before the scale doubles */
    int64_t ps_servers;   /* parameter-server ranks (0: no parameter server) */
    char ps_placement[16]; /* first or spread */
    char ps_sync[32];      /* bsp, asp, ssp:S ("": bsp) */
    char ps_transport[8];  /* p2p (MPI_Isend/Irecv) or rma (MPI_Put/MPI_Get, BSP) */
    int64_t eval_batch;
    bool validate_data;
    bool quiet;
} pt_train_config;

void pt_train_config_defaults(pt_train_config *c);
/* Sets one option by its name ("lr", "model", ...) from text. A number must be all number
 * (no "12abc"), finite, and inside the option's range (--help lists them); else PT_ERR_ARG with
 * one message and the option unchanged. */
pt_status pt_train_config_set(pt_train_config *c, const char *key, const char *value);
/* Checks what the values of single options cannot show: names of optimizers, schedules,
 * algorithms, the model spec's syntax, and combinations of options. Needs no data and no other
 * rank, so every rank decides alike before any work starts. */
pt_status pt_train_config_check(const pt_train_config *c);
/* The ZeRO stage a run uses on a data-parallel group of dp_size ranks: --zero 0 or 1 as given;
 * auto (-1, the default) is 1 when dp_size > 1 and neither --compress nor --ps-servers replaces
 * the allreduce, else 0. */
int pt_train_zero_stage(const pt_train_config *c, int dp_size);
/* --reproducible's chunk: --repro-chunk as given; auto (-1, the default) is the largest chunk
 * that divides batch / p for every p in 1..4 that divides the batch (8 at batch 96, 32 at 128),
 * so runs on any of those rank counts give the same bits. */
int64_t pt_train_repro_chunk(const pt_train_config *c);
/* Reads "key = value" lines ('#' starts a comment). */
pt_status pt_train_config_load(pt_train_config *c, const char *path);
/* Writes every option as "key = value" lines (what a checkpoint stores). */
void pt_train_config_dump(const pt_train_config *c, char *buf, size_t len);
/* Prints the option table (name, value, meaning) for --help. */
void pt_train_config_help(FILE *fp);
bool pt_train_config_has(const char *key);
bool pt_train_config_is_bool(const char *key);

typedef struct {
    double final_val_loss, final_val_accuracy;
    double test_loss, test_accuracy;
    int64_t steps;
    double train_seconds, samples_per_s;
    double phase_seconds[4]; /* rank 0's time in: data reading, forward+backward, allreduce
                                (waiting included), clipping+update */
    char checkpoint[PT_PATH_MAX];
    int preempted; /* stopped by SIGTERM/SIGUSR1 after checkpointing: exit with PT_EXIT_PREEMPTED */
    int stopped_at;      /* ended at --stop-at (checkpoint written, no evaluation: accuracies NaN) */
    int finished_before; /* resumed a run that had done all its steps: nothing trained or written */
} pt_train_result;

/* Exit code of a run stopped by SIGTERM or SIGUSR1 after writing its checkpoint (EX_TEMPFAIL:
 * "temporary failure, try again"): a job script requeues on it and resumes with --resume auto. */
#define PT_EXIT_PREEMPTED 75

/* Trains as configured; collective over comm; every rank returns the same status. */
pt_status pt_train(const pt_train_config *cfg, MPI_Comm comm, pt_train_result *res);

/* Loss and accuracy of model m on a split, each rank taking a contiguous share. Collective. */
pt_status pt_evaluate(pt_model *m, pt_dataset *d, MPI_Comm comm, int64_t batch, double *loss,
                      double *accuracy);

/* Evaluates a checkpoint on a split of cfg->data; model and activation come from the checkpoint. */
pt_status pt_eval_checkpoint(const char *ckpt, const pt_train_config *overrides, const char *split,
                             MPI_Comm comm, double *loss, double *accuracy);

#ifdef __cplusplus
}
#endif
#endif
