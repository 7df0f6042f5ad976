/* The last-error record. Thread-local, so OpenMP threads cannot clobber each other's messages. */
#include "paratrain/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char pt_last_error[2048];
static _Thread_local int pt_remote_rank = -1;

const char *pt_status_name(pt_status s)
{
    switch (s) {
    case PT_OK: return "ok";
    case PT_ERR_ARG: return "invalid argument";
    case PT_ERR_IO: return "I/O error";
    case PT_ERR_FORMAT: return "bad file format";
    case PT_ERR_DATA: return "bad data";
    case PT_ERR_MISMATCH: return "mismatch";
    case PT_ERR_NOMEM: return "out of memory";
    case PT_ERR_MPI: return "MPI error";
    case PT_ERR_HDF5: return "HDF5 error";
    case PT_ERR_CUDA: return "CUDA error";
    case PT_ERR_INTERNAL: return "internal error";
    }
    return "unknown error";
}

pt_status pt_error_set(pt_status code, const char *file, int line, const char *hint,
                       const char *fmt, ...)
{
    char what[1536];
    pt_remote_rank = -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (hint && hint[0])
        snprintf(pt_last_error, sizeof pt_last_error, "%s (%s:%d)\n  hint: %s", what, file, line,
                 hint);
    else
        snprintf(pt_last_error, sizeof pt_last_error, "%s (%s:%d)", what, file, line);
    return code;
}

const char *pt_error_message(void) { return pt_last_error; }

void pt_error_clear(void)
{
    pt_last_error[0] = '\0';
    pt_remote_rank = -1;
}

void pt_error_mark_remote(int reporting_rank)
{
    snprintf(pt_last_error, sizeof pt_last_error, "failed on rank %d (reported there)",
             reporting_rank);
    pt_remote_rank = reporting_rank;
}

int pt_error_remote_rank(void) { return pt_remote_rank; }
