/* Pipeline parallelism (docs/ARCHITECTURE.md, "Pipeline parallelism"): the model's node graph
 * cut into pp contiguous stages, one per coordinate of the grid's pp axis, and a schedule that
 * runs the step's micro-batches through them (GPipe, 1F1B). The strategy itself is
 * pt_strategy_pipeline (strategy.h); what is here is the partition, which tests and tools can
 * compute without any communication. */
#ifndef PARATRAIN_PIPELINE_H
#define PARATRAIN_PIPELINE_H

#include "paratrain/error.h"
#include "paratrain/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PT_MAX_STAGES 64

typedef enum { PT_PIPE_GPIPE = 0, PT_PIPE_1F1B, PT_PIPE_INTERLEAVED } pt_pipe_schedule;

/* first[k]: the first node of stage k (first[0] = 0, first[pp] = nnodes); share[k]: its part of
 * the graph's estimated FLOPs. */
typedef struct {
    int pp;
    int first[PT_MAX_STAGES + 1];
    double share[PT_MAX_STAGES];
} pt_pipe_partition;

/* Cuts m's graph into pp stages where exactly one activation crosses (pt_model_cut_slot):
 * balanced by pt_model_node_flops (the largest stage as small as possible), or at the nodes
 * listed in `split` ("7,14": the first node of stages 1.., increasing), when split is non-empty.
 * PT_ERR_ARG with one message when pp exceeds the places the graph can be cut, or a split point
 * is not one. Local and deterministic: every rank computes the same partition. */
pt_status pt_pipe_partition_make(const pt_model *m, int pp, const char *split,
                                 pt_pipe_partition *part);

pt_status pt_pipe_schedule_parse(const char *name, pt_pipe_schedule *s);

#ifdef __cplusplus
}
#endif
#endif
