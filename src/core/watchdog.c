/* Bounded waits for peers and the armed watchdog thread (include/paratrain/watchdog.h). */
#include "paratrain/watchdog.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double limit_s = -1.0; /* < 0: PT_COLL_TIMEOUT not read yet */
static pt_status limit_status = PT_OK;
static char limit_error[160];
static int lost = 0;
static char lost_msg[1024];
static int abort_code = 0;
static char program[64] = "";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

pt_status pt_watchdog_init(void)
{
    if (limit_s >= 0) return limit_status;
    limit_s = PT_WATCHDOG_DEFAULT_TIMEOUT;
    const char *env = getenv("PT_COLL_TIMEOUT");
    if (env && *env) {
        char *end = NULL;
        errno = 0;
        const double v = strtod(env, &end);
        if (end == env || *end || errno || !isfinite(v) || v < 0) {
            snprintf(limit_error, sizeof limit_error, "PT_COLL_TIMEOUT='%.60s' is not a number of "
                     "seconds >= 0", env);
            limit_status = PT_ERR_ARG;
        } else {
            limit_s = v;
        }
    }
    if (limit_status != PT_OK)
        return PT_ERR(PT_ERR_ARG, "give seconds, e.g. PT_COLL_TIMEOUT=60 (0 turns the watchdog off)",
                      "%s", limit_error);
    return PT_OK;
}

double pt_watchdog_timeout(void)
{
    if (limit_s < 0) {
        pt_status st = pt_watchdog_init();
        (void)st; /* a bad value keeps the default; programs refuse it through pt_watchdog_init */
    }
    return limit_s;
}

void pt_watchdog_set_timeout(double seconds)
{
    limit_s = seconds;
    limit_status = PT_OK;
}

void pt_watchdog_set_abort(const char *prog, int code)
{
    snprintf(program, sizeof program, "%s", prog ? prog : "");
    abort_code = code;
}

int pt_watchdog_peer_lost(void) { return __atomic_load_n(&lost, __ATOMIC_ACQUIRE); }
const char *pt_watchdog_message(void) { return lost_msg; }
void pt_watchdog_forget(void)
{
    __atomic_store_n(&lost, 0, __ATOMIC_RELEASE);
    lost_msg[0] = '\0';
}

/* Cached by the main thread (the thread reports without calling MPI). */
static int cached_rank = -1, cached_size = 0;
static int world_rank(void)
{
    if (cached_rank >= 0) return cached_rank;
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Comm_rank(MPI_COMM_WORLD, &cached_rank), MPI_Comm_size(MPI_COMM_WORLD, &cached_size);
    return cached_rank;
}

/* Rank q of comm as a rank of MPI_COMM_WORLD (q itself when it cannot be translated). */
static int to_world(MPI_Comm comm, int q)
{
    if (comm == MPI_COMM_NULL || comm == MPI_COMM_WORLD) return q;
    MPI_Group g, w;
    int out = MPI_UNDEFINED;
    if (MPI_Comm_group(comm, &g) != MPI_SUCCESS) return q;
    if (MPI_Comm_group(MPI_COMM_WORLD, &w) == MPI_SUCCESS) {
        MPI_Group_translate_ranks(g, 1, &q, w, &out);
        MPI_Group_free(&w);
    }
    MPI_Group_free(&g);
    return out == MPI_UNDEFINED ? q : out;
}

/* "rank 1", "ranks 1, 3", or a phrase for an unknown peer. */
static void name_peers(char *buf, size_t len, MPI_Comm comm, const int *peers, int npeers)
{
    int size = 0, me = -1, shown = 0;
    if (comm != MPI_COMM_NULL) MPI_Comm_size(comm, &size), MPI_Comm_rank(comm, &me);
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < npeers && off < len - 16; i++) {
        if (peers[i] < 0) continue;
        int dup = 0;
        for (int j = 0; j < i; j++) dup |= peers[j] == peers[i];
        if (dup) continue;
        off += (size_t)snprintf(buf + off, len - off, "%s%d", shown ? ", " : "", to_world(comm, peers[i]));
        shown++;
    }
    if (shown) {
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s %s", shown == 1 ? "rank" : "ranks", buf);
        snprintf(buf, len, "%s", tmp);
    } else if (comm == MPI_COMM_NULL) {
        snprintf(buf, len, "a peer (which one is not known here)");
    } else if (size == 2) {
        snprintf(buf, len, "rank %d", to_world(comm, 1 - me));
    } else {
        snprintf(buf, len, "a peer among %d ranks (which one a collective does not tell)", size);
    }
}

