/* Checkpoints on HDF5 (layout in docs/CHECKPOINT_FORMAT.md):
 *
 *   DIR/step_NNNNNNNN.h5   /params/<layer>/<name>            global shapes, float32
 *                          /optim/<state>/<layer>/<name>     one group per optimizer state
 *                          root attributes: format_version, step, epoch, step_in_epoch, seed,
 *                          model, optimizer, optimizer_steps, config, process_grid, rng, ...
 *                          every dataset carries a `crc32` attribute of its bytes
 *   DIR/latest             one line: the file name of the newest complete checkpoint
 *
 * A save writes DIR/.step_NNNNNNNN.h5.tmp, fsyncs it, renames it into place, fsyncs the directory
 * and only then replaces `latest` the same way: a crash or an error at any point leaves the
 * previous checkpoint and `latest` untouched. */
#ifndef PARATRAIN_CKPT_H
#define PARATRAIN_CKPT_H

#include <mpi.h>
#include <stdint.h>

#include "paratrain/crc.h"
#include "paratrain/data.h"
#include "paratrain/error.h"
#include "paratrain/model.h"
#include "paratrain/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PT_CKPT_FORMAT_VERSION 1

/* Everything besides parameters and optimizer state that a bitwise resume needs. */
typedef struct {
    int64_t step;          /* optimizer updates done */
    int64_t epoch;         /* epoch of the next step */
    int64_t step_in_epoch; /* data position: global batches of `epoch` already consumed */
    uint64_t seed;         /* Philox key: shuffling and dropout are pure functions of it */
    int dp_size;           /* data-parallel ranks that wrote it */
    int tp_size, pp_size;  /* tensor- and pipeline-parallel sizes of the grid that wrote it (1: none) */
    int zero;              /* ZeRO stage it was written with */
    char grid_order[16];   /* the grid's axis order, outermost first ("pp,dp,tp") */
    double es_best;        /* early-stopping state */
    int64_t es_best_step;
    int es_bad_evals;
    char config[8192]; /* the resolved configuration, as "key = value" lines */
} pt_ckpt_meta;

/* Where a rank's tensors sit in the process grid (design.md #9, #14): its data-parallel rank
 * and group size, and its tensor-parallel rank and group size. The ranks of the communicator a
 * save or load runs on are the dp_size x tp_size ranks of each pipeline stage (pp_size of them,
 * told apart by holds). */
typedef struct {
    int dp_rank, dp_size, tp_rank, tp_size;
    /* Pipeline parallelism: holds[i] != 0 when this rank's stage owns parameter tensor i and
     * writes it (with its optimizer state); the ranks of the other stages write nothing of it.
     * NULL: every tensor (no pipeline). Loading ignores it: every rank reads every tensor. */
    const unsigned char *holds;
    int pp_size; /* stages (0 or 1: none): the communicator holds dp x tp ranks of each */
} pt_ckpt_dist;

/* Collective over comm, with parallel HDF5: rank r writes slice r (pt_shard_range) of the flat
 * parameters and of every optimizer state, which under ZeRO-1 is its own shard (opt->offset,
 * opt->n must cover that slice). Every rank returns the same status. `opt` may be NULL.
 * On success *written_path (when non-NULL, PT_PATH_MAX bytes) holds the file written. */
pt_status pt_ckpt_save(MPI_Comm comm, const char *dir, const pt_model *m, const pt_optimizer *opt,
                       const pt_ckpt_meta *meta, char *written_path);

/* State that a bitwise resume needs but that belongs to one rank (gradient compression's
 * error-feedback residual and DGC momentum): stored as /rank_state/<name>, a (writers, n) float32
 * dataset whose row r rank r writes. Host memory, n elements per state. */
#define PT_CKPT_MAX_RANK_STATES 4
typedef struct {
    int count;
    int64_t n;
    const char *name[PT_CKPT_MAX_RANK_STATES];
    float *data[PT_CKPT_MAX_RANK_STATES];
} pt_ckpt_rank_states;

/* pt_ckpt_save, plus the rank states `rs` (NULL or count 0: none). Before writing, rank 0 checks
 * that the checkpoint directory has room for the file (statvfs against the expected size); a
 * full file system (checked, or ENOSPC/EDQUOT while writing) fails the save on every rank with
 * one message, removes the temporary file and leaves the previous checkpoint and `latest` as
 * they were. */
pt_status pt_ckpt_save_ex(MPI_Comm comm, const char *dir, const pt_model *m,
                          const pt_optimizer *opt, const pt_ckpt_meta *meta,
                          const pt_ckpt_rank_states *rs, char *written_path);

