/* Parameter server: option parsing, server placement and key sharding (paratrain/ps.h). */
#include <stdlib.h>
#include <string.h>

#include "paratrain/ps.h"

pt_status pt_ps_parse_sync(const char *text, pt_ps_sync *kind, int *bound)
{
    *bound = 0;
    if (!text[0] || !strcmp(text, "bsp")) {
        *kind = PT_PS_BSP;
        return PT_OK;
    }
    if (!strcmp(text, "asp")) {
        *kind = PT_PS_ASP;
        return PT_OK;
    }
    if (!strncmp(text, "ssp:", 4)) {
        char *e;
        const long s = strtol(text + 4, &e, 10);
        if (e != text + 4 && !*e && s >= 0 && s <= 1000000) {
            *kind = PT_PS_SSP, *bound = (int)s;
            return PT_OK;
        }
    }
    return PT_ERR(PT_ERR_ARG, "choose bsp, asp or ssp:S (S >= 0, the staleness bound in steps)",
                  "unknown --ps-sync '%s'", text);
}

pt_status pt_ps_parse_placement(const char *text, pt_ps_placement *p)
{
    if (!text[0] || !strcmp(text, "first")) *p = PT_PS_FIRST;
    else if (!strcmp(text, "spread")) *p = PT_PS_SPREAD;
    else return PT_ERR(PT_ERR_ARG, "choose first or spread", "unknown --ps-placement '%s'", text);
    return PT_OK;
}

pt_status pt_ps_parse_transport(const char *text, pt_ps_transport *t)
{
    if (!text[0] || !strcmp(text, "p2p")) *t = PT_PS_P2P;
    else if (!strcmp(text, "rma")) *t = PT_PS_RMA;
    else return PT_ERR(PT_ERR_ARG, "choose p2p or rma", "unknown --ps-transport '%s'", text);
    return PT_OK;
}

int pt_ps_server_rank(int k, int S, int world, pt_ps_placement p)
{
    return p == PT_PS_SPREAD ? (int)((int64_t)k * world / S) : k;
}

/* The tensor boundary (a start or an end) nearest to x; -1 when there is none. */
static int64_t nearest_boundary(const int64_t *off, const int64_t *numel, int n, int64_t x)
{
    int64_t best = -1, bd = 0;
    for (int i = 0; i < n; i++) {
        const int64_t c[2] = {off[i], off[i] + numel[i]};
        for (int j = 0; j < 2; j++) {
            const int64_t d = c[j] > x ? c[j] - x : x - c[j];
            if (best < 0 || d < bd) best = c[j], bd = d;
        }
    }
    return best;
}

pt_status pt_ps_shard_keys(const int64_t *off, const int64_t *numel, int n, int64_t total, int S,
                           int64_t *bounds)
{
    if (S < 1) return PT_ERR(PT_ERR_ARG, NULL, "key sharding over %d servers", S);
    bounds[0] = 0, bounds[S] = total;
    const int64_t half = total / (2 * (int64_t)S); /* half a fair share */
    for (int k = 1; k < S; k++) {
        const int64_t ideal = (int64_t)(((double)k * (double)total) / (double)S + 0.5);
        /* leave at least one element to each range before and after, when there are enough */
        const int64_t lo = total >= S ? bounds[k - 1] + 1 : bounds[k - 1];
        const int64_t hi = total >= S ? total - (S - k) : total;
        int64_t cut = ideal;
        const int64_t b = nearest_boundary(off, numel, n, ideal);
        if (b >= 0 && (b > ideal ? b - ideal : ideal - b) <= half) cut = b;
        if (cut < lo) cut = lo;
        if (cut > hi) cut = hi;
        bounds[k] = cut;
    }
    return PT_OK;
}