pt_status pt_watchdog_fail(const char *file, int line, MPI_Comm comm, const char *op,
                           const char *what, const int *peers, int npeers)
{
    char who[300], msg[sizeof lost_msg - 128]; /* room for " (file:line)" in lost_msg */
    name_peers(who, sizeof who, comm, peers, npeers);
    snprintf(msg, sizeof msg, "rank %d: no progress for %g s in %s (%s), waiting on %s: a peer "
             "stopped or died; PT_COLL_TIMEOUT=SECONDS sets this limit",
             world_rank(), pt_watchdog_timeout(), op, what ? what : "", who);
    if (!pt_watchdog_peer_lost()) { /* the first failure is the cause; later ones follow from it */
        snprintf(lost_msg, sizeof lost_msg, "%s (%s:%d)", msg, file, line);
        __atomic_store_n(&lost, 1, __ATOMIC_RELEASE);
    }
    return pt_error_set(PT_ERR_MPI, file, line, NULL, "%s", msg); /* adds " (file:line)" */
}

/* After a lost peer nothing communicates again (see the header). */
static pt_status refuse(const char *file, int line, const char *op)
{
    return pt_error_set(PT_ERR_MPI, file, line, NULL, "%s skipped: a peer was lost earlier (%s)",
                        op, lost_msg);
}

/* ---------------------------------------------------------------- the armed thread */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static int thread_started = 0;
static int depth = 0;
static struct {
    const char *op, *what, *file;
    int line, peer;
} armed[8];
static double last_progress = 0.0;
static int waits_running = 0; /* bounded waits in progress: they fire themselves */

static void progress(void)
{
    pthread_mutex_lock(&mu);
    last_progress = now();
    pthread_mutex_unlock(&mu);
}

static void *watch(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    for (;;) {
        const double limit = pt_watchdog_timeout();
        if (depth == 0 || limit <= 0) {
            pthread_cond_wait(&cv, &mu);
            continue;
        }
        const double due = last_progress + limit, t = now();
        if (t < due || waits_running > 0) {
            const double until = t < due ? due : t + 0.25;
            struct timespec ts = {.tv_sec = (time_t)until,
                                  .tv_nsec = (long)((until - floor(until)) * 1e9)};
            pthread_cond_timedwait(&cv, &mu, &ts);
            /* Woken long after it was due: this process itself was stopped (SIGSTOP, then
             * SIGCONT from mpirun's kill sequence) or not scheduled; no peer failed it. */
            const double late = now() - until;
            if (late > 2.0) last_progress += late;
            continue;
        }
        const int k = (depth < 8 ? depth : 8) - 1;
        int peer = armed[k].peer;
        if (peer < 0 && cached_size == 2) peer = 1 - cached_rank; /* the only peer there is */
        pt_status st = pt_watchdog_fail(armed[k].file, armed[k].line, MPI_COMM_NULL, armed[k].op,
                                        armed[k].what, &peer, 1);
        (void)st;
        pthread_mutex_unlock(&mu);
        fprintf(stderr, "%s%s%s\n", program, program[0] ? ": error: " : "", lost_msg);
        fflush(stderr);
        if (abort_code) {
            /* The launcher forwards a rank's output asynchronously: aborting at once lost the
             * message above now and then under MPICH's Hydra (the exit code stayed 69). A
             * fifth of a second lets it through; a run that is stuck anyway loses nothing. */
            usleep(200000);
            /* Inside MPI_Finalize the library may have freed MPI_COMM_WORLD already: MPICH 4.0
             * has, and its MPI_Abort then fails ("Invalid communicator") and ends this process
             * with the low byte of its error class (exit 5 under Hydra, not 69). A non-zero exit
             * before MPI_Finalize returns makes either launcher (Open MPI's mpirun, Hydra) kill
             * every other rank, a stopped one too, and report this exit code. */
            if (!(armed[k].op && strcmp(armed[k].op, "MPI_Finalize") == 0))
                MPI_Abort(MPI_COMM_WORLD, abort_code); /* ends every rank (a stopped one too) */
            _exit(abort_code);
        }
        /* print only: the call stays blocked, as without a watchdog */
        pthread_mutex_lock(&mu);
        while (depth > 0) pthread_cond_wait(&cv, &mu);
    }
    return NULL;
}

