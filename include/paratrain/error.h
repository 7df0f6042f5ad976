/* Error codes, the last-error message, and the check macros every MPI/HDF5/BLAS call goes through.
 *
 * Library code never exits: it records one message (what failed, where, and a hint) and returns a
 * pt_status. Programs decide what to do with it (src/cli/ prints it and stops every rank). */
#ifndef PARATRAIN_ERROR_H
#define PARATRAIN_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    PT_OK = 0,
    PT_ERR_ARG,      /* bad flag, bad value, bad model spec */
    PT_ERR_IO,       /* file missing, unreadable, unwritable */
    PT_ERR_FORMAT,   /* file readable but not what we expect (shape, magic, version) */
    PT_ERR_DATA,     /* values out of range: NaN input, label >= classes */
    PT_ERR_MISMATCH, /* checkpoint does not fit the model / run */
    PT_ERR_NOMEM,
    PT_ERR_MPI,
    PT_ERR_HDF5,
    PT_ERR_CUDA,
    PT_ERR_INTERNAL,
} pt_status;

const char *pt_status_name(pt_status s);

/* Records a message for the calling thread and returns `code`; use through PT_ERR. */
pt_status pt_error_set(pt_status code, const char *file, int line, const char *hint,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The last recorded message ("what (file:line)\n  hint: ..."), or "" when none. */
const char *pt_error_message(void);
void pt_error_clear(void);
/* After an agreement (pt_agree) the ranks other than the reporting one mark their error as
 * "reported by rank r", so that a program prints the message once. -1: this rank reports. */
void pt_error_mark_remote(int reporting_rank);
int pt_error_remote_rank(void);

#define PT_ERR(code, hint, ...) pt_error_set((code), __FILE__, __LINE__, (hint), __VA_ARGS__)

/* Propagate a non-OK status. */
#define PT_TRY(expr)                                                                               \
    do {                                                                                           \
        pt_status pt_try_s_ = (expr);                                                              \
        if (pt_try_s_ != PT_OK) return pt_try_s_;                                                  \
    } while (0)

/* Same, but jump to a cleanup label with `st` set. */
#define PT_TRY_GOTO(st, expr, label)                                                               \
    do {                                                                                           \
        (st) = (expr);                                                                             \
        if ((st) != PT_OK) goto label;                                                             \
    } while (0)

/* MPI: every call returns MPI_SUCCESS or an error code (with MPI_ERRORS_RETURN set on the comm). */
#define PT_MPI_CHECK(call)                                                                         \
    do {                                                                                           \
        int pt_mpi_rc_ = (call);                                                                   \
        if (pt_mpi_rc_ != MPI_SUCCESS) {                                                           \
            char pt_mpi_msg_[MPI_MAX_ERROR_STRING];                                                \
            int pt_mpi_len_ = 0;                                                                   \
            MPI_Error_string(pt_mpi_rc_, pt_mpi_msg_, &pt_mpi_len_);                               \
            return PT_ERR(PT_ERR_MPI, "check that all ranks were launched by the same mpirun",     \
                          "%s failed: %s", #call, pt_mpi_msg_);                                    \
        }                                                                                          \
    } while (0)

/* HDF5: herr_t/hid_t calls fail with a negative value. */
#define PT_H5_CHECK(call, hint)                                                                    \
    do {                                                                                           \
        if ((long long)(call) < 0)                                                                 \
            return PT_ERR(PT_ERR_HDF5, (hint), "%s failed", #call);                                \
    } while (0)

#define PT_H5_CHECK_GOTO(st, call, hint, label)                                                    \
    do {                                                                                           \
        if ((long long)(call) < 0) {                                                               \
            (st) = PT_ERR(PT_ERR_HDF5, (hint), "%s failed", #call);                                \
            goto label;                                                                            \
        }                                                                                          \
    } while (0)

/* Allocation: returns PT_ERR_NOMEM with the size in the message. */
#define PT_ALLOC_CHECK(ptr, bytes)                                                                 \
    do {                                                                                           \
        if ((ptr) == NULL && (bytes) > 0)                                                          \
            return PT_ERR(PT_ERR_NOMEM, "reduce the batch size or the model",                      \
                          "cannot allocate %zu bytes for %s", (size_t)(bytes), #ptr);              \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
