/* The parameter server (issue 15; docs/ARCHITECTURE.md, "Parameter server"): --ps-servers S
 * ranks own contiguous key ranges of the flat parameter vector and run the optimizer on them;
 * the other W = world - S ranks are workers that split the global batch like data-parallel
 * ranks, push gradients to the owners and pull fresh parameters, point-to-point (--ps-transport
 * p2p, the default) or one-sided into the servers' RMA windows (rma), under any --ps-sync. */
#ifndef PARATRAIN_PS_H
#define PARATRAIN_PS_H

#include <stdint.h>

#include "paratrain/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { PT_PS_BSP = 0, PT_PS_ASP, PT_PS_SSP } pt_ps_sync;
typedef enum { PT_PS_FIRST = 0, PT_PS_SPREAD } pt_ps_placement;
typedef enum { PT_PS_P2P = 0, PT_PS_RMA } pt_ps_transport;

/* "bsp" (also ""), "asp", "ssp:S" with a staleness bound S >= 0. Local. */
pt_status pt_ps_parse_sync(const char *text, pt_ps_sync *kind, int *bound);
/* "first" (also "") or "spread". Local. */
pt_status pt_ps_parse_placement(const char *text, pt_ps_placement *p);
/* "p2p" (also "") or "rma". Local. */
pt_status pt_ps_parse_transport(const char *text, pt_ps_transport *t);

/* World rank of server k of S among `world` ranks: first: k; spread: k * world / S (rank 0 is
 * always a server, so it holds authoritative parameters for logging and checkpoint attributes). */
int pt_ps_server_rank(int k, int S, int world, pt_ps_placement p);

/* Key sharding. The flat vector of `total` elements holds `n` tensors at offsets off[i] with
 * numel[i] elements (sorted, non-overlapping, inside [0, total)). Writes S + 1 bounds, server k
 * owning [bounds[k], bounds[k+1]): bounds[0] = 0, bounds[S] = total, non-decreasing. The rule:
 * each cut starts at the balanced point round(k * total / S) (equal bytes: every element is a
 * float) and moves to the nearest tensor boundary when one lies within half a fair share, so a
 * tensor is split only when keeping it whole would unbalance the servers by more than that.
 * Splitting a tensor is still exact because every optimizer the trainer has is elementwise and
 * the gradient norm is summed over the servers; what must stay together (batch-norm running
 * statistics) is not a parameter and is refused in parameter-server mode. A cut never makes a
 * range empty when total >= S. Local; PT_ERR_ARG for S < 1. */
pt_status pt_ps_shard_keys(const int64_t *off, const int64_t *numel, int n, int64_t total, int S,
                           int64_t *bounds);

#ifdef __cplusplus
}
#endif
#endif