void pt_watchdog_arm_at(const char *file, int line, const char *op, const char *what, int peer)
{
    if (pt_watchdog_timeout() <= 0) return;
    (void)world_rank();
    pthread_mutex_lock(&mu);
    if (!thread_started) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&cv, &ca);
        pthread_condattr_destroy(&ca);
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        /* the thread must not take MPI's signals or the trainer's SIGTERM handling away */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        thread_started = pthread_create(&th, &at, watch, NULL) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&at);
    }
    if (depth < 8) armed[depth].op = op, armed[depth].what = what, armed[depth].file = file,
                   armed[depth].line = line, armed[depth].peer = peer;
    if (depth++ == 0) last_progress = now();
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

void pt_watchdog_disarm(void)
{
    if (pt_watchdog_timeout() <= 0) return;
    pthread_mutex_lock(&mu);
    if (depth > 0) depth--;
    last_progress = now(); /* the call returned: progress */
    if (thread_started) pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

/* ---------------------------------------------------------------- bounded waits */

pt_status pt_wait_bounded_at(const char *file, int line, int n, MPI_Request *reqs, const int *peers,
                             MPI_Comm comm, const char *op, const char *what)
{
    if (n <= 0) return PT_OK;
    if (pt_watchdog_peer_lost()) return refuse(file, line, op); /* the requests stay pending */
    const double limit = pt_watchdog_timeout();
    if (limit <= 0) {
        int rc = MPI_Waitall(n, reqs, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS)
            return pt_error_set(PT_ERR_MPI, file, line, NULL, "MPI_Waitall in %s (%s) failed (%d)",
                                op, what, rc);
        return PT_OK;
    }
    pthread_mutex_lock(&mu);
    waits_running++;
    pthread_mutex_unlock(&mu);
    pt_status st = PT_OK;
    double last = now(), polled = last;
    for (;;) {
        int pending = 0, moved = 0;
        for (int i = 0; i < n; i++) {
            if (reqs[i] == MPI_REQUEST_NULL) continue;
            int flag = 0, rc = MPI_Test(&reqs[i], &flag, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS) {
                char es[MPI_MAX_ERROR_STRING];
                int len = 0;
                MPI_Error_string(rc, es, &len);
                st = pt_error_set(PT_ERR_MPI, file, line,
                                  "check that all ranks were launched by the same mpirun",
                                  "%s (%s) failed: %s", op, what, es);
                goto out;
            }
            if (flag) moved = 1;
            else pending++;
        }
        if (!pending) break;
        const double t = now();
        if (t - polled > 1.0) last += t - polled; /* this process was stopped, not its peers */
        polled = t;
        if (moved) {
            last = t;
            progress();
        } else if (t - last >= limit) {
            int *who = malloc(sizeof(int) * (size_t)n), k = 0;
            for (int i = 0; who && i < n; i++)
                if (reqs[i] != MPI_REQUEST_NULL) who[k++] = peers ? peers[i] : -1;
            st = pt_watchdog_fail(file, line, comm, op, what, who, k);
            free(who);
            goto out;
        }
    }
    progress();
out:
    pthread_mutex_lock(&mu);
    waits_running--;
    pthread_mutex_unlock(&mu);
    return st;
}

static int type_bytes(MPI_Datatype t, int count, size_t *bytes)
{
    int ts = 0;
    if (MPI_Type_size(t, &ts) != MPI_SUCCESS || count < 0) return 0;
    *bytes = (size_t)ts * (size_t)count;
    return 1;
}

#define POST(call, op)                                                                             \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != MPI_SUCCESS) {                                                                  \
            char es_[MPI_MAX_ERROR_STRING];                                                        \
            int len_ = 0;                                                                          \
            MPI_Error_string(rc_, es_, &len_);                                                     \
            (void)tmp; /* kept: earlier requests of the call may point into it */                 \
            return pt_error_set(PT_ERR_MPI, file, line,                                            \
                                "check that all ranks were launched by the same mpirun",           \
                                "%s (%s) failed: %s", op, what, es_);                              \
        }                                                                                          \
    } while (0)

/* On success the staging copy is freed; on failure it is left to the pending request. */
#define STAGE(bytes)                                                                               \
    const size_t stage_ = (bytes);                                                                 \
    char *tmp = malloc(stage_ ? stage_ : 1);                                                       \
    if (!tmp)                                                                                      \
    return pt_error_set(PT_ERR_NOMEM, file, line, NULL, "no memory to stage %zu bytes for %s",     \
                        stage_, what)

