/* A minimal test harness: CHECK records a failure and goes on, so one run reports every failing
 * case; main returns test_exit_code() (0 pass, 1 fail, 77 skip for automake). */
#ifndef PT_TESTUTIL_H
#define PT_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int test_failures = 0, test_checks = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            test_failures++;                                                                       \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* Stops the test when a setup step fails (nothing after it could be meaningful). */
#define REQUIRE_OK(expr)                                                                           \
    do {                                                                                           \
        pt_status rq_ = (expr);                                                                    \
        if (rq_ != PT_OK) {                                                                        \
            fprintf(stderr, "FAIL %s:%d: %s -> %s\n", __FILE__, __LINE__, #expr,                   \
                    pt_error_message());                                                           \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* max |a - b| / max(max |b|, floor): a normalized error that is meaningful for tiny tensors too. */
static inline double max_rel_err(const float *a, const float *b, long n, double floor)
{
    double num = 0.0, den = floor;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > num || d != d) num = d;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return num / den;
}

static inline int test_exit_code(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, test_checks, test_failures);
    return test_failures ? 1 : 0;
}

#endif
