/* The CPU backend's deterministic mode (--reproducible): GEMM gives the same bits for 1 and 2
 * threads on the shapes training runs (mlp chunks of 8 samples, forward, weight and input
 * gradients), and the result is a correct product (against a double-precision reference). The
 * control: without the mode, OpenBLAS differs between thread counts on at least one shape on
 * the CPUs where it does (printed, not required, since some CPUs' kernels happen to agree). */
#include <omp.h>
#include <string.h>

#include "paratrain/backend.h"
#include "testutil.h"

typedef struct { int m, n, k; bool ta, tb; } shape;

static void fill(float *x, long n, unsigned seed)
{
    for (long i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) * (1.0 / 16777216.0) - 0.5);
    }
}

static void product(const pt_backend *be, const shape *s, const float *a, const float *b,
                    float *c, int threads)
{
    omp_set_num_threads(threads);
    const int lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    be->gemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, lda, b, ldb, 0.0f, c, s->n);
}

int main(void)
{
    const pt_backend *be = pt_backend_cpu();
    if (!be->set_deterministic) {
        fprintf(stderr, "FAIL: the CPU backend has no deterministic mode\n");
        return 1;
    }
    const shape shapes[] = {{8, 64, 784, false, true},  {64, 784, 8, true, false},
                            {8, 784, 64, false, false}, {96, 1024, 784, false, true},
                            {1024, 784, 96, true, false}, {300, 520, 33, false, false},
                            {1, 1, 1, false, false}};
    int plain_differs = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const shape *s = &shapes[i];
        const long na = (long)s->m * s->k, nb = (long)s->k * s->n, nc = (long)s->m * s->n;
        float *a = malloc(sizeof(float) * na), *b = malloc(sizeof(float) * nb);
        float *c1 = malloc(sizeof(float) * nc), *c2 = malloc(sizeof(float) * nc);
        fill(a, na, 1 + (unsigned)i), fill(b, nb, 100 + (unsigned)i);
        be->set_deterministic(false);
        product(be, s, a, b, c1, 1), product(be, s, a, b, c2, 2);
        plain_differs += memcmp(c1, c2, sizeof(float) * nc) != 0;
        be->set_deterministic(true);
        product(be, s, a, b, c1, 1), product(be, s, a, b, c2, 2);
        CHECK(!memcmp(c1, c2, sizeof(float) * nc), "%dx%dx%d ta=%d tb=%d: 1 and 2 threads differ",
              s->m, s->n, s->k, s->ta, s->tb);
        double err = 0.0; /* against a double-precision product */
        for (int r = 0; r < s->m; r++)
            for (int c = 0; c < s->n; c++) {
                double ref = 0.0;
                for (int p = 0; p < s->k; p++)
                    ref += (double)(s->ta ? a[(long)p * s->m + r] : a[(long)r * s->k + p]) *
                           (s->tb ? b[(long)c * s->k + p] : b[(long)p * s->n + c]);
                const double d = fabs(ref - c1[(long)r * s->n + c]);
                if (d > err) err = d;
            }
        CHECK(err < 1e-4, "%dx%dx%d: deterministic product off by %g", s->m, s->n, s->k, err);
        free(a), free(b), free(c1), free(c2);
    }
    be->set_deterministic(false);
    printf("plain OpenBLAS: 1 vs 2 threads differ on %d of %zu shapes on this CPU\n", plain_differs,
           sizeof shapes / sizeof *shapes);
    return test_exit_code("t_backend_det");
}
