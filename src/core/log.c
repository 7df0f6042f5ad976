#include "paratrain/log.h"

#include "paratrain/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static int log_rank = 0, log_size = 1;

void pt_log_set_rank(int rank, int size)
{
    log_rank = rank;
    log_size = size;
}

int pt_log_rank(void) { return log_rank; }

void pt_log_info(const char *fmt, ...)
{
    if (log_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

void pt_log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (log_size > 1) fprintf(stderr, "[rank %d] ", log_rank);
    fputs("warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

void pt_log_error_last(const char *program)
{
    if (pt_error_remote_rank() >= 0) return; /* another rank reports this failure */
    if (log_size > 1) fprintf(stderr, "[rank %d] ", log_rank);
    fprintf(stderr, "%s: error: %s\n", program, pt_error_message());
    fflush(stderr);
}

double pt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