pt_status pt_mpi_barrier_at(const char *file, int line, MPI_Comm comm, const char *what)
{
    if (pt_watchdog_peer_lost()) return refuse(file, line, "MPI_Barrier");
    MPI_Request r;
    char *tmp = NULL;
    POST(MPI_Ibarrier(comm, &r), "MPI_Ibarrier");
    return pt_wait_bounded_at(file, line, 1, &r, NULL, comm, "MPI_Barrier", what);
}

pt_status pt_mpi_allreduce_at(const char *file, int line, const void *sendbuf, void *recvbuf,
                              int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm,
                              const char *what)
{
    if (pt_watchdog_peer_lost()) return refuse(file, line, "MPI_Allreduce");
    size_t bytes;
    if (!type_bytes(type, count, &bytes))
        return pt_error_set(PT_ERR_ARG, file, line, NULL, "MPI_Allreduce (%s): bad type or count %d", what, count);
    STAGE(bytes);
    memcpy(tmp, sendbuf == MPI_IN_PLACE ? recvbuf : sendbuf, bytes);
    MPI_Request r;
    POST(MPI_Iallreduce(MPI_IN_PLACE, tmp, count, type, op, comm, &r), "MPI_Iallreduce");
    pt_status st = pt_wait_bounded_at(file, line, 1, &r, NULL, comm, "MPI_Allreduce", what);
    if (st == PT_OK) memcpy(recvbuf, tmp, bytes), free(tmp);
    return st;
}

pt_status pt_mpi_bcast_at(const char *file, int line, void *buf, int count, MPI_Datatype type,
                          int root, MPI_Comm comm, const char *what)
{
    if (pt_watchdog_peer_lost()) return refuse(file, line, "MPI_Bcast");
    size_t bytes;
    if (!type_bytes(type, count, &bytes))
        return pt_error_set(PT_ERR_ARG, file, line, NULL, "MPI_Bcast (%s): bad type or count %d", what, count);
    STAGE(bytes);
    memcpy(tmp, buf, bytes);
    MPI_Request r;
    POST(MPI_Ibcast(tmp, count, type, root, comm, &r), "MPI_Ibcast");
    int me = 0, peer = root;
    MPI_Comm_rank(comm, &me);
    /* a non-root waits on the root (as far as it can tell: the tree may route through others) */
    pt_status st = pt_wait_bounded_at(file, line, 1, &r, me == root ? NULL : &peer, comm,
                                      "MPI_Bcast", what);
    if (st == PT_OK) memcpy(buf, tmp, bytes), free(tmp);
    return st;
}

pt_status pt_mpi_allgather_at(const char *file, int line, const void *sendbuf, int count,
                              MPI_Datatype type, void *recvbuf, MPI_Comm comm, const char *what)
{
    if (pt_watchdog_peer_lost()) return refuse(file, line, "MPI_Allgather");
    size_t bytes;
    int size = 1;
    MPI_Comm_size(comm, &size);
    if (!type_bytes(type, count, &bytes))
        return pt_error_set(PT_ERR_ARG, file, line, NULL, "MPI_Allgather (%s): bad type or count %d", what, count);
    STAGE(bytes * (size_t)(size + 1));
    memcpy(tmp, sendbuf, bytes);
    MPI_Request r;
    POST(MPI_Iallgather(tmp, count, type, tmp + bytes, count, type, comm, &r), "MPI_Iallgather");
    pt_status st = pt_wait_bounded_at(file, line, 1, &r, NULL, comm, "MPI_Allgather", what);
    if (st == PT_OK) memcpy(recvbuf, tmp + bytes, bytes * (size_t)size), free(tmp);
    return st;
}

pt_status pt_mpi_send_at(const char *file, int line, const void *buf, int count, MPI_Datatype type,
                         int dest, int tag, MPI_Comm comm, const char *what)
{
    if (pt_watchdog_peer_lost()) return refuse(file, line, "MPI_Send");
    size_t bytes;
    if (!type_bytes(type, count, &bytes))
        return pt_error_set(PT_ERR_ARG, file, line, NULL, "MPI_Send (%s): bad type or count %d", what, count);
    STAGE(bytes);
    memcpy(tmp, buf, bytes);
    MPI_Request r;
    POST(MPI_Isend(tmp, count, type, dest, tag, comm, &r), "MPI_Isend");
    pt_status st = pt_wait_bounded_at(file, line, 1, &r, &dest, comm, "MPI_Send", what);
    if (st == PT_OK) free(tmp);
    return st;
}