/* pt_ckpt_save_ex on a tensor-parallel grid. Every dataset is one global tensor with its global
 * shape (pt_param.gshape) and each rank writes its hyperslab of it, collectively: a tensor split
 * over tp (split_dim, split_blocks: a block-strided hyperslab) by the ranks holding its shards,
 * the dp replicas of a shard each writing slice dp_rank (pt_shard_range of the local flat
 * buffer) of it; a replicated tensor by tp rank 0's dp group alone. Optimizer state: the same
 * slice, which under ZeRO-1 must lie inside [opt->offset, opt->offset + opt->n) of the local
 * buffer. Every dataset's crc32 is the checksum of the whole global tensor in row-major order,
 * whatever the grid. dist NULL: every rank of comm a dp rank, tp = 1 (pt_ckpt_save_ex, whose
 * files are as before tensor parallelism). */
pt_status pt_ckpt_save_dist(MPI_Comm comm, const char *dir, const pt_model *m,
                            const pt_optimizer *opt, const pt_ckpt_meta *meta,
                            const pt_ckpt_rank_states *rs, const pt_ckpt_dist *dist,
                            char *written_path);

/* Reads row `rank of comm` of every state of rs from `path` into rs->data, checking the
 * checksums (combined over the ranks). Collective. *found is 1 when every state was there with
 * one row per rank of comm; 0 when the file has none of them, or was written by another number
 * of ranks: rs->data is then untouched (the caller decides; the trainer starts from zero). */
pt_status pt_ckpt_load_rank_states(MPI_Comm comm, const char *path, pt_ckpt_rank_states *rs,
                                   int *found);

/* Bytes a checkpoint of this model, optimizer and rank states needs on disk (an upper bound:
 * the data plus HDF5's metadata). */
int64_t pt_ckpt_expected_bytes(const pt_model *m, const pt_optimizer *opt,
                               const pt_ckpt_rank_states *rs, int writers);

/* Steps of the complete checkpoints (step_NNNNNNNN.h5) in dir, newest first; *steps is malloc'd
 * (free it). A missing directory gives n = 0. */
pt_status pt_ckpt_list(const char *dir, int64_t **steps, int *n);

/* Resolves "DIR" (a checkpoint directory: its `latest`), "DIR/latest", or a file path. */
pt_status pt_ckpt_resolve(const char *arg, char *path, size_t len);

/* Reads the metadata (model spec into spec, optimizer name into optname). Any rank may call. */
pt_status pt_ckpt_read_meta(const char *path, pt_ckpt_meta *meta, char *spec, size_t spec_len,
                            char *optname, size_t opt_len);

/* Loads parameters into m (and optimizer state into opt when non-NULL), checking the model spec,
 * every shape and every checksum. Every rank reads the parameters whole and its own slice
 * [opt->offset, opt->offset + opt->n) of the optimizer state, whatever the number of ranks that
 * wrote the file: loading reshards. Collective over comm when that slice is partial (ZeRO-1: the
 * slices' checksums are combined); otherwise local, and comm may be MPI_COMM_NULL. */
pt_status pt_ckpt_load(MPI_Comm comm, const char *path, pt_model *m, pt_optimizer *opt,
                       pt_ckpt_meta *meta);

/* pt_ckpt_load on a tensor-parallel grid: each rank reads its local tensors (its tp shard, or
 * all of a replicated tensor) and its slice [opt->offset, opt->offset + opt->n) of its local
 * optimizer state from their global positions, so a checkpoint written on any grid (tp, dp,
 * ZeRO) loads on any other; on the same grid bitwise as it was saved. Shapes are checked against
 * gshape; a shard's checksum is combined over comm from the shards that cover the tensor.
 * Collective over comm when a tensor is split or the optimizer state sharded; otherwise local.
 * dist NULL: tp = 1 (pt_ckpt_load). */
pt_status pt_ckpt_load_dist(MPI_Comm comm, const char *path, pt_model *m, pt_optimizer *opt,
                            pt_ckpt_meta *meta, const pt_ckpt_dist *dist);

/* Reads the metadata and every dataset of a checkpoint and checks every checksum, without a
 * model (what --resume auto uses to choose). Local. */
pt_status pt_ckpt_verify(const char *path, pt_ckpt_meta *meta);

/* The flat-buffer slice of part `part` of `parts`: balanced, starting on 16-element boundaries.
 * ZeRO-1 shards and checkpoint writes use it. */
void pt_shard_range(int64_t n, int parts, int part, int64_t *off, int64_t *count);

/* pt_crc32 (paratrain/crc.h) is the checksum stored with every dataset. */

#ifdef __cplusplus
}
#endif
#endif
