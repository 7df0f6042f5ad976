/* The process grid (design.md #9): the ranks arranged as a Cartesian grid over the axes
 * pipeline (pp), data (dp), expert (ep, size 1 until expert parallelism exists) and tensor (tp).
 * The axis order, outermost first, decides which ranks are neighbours: the default
 * "pp,dp,tp" is Megatron's, tp innermost so a tensor-parallel group is consecutive ranks (one
 * node, its shared-memory path), pp outermost since stages only exchange point-to-point.
 * Each axis has its group (the ranks that differ only in that coordinate) as a pt_comm, so every
 * collective algorithm of src/comm runs on any group. */
#ifndef PARATRAIN_GRID_H
#define PARATRAIN_GRID_H

#include <mpi.h>

#include "paratrain/comm.h"
#include "paratrain/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { PT_AXIS_PP = 0, PT_AXIS_DP, PT_AXIS_EP, PT_AXIS_TP, PT_NAXES } pt_axis;

#define PT_GRID_ORDER_DEFAULT "pp,dp,tp"

typedef struct pt_grid {
    MPI_Comm world; /* the caller's communicator (not owned) */
    int world_rank, world_size;
    MPI_Comm cart;            /* MPI_Cart_create over the axes in `order`, no reordering */
    int size[PT_NAXES];       /* indexed by pt_axis */
    int coord[PT_NAXES];      /* this rank's coordinates */
    int order[PT_NAXES];      /* the axes, outermost first (ep placed just outside tp unless named) */
    char order_text[16];      /* as given, normalized: "pp,dp,tp" */
    MPI_Comm axis_comm[PT_NAXES]; /* MPI_Cart_sub keeping one axis (owned) */
    pt_comm group[PT_NAXES];  /* this rank's group along each axis, on axis_comm */
    pt_comm all;              /* every rank, on cart (world order): collectives over the world */
    int ngroups;              /* of the PT_NAXES + 1 initialized so far (pt_grid_free frees those) */
} pt_grid;

const char *pt_axis_name(pt_axis a);

/* Parses an order string: a permutation of pp, dp and tp (ep optional), comma separated,
 * outermost first. Writes the full order of PT_NAXES axes and its normalized text. Local. */
pt_status pt_grid_parse_order(const char *text, int order[PT_NAXES], char *norm, size_t len);

/* Checks a grid against the world size before anything collective: tp, pp >= 1, world divisible
 * by tp * pp, a valid order. The same answer on every rank (no communication). */
pt_status pt_grid_check(int world_size, int tp, int pp, const char *order);

/* Collective over world: builds the grid (dp = world / (tp * pp)) and one pt_comm per axis
 * group. On failure everything built is freed. */
pt_status pt_grid_create(pt_grid *g, MPI_Comm world, int tp, int pp, const char *order);

/* Collective: frees the groups (pt_comm_free, bounded) and the Cartesian communicators. */
pt_status pt_grid_free(pt_grid *g);

/* World rank of the rank at coordinates coord (indexed by pt_axis): the grid's rank formula,
 * row-major over `order` (tests compare MPI_Cart_rank with it). */
int pt_grid_rank_of(const int size[PT_NAXES], const int order[PT_NAXES], const int coord[PT_NAXES]);

#ifdef __cplusplus
}
#endif
#endif
