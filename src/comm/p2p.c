/* Tagged nonblocking point-to-point (comm.h): what a pipeline stage sends its neighbours. The
 * messages go over the caller's communicator, so they never match paratrain's collectives (on
 * c->coll); the wait is the watchdog's bounded one, so a stage that died is named instead of
 * hanging its neighbours. */
#include <limits.h>

#include "paratrain/comm.h"
#include "paratrain/tensor.h"
#include "paratrain/watchdog.h"

static pt_status post(pt_comm *c, void *buf, int64_t count, pt_dtype dtype, int peer, int tag,
                      pt_p2p_request *r, int send)
{
    const int64_t bytes = count * (int64_t)pt_dtype_size(dtype);
    r->req = MPI_REQUEST_NULL, r->peer = peer, r->comm = c->comm;
    if (bytes < 0 || bytes > INT_MAX)
        return PT_ERR(PT_ERR_ARG, "use smaller micro-batches", "point-to-point message of %lld "
                      "bytes is beyond 2^31", (long long)bytes);
    if (peer < 0 || peer >= c->size || tag < 0)
        return PT_ERR(PT_ERR_ARG, NULL, "point-to-point to rank %d (of %d), tag %d", peer,
                      c->size, tag);
    if (send) {
        PT_MPI_CHECK(MPI_Isend(buf, (int)bytes, MPI_BYTE, peer, tag, c->comm, &r->req));
        c->bytes_sent += (uint64_t)bytes;
    } else {
        PT_MPI_CHECK(MPI_Irecv(buf, (int)bytes, MPI_BYTE, peer, tag, c->comm, &r->req));
        c->bytes_recv += (uint64_t)bytes;
    }
    return PT_OK;
}

pt_status pt_isend(pt_comm *c, const void *buf, int64_t count, pt_dtype dtype, int peer, int tag,
                   pt_p2p_request *r)
{
    return post(c, (void *)buf, count, dtype, peer, tag, r, 1);
}

pt_status pt_irecv(pt_comm *c, void *buf, int64_t count, pt_dtype dtype, int peer, int tag,
                   pt_p2p_request *r)
{
    return post(c, buf, count, dtype, peer, tag, r, 0);
}

pt_status pt_p2p_wait(pt_p2p_request *r, int n, const char *what)
{
    enum { MAXW = 64 };
    for (int i0 = 0; i0 < n; i0 += MAXW) {
        MPI_Request reqs[MAXW];
        int peers[MAXW], k = 0;
        MPI_Comm comm = MPI_COMM_NULL;
        for (int i = i0; i < n && i < i0 + MAXW; i++)
            if (r[i].req != MPI_REQUEST_NULL) {
                reqs[k] = r[i].req, peers[k] = r[i].peer, comm = r[i].comm;
                k++;
            }
        if (!k) continue;
        PT_TRY(pt_wait_bounded(k, reqs, peers, comm, "MPI_Isend/MPI_Irecv", what));
        for (int i = i0; i < n && i < i0 + MAXW; i++) r[i].req = MPI_REQUEST_NULL;
    }
    return PT_OK;
}
