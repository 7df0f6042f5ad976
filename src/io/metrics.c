#include "paratrain/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "h5util.h"

pt_status pt_metrics_open(pt_metrics *m, const char *path, int append, int rank)
{
    m->fp = NULL;
    if (rank != 0 || !path || !path[0]) return PT_OK;
    const char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        PT_TRY(pt_mkdir_p(dir));
    }
    m->fp = fopen(path, append ? "a" : "w");
    if (!m->fp)
        return PT_ERR(PT_ERR_IO, "check the --metrics path", "cannot open metrics file '%s': %s",
                      path, strerror(errno));
    return PT_OK;
}

void pt_metrics_write(pt_metrics *m, const char *event, const char *fmt, ...)
{
    if (!m->fp) return;
    fprintf(m->fp, "{\"event\": \"%s\", ", event);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(m->fp, fmt, ap);
    va_end(ap);
    fputs("}\n", m->fp);
    fflush(m->fp);
}

void pt_metrics_close(pt_metrics *m)
{
    if (m->fp) fclose(m->fp);
    m->fp = NULL;
}
