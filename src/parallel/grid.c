/* The process grid: MPI_Cart_create over (pp, dp, ep, tp) in the chosen order, and one pt_comm
 * per axis group from MPI_Cart_sub (grid.h). */
#include <stdio.h>
#include <string.h>

#include "paratrain/grid.h"
#include "paratrain/watchdog.h"

static const char *axis_names[PT_NAXES] = {"pp", "dp", "ep", "tp"};

const char *pt_axis_name(pt_axis a) { return (unsigned)a < PT_NAXES ? axis_names[a] : "?"; }

pt_status pt_grid_parse_order(const char *text, int order[PT_NAXES], char *norm, size_t len)
{
    const char *hint = "give a permutation of pp,dp,tp, outermost first (e.g. pp,dp,tp)";
    int n = 0, seen[PT_NAXES] = {0};
    const char *p = text;
    while (1) {
        const char *comma = strchr(p, ',');
        const size_t tl = comma ? (size_t)(comma - p) : strlen(p);
        int a = -1;
        for (int k = 0; k < PT_NAXES; k++)
            if (tl == 2 && !strncmp(p, axis_names[k], 2)) a = k;
        if (a < 0 || seen[a] || n >= PT_NAXES)
            return PT_ERR(PT_ERR_ARG, hint, "bad --grid-order '%s': %s '%.*s'", text,
                          a >= 0 && seen[a] ? "repeated axis" : "unknown axis", (int)tl, p);
        seen[a] = 1, order[n++] = a;
        if (!comma) break;
        p = comma + 1;
    }
    if (!seen[PT_AXIS_PP] || !seen[PT_AXIS_DP] || !seen[PT_AXIS_TP])
        return PT_ERR(PT_ERR_ARG, hint, "bad --grid-order '%s': it must name pp, dp and tp", text);
    if (!seen[PT_AXIS_EP]) { /* size 1 for now: its place changes no rank; keep it beside tp */
        int t = 0;
        while (order[t] != PT_AXIS_TP) t++;
        memmove(order + t + 1, order + t, sizeof(int) * (size_t)(n - t));
        order[t] = PT_AXIS_EP;
        n++;
    }
    if (norm) {
        size_t off = 0;
        norm[0] = '\0';
        for (int i = 0; i < n && off < len; i++)
            if (order[i] != PT_AXIS_EP || seen[PT_AXIS_EP])
                off += (size_t)snprintf(norm + off, len - off, "%s%s", off ? "," : "",
                                        axis_names[order[i]]);
    }
    return PT_OK;
}

pt_status pt_grid_check(int world_size, int tp, int pp, const char *order)
{
    int ord[PT_NAXES];
    PT_TRY(pt_grid_parse_order(order, ord, NULL, 0));
    if (tp < 1 || pp < 1)
        return PT_ERR(PT_ERR_ARG, NULL, "--tp %d and --pp %d must be at least 1", tp, pp);
    if (world_size % (tp * pp) != 0)
        return PT_ERR(PT_ERR_ARG, "choose --tp and --pp whose product divides the number of ranks",
                      "the process grid needs the number of ranks (%d) divisible by --tp x --pp "
                      "= %d x %d = %d", world_size, tp, pp, tp * pp);
    return PT_OK;
}

int pt_grid_rank_of(const int size[PT_NAXES], const int order[PT_NAXES], const int coord[PT_NAXES])
{
    int r = 0;
    for (int i = 0; i < PT_NAXES; i++) r = r * size[order[i]] + coord[order[i]];
    return r;
}

/* data-parallel group first: it holds the big shared buffers, and is freed first */
static const pt_axis init_order[PT_NAXES] = {PT_AXIS_DP, PT_AXIS_TP, PT_AXIS_PP, PT_AXIS_EP};

/* MPI_Cart_create and MPI_Cart_sub are blocking collectives: the armed watchdog bounds them. */
static pt_status make_communicators(pt_grid *g)
{
    int dims[PT_NAXES], periods[PT_NAXES] = {0}, c[PT_NAXES];
    for (int i = 0; i < PT_NAXES; i++) dims[i] = g->size[g->order[i]];
    /* reorder = 0: grid rank = world rank, so the order string alone decides the layout */
    PT_MPI_CHECK(MPI_Cart_create(g->world, PT_NAXES, dims, periods, 0, &g->cart));
    PT_MPI_CHECK(MPI_Comm_set_errhandler(g->cart, MPI_ERRORS_RETURN));
    PT_MPI_CHECK(MPI_Cart_coords(g->cart, g->world_rank, PT_NAXES, c));
    for (int i = 0; i < PT_NAXES; i++) g->coord[g->order[i]] = c[i];
    for (int a = 0; a < PT_NAXES; a++) {
        int remain[PT_NAXES];
        for (int i = 0; i < PT_NAXES; i++) remain[i] = g->order[i] == a;
        PT_MPI_CHECK(MPI_Cart_sub(g->cart, remain, &g->axis_comm[a]));
    }
    return PT_OK;
}

pt_status pt_grid_create(pt_grid *g, MPI_Comm world, int tp, int pp, const char *order)
{
    memset(g, 0, sizeof *g);
    g->world = world;
    g->cart = MPI_COMM_NULL;
    for (int a = 0; a < PT_NAXES; a++) g->axis_comm[a] = MPI_COMM_NULL;
    PT_MPI_CHECK(MPI_Comm_rank(world, &g->world_rank));
    PT_MPI_CHECK(MPI_Comm_size(world, &g->world_size));
    PT_TRY(pt_grid_check(g->world_size, tp, pp, order));
    PT_TRY(pt_grid_parse_order(order, g->order, g->order_text, sizeof g->order_text));
    g->size[PT_AXIS_TP] = tp, g->size[PT_AXIS_PP] = pp, g->size[PT_AXIS_EP] = 1;
    g->size[PT_AXIS_DP] = g->world_size / (tp * pp);
    if (pt_watchdog_peer_lost())
        return PT_ERR(PT_ERR_MPI, NULL, "pt_grid_create skipped: a peer was lost earlier (%s)",
                      pt_watchdog_message());
    pt_watchdog_arm("MPI_Cart_create/MPI_Cart_sub", "creating the process grid", -1);
    pt_status st = make_communicators(g);
    pt_watchdog_disarm();
    for (int i = 0; st == PT_OK && i <= PT_NAXES; i++) {
        st = i < PT_NAXES ? pt_comm_init(&g->group[init_order[i]], g->axis_comm[init_order[i]])
                          : pt_comm_init(&g->all, g->cart);
        if (st == PT_OK) g->ngroups++;
    }
    if (st != PT_OK && !pt_watchdog_peer_lost()) pt_grid_free(g);
    return st;
}

pt_status pt_grid_free(pt_grid *g)
{
    for (int i = 0; i < g->ngroups; i++) /* a lost peer: the first failure names it, stop there */
        PT_TRY(pt_comm_free(i < PT_NAXES ? &g->group[init_order[i]] : &g->all));
    g->ngroups = 0;
    pt_watchdog_arm("MPI_Comm_free", "the communicators of the process grid", -1);
    for (int a = 0; a < PT_NAXES; a++)
        if (g->axis_comm[a] != MPI_COMM_NULL) MPI_Comm_free(&g->axis_comm[a]);
    if (g->cart != MPI_COMM_NULL) MPI_Comm_free(&g->cart);
    pt_watchdog_disarm();
    return PT_OK;
}
