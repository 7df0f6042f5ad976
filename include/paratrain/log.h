/* Rank-aware logging: info goes to stdout on rank 0 only; warnings and errors go to stderr on the
 * rank that has them, prefixed with the rank so interleaved output stays readable. */
#ifndef PARATRAIN_LOG_H
#define PARATRAIN_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

void pt_log_set_rank(int rank, int size);
int pt_log_rank(void);
void pt_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pt_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "paratrain: error: <last error message>" with the rank prefix. */
void pt_log_error_last(const char *program);
/* Wall clock in seconds (monotonic). */
double pt_now(void);

#ifdef __cplusplus
}
#endif
#endif
