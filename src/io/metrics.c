#include "paratrain/metrics.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <strings.h>
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

/* Length of a non-finite number as printf writes it ("inf", "-nan", "INF", "infinity") at s,
 * or 0. JSON has no such numbers: the record gets null in their place. */
static size_t nonfinite_len(const char *s)
{
    size_t n = *s == '-' ? 1 : 0;
    if (!strncasecmp(s + n, "infinity", 8)) return n + 8;
    if (!strncasecmp(s + n, "inf", 3) || !strncasecmp(s + n, "nan", 3)) return n + 3;
    return 0;
}

void pt_metrics_write(pt_metrics *m, const char *event, const char *fmt, ...)
{
    if (!m->fp) return;
    char small[2048], *rec = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof small) { /* a long record: format it again into a buffer its size */
        if (!(rec = malloc((size_t)n + 1))) return;
        va_start(ap, fmt);
        vsnprintf(rec, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    fprintf(m->fp, "{\"event\": \"%s\", ", event);
    /* copy, replacing non-finite numbers outside strings by null */
    bool in_str = false;
    for (const char *c = rec; *c;) {
        size_t k;
        if (in_str) {
            if (*c == '\\' && c[1]) fputc(*c++, m->fp);
            else if (*c == '"') in_str = false;
            fputc(*c++, m->fp);
        } else if (*c == '"') {
            in_str = true;
            fputc(*c++, m->fp);
        } else if ((c == rec || !isalnum((unsigned char)c[-1])) && (k = nonfinite_len(c)) > 0 &&
                   !isalnum((unsigned char)c[k])) {
            fputs("null", m->fp);
            c += k;
        } else {
            fputc(*c++, m->fp);
        }
    }
    if (rec != small) free(rec);
    fputs("}\n", m->fp);
    fflush(m->fp);
}

void pt_metrics_close(pt_metrics *m)
{
    if (m->fp) fclose(m->fp);
    m->fp = NULL;
}
