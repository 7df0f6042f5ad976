/* PT_FAULT_INJECT test hooks (include/paratrain/fault.h, docs/FAULTS.md). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "paratrain/fault.h"

typedef struct {
    bool has_value, has_rank;
    long value;
    int rank;
} fault_item;

/* Finds item `name` in PT_FAULT_INJECT ("a,b:3,c:50@1"); false when absent or malformed. */
static bool find_item(const char *name, fault_item *it)
{
    const char *env = getenv("PT_FAULT_INJECT");
    if (!env || !*env) return false;
    const size_t nl = strlen(name);
    for (const char *p = env; *p;) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *q = p;
        while (q < end && *q != ':' && *q != '@') q++;
        if ((size_t)(q - p) == nl && !strncmp(p, name, nl)) {
            memset(it, 0, sizeof *it);
            char *e;
            if (q < end && *q == ':') {
                it->value = strtol(q + 1, &e, 10);
                if (e == q + 1) return false;
                it->has_value = true;
                q = e;
            }
            if (q < end && *q == '@') {
                it->rank = (int)strtol(q + 1, &e, 10);
                if (e == q + 1) return false;
                it->has_rank = true;
                q = e;
            }
            return q == end;
        }
        p = *end ? end + 1 : end;
    }
    return false;
}

bool pt_fault_at(const char *name, int64_t step, int rank)
{
    fault_item it;
    if (!find_item(name, &it)) return false;
    if (it.has_value && it.value != step) return false;
    return rank == (it.has_rank ? it.rank : 0);
}

long pt_fault_value(const char *name, int rank)
{
    fault_item it;
    if (!find_item(name, &it) || !it.has_value) return 0;
    return !it.has_rank || it.rank == rank ? it.value : 0;
}

void pt_fault_delay(const char *name, int rank)
{
    const long ms = pt_fault_value(name, rank);
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    } /* a signal (the preemption handler) interrupts it; sleep the rest */
}

bool pt_fault_everywhere(const char *name)
{
    fault_item it;
    return find_item(name, &it) && !it.has_value && !it.has_rank;
}

/* slow:RANK:MS or slow:RANK:MS:PERIOD:PHASE, parsed from [p, end); false when malformed */
static bool parse_slow(const char *p, const char *end, long *rank, long *ms, long *period,
                       long *phase)
{
    long v[4];
    int n = 0;
    const char *q = p + 5;
    while (n < 4) {
        char *e;
        v[n] = strtol(q, &e, 10);
        if (e == q) return false;
        n++;
        if (e == end) break;
        if (*e != ':') return false;
        q = e + 1;
    }
    if (n != 2 && n != 4) return false;
    *rank = v[0], *ms = v[1];
    *period = n == 4 ? v[2] : 1, *phase = n == 4 ? v[3] : 0;
    return *ms > 0 && *period >= 1 && *phase >= 0 && *phase < *period;
}

long pt_fault_slow_ms(int rank, int64_t step)
{
    const char *env = getenv("PT_FAULT_INJECT");
    if (!env || !*env) return 0;
    for (const char *p = env; *p;) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        long r, ms, period, phase;
        if (end - p > 5 && !strncmp(p, "slow:", 5) && parse_slow(p, end, &r, &ms, &period, &phase) &&
            r == rank && (step < 0 || step % period == phase))
            return ms;
        p = *end ? end + 1 : end;
    }
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    } /* a signal (the preemption handler) interrupts it; sleep the rest */
}

void pt_fault_slow(int rank, int64_t step)
{
    const long ms = pt_fault_slow_ms(rank, step);
    if (ms > 0) sleep_ms(ms);
}