pt_status pt_mpi_recv_at(const char *file, int line, void *buf, int count, MPI_Datatype type,
                         int source, int tag, MPI_Comm comm, const char *what)
{
    if (pt_watchdog_peer_lost()) return refuse(file, line, "MPI_Recv");
    size_t bytes;
    if (!type_bytes(type, count, &bytes))
        return pt_error_set(PT_ERR_ARG, file, line, NULL, "MPI_Recv (%s): bad type or count %d", what, count);
    STAGE(bytes);
    MPI_Request r;
    POST(MPI_Irecv(tmp, count, type, source, tag, comm, &r), "MPI_Irecv");
    pt_status st = pt_wait_bounded_at(file, line, 1, &r, &source, comm, "MPI_Recv", what);
    if (st == PT_OK) memcpy(buf, tmp, bytes), free(tmp);
    return st;
}

pt_status pt_mpi_probe_at(const char *file, int line, int source, int tag, MPI_Comm comm,
                          MPI_Status *status, const char *what)
{
    if (pt_watchdog_peer_lost()) return refuse(file, line, "MPI_Probe");
    const double limit = pt_watchdog_timeout(), t0 = now();
    char *tmp = NULL;
    for (;;) {
        int flag = 0;
        POST(MPI_Iprobe(source, tag, comm, &flag, status), "MPI_Iprobe");
        if (flag) break;
        if (limit > 0 && now() - t0 >= limit)
            return pt_watchdog_fail(file, line, comm, "MPI_Probe", what, &source, 1);
    }
    progress();
    return PT_OK;
}

pt_status pt_peers_alive_at(const char *file, int line, MPI_Comm comm, const char *what)
{
    if (pt_watchdog_peer_lost()) return refuse(file, line, "the check that every peer is alive");
    int size = 1, me = 0;
    MPI_Comm_size(comm, &size);
    MPI_Comm_rank(comm, &me);
    if (size == 1) return PT_OK;
    const int n = 2 * (size - 1);
    /* requests, peers and tokens on the heap: left to the pending requests on a timeout */
    char *tmp = malloc(sizeof(MPI_Request) * (size_t)n + sizeof(int) * (size_t)n + (size_t)size);
    if (!tmp) return pt_error_set(PT_ERR_NOMEM, file, line, NULL, "no memory to check %d peers", size);
    MPI_Request *r = (MPI_Request *)tmp;
    int *peer = (int *)(r + n);
    char *tok = (char *)(peer + n);
    int k = 0;
    for (int q = 0; q < size; q++) {
        if (q == me) continue;
        POST(MPI_Irecv(&tok[q], 1, MPI_CHAR, q, PT_WATCHDOG_TAG, comm, &r[k]), "MPI_Irecv");
        peer[k++] = q;
    }
    tok[me] = 1;
    for (int q = 0; q < size; q++) {
        if (q == me) continue;
        POST(MPI_Isend(&tok[me], 1, MPI_CHAR, q, PT_WATCHDOG_TAG, comm, &r[k]), "MPI_Isend");
        peer[k++] = -1; /* a one-byte send completes whether the peer is there or not */
    }
    pt_status st = pt_wait_bounded_at(file, line, n, r, peer, comm, "the check that every peer is alive", what);
    if (st == PT_OK) free(tmp);
    return st;
}

/* ---------------------------------------------------------------- test hook */

void pt_fault_stop_point(const char *where, long long step)
{
    static int parsed = 0, rank = -1, any_step = 0, done = 0;
    static long long at = -1;
    static char place[32];
    if (!parsed) {
        parsed = 1;
        const char *env = getenv("PT_FAULT_STOP");
        char s[32] = "";
        if (env && sscanf(env, "%d:%31[^:]:%31s", &rank, s, place) == 3) {
            any_step = !strcmp(s, "*");
            at = any_step ? -1 : atoll(s);
        } else {
            rank = -1;
        }
    }
    if (rank < 0 || done || strcmp(where, place) || (!any_step && step != at)) return;
    if (world_rank() != rank) return;
    done = 1;
    fprintf(stderr, "PT_FAULT_STOP: rank %d stops itself (SIGSTOP) at %s, step %lld\n", rank, where,
            step);
    fflush(stderr);
    raise(SIGSTOP);
}
