/* The JSON-lines metrics log (format in docs/METRICS.md). Rank 0 writes; other ranks hold a
 * closed log and every call is a no-op for them. */
#ifndef PARATRAIN_METRICS_H
#define PARATRAIN_METRICS_H

#include <stdio.h>

#include "paratrain/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    FILE *fp;
} pt_metrics;

/* path NULL or "" disables the log. append keeps earlier records (a resumed run). */
pt_status pt_metrics_open(pt_metrics *m, const char *path, int append, int rank);
/* Writes one record: {"event": event, <fields>} where fields is a printf-formatted JSON fragment
 * such as "\"step\": 10, \"loss\": 0.5". Flushed at once so a crash loses no record. A number
 * that printf writes as inf or nan (JSON has none) is written as null. */
void pt_metrics_write(pt_metrics *m, const char *event, const char *fields_fmt, ...)
    __attribute__((format(printf, 3, 4)));
void pt_metrics_close(pt_metrics *m);

#ifdef __cplusplus
}
#endif
#endif
