/* The training-side compressor (src/parallel/compress.c): error feedback's invariant, DGC's
 * momentum correction and masking, and the density warm-up, checked against the test's own
 * arithmetic over several steps, at any np (tests/test_compress.sh runs np 1 and 3).
 *   top-k   sent + residual == g + old residual, bit for bit, the two disjoint; for gtopk,
 *           entries dropped by the global selection return to the residual whole
 *   DGC     u = m u + g, acc = residual + u, u zeroed where sent
 *   sign    residual = acc - scale * sign(acc), scale = mean |acc| of the tensor
 *   np = 1  the result is exactly what was sent */
#include <mpi.h>
#include <string.h>

#include "../src/parallel/compress.h"
#include "testutil.h"

static int rank, size;
static pt_model model; /* only numel, nparams and the parameters' offsets are used */

static float gen(int step, int64_t i)
{
    uint32_t u = (uint32_t)((uint64_t)(rank * 7919 + step * 104729 + 1) * 2654435761u + (uint64_t)i * 40503u);
    u ^= u >> 15, u *= 0x2c1b3c6du, u ^= u >> 12;
    return ((float)(u % 20001) - 10000.0f) * 1e-4f * (i % 3 == 0 ? 10.0f : 1.0f);
}

static void run(pt_compress_config cfg, const char *what)
{
    const int64_t n = model.numel;
    pt_compressor z;
    REQUIRE_OK(pt_compressor_init(&z, &cfg, &model));
    pt_comm c;
    REQUIRE_OK(pt_comm_init(&c, MPI_COMM_WORLD));
    float *g = malloc(sizeof(float) * (size_t)n), *r_old = calloc((size_t)n, sizeof(float));
    float *u_old = calloc((size_t)n, sizeof(float)), *acc = malloc(sizeof(float) * (size_t)n);
    float *sent = malloc(sizeof(float) * (size_t)n);
    char *in_global = malloc((size_t)n);
    for (int step = 0; step < 4; step++) {
        for (int64_t i = 0; i < n; i++) g[i] = gen(step, i);
        /* the test's own accumulation */
        for (int64_t i = 0; i < n; i++) {
            float u = cfg.dgc ? cfg.momentum * u_old[i] + g[i] : g[i];
            acc[i] = cfg.dgc ? r_old[i] + u : cfg.error_feedback ? g[i] + r_old[i] : g[i];
            u_old[i] = u;
        }
        REQUIRE_OK(pt_compressor_step(&z, &c, g, 0.0));
        int bad = 0, bad_mask = 0, bad_out = 0;
        if (cfg.kind == PT_COMPRESS_TOPK) {
            memset(sent, 0, sizeof(float) * (size_t)n);
            char *mine = calloc((size_t)n, 1);
            for (int64_t e = 0; e < z.k; e++) sent[z.idx[e]] = z.val[e], mine[z.idx[e]] = 1;
            /* entries applied this step: all sent ones, or for gtopk the global survivors */
            memset(in_global, cfg.algo == PT_SPARSE_GTOPK ? 0 : 1, (size_t)n);
            if (cfg.algo == PT_SPARSE_GTOPK)
                for (int64_t e = 0; e < z.gnnz; e++) in_global[z.gidx[e]] = 1;
            for (int64_t i = 0; i < n; i++) {
                const float res = z.residual ? z.residual[i] : 0.0f;
                if (mine[i] && memcmp(&sent[i], &acc[i], 4)) bad++; /* sent whole */
                if (!z.residual) continue;
                const int applied = mine[i] && in_global[i];
                if (applied ? res != 0.0f : memcmp(&res, &acc[i], 4) != 0) bad++;
                if (cfg.dgc && applied && z.velocity[i] != 0.0f) bad_mask++;
            }
            if (size == 1 && cfg.algo != PT_SPARSE_GTOPK)
                for (int64_t i = 0; i < n; i++) bad_out += memcmp(&g[i], &sent[i], 4) != 0;
            free(mine);
        } else if (cfg.kind == PT_COMPRESS_SIGN) {
            for (int s = 0; s < model.nparams; s++) {
                const int64_t lo = model.params[s].offset, hi = lo + model.params[s].numel;
                double l1 = 0.0;
                for (int64_t i = lo; i < hi; i++) l1 += fabsf(acc[i]);
                const float scale = (float)(l1 / (double)(hi - lo));
                for (int64_t i = lo; i < hi; i++) {
                    const float snt = acc[i] < 0 || signbit(acc[i]) ? -scale : scale;
                    sent[i] = snt;
                    if (z.residual && z.residual[i] != acc[i] - snt) bad++;
                }
            }
            if (size == 1)
                for (int64_t i = 0; i < n; i++) bad_out += g[i] != sent[i];
        }
        CHECK(!bad, "%s step %d np %d: %d elements break sent + residual = accumulated", what, step,
              size, bad);
        CHECK(!bad_mask, "%s step %d: %d momentum entries not masked where sent", what, step, bad_mask);
        CHECK(!bad_out, "%s step %d np 1: %d elements of the result differ from what was sent", what,
              step, bad_out);
        if (z.residual) memcpy(r_old, z.residual, sizeof(float) * (size_t)n);
        if (cfg.dgc)
            for (int64_t i = 0; i < n; i++) u_old[i] = z.velocity[i];
    }
    free(g), free(r_old), free(u_old), free(acc), free(sent), free(in_global);
    pt_comm_free(&c);
    pt_compressor_free(&z);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const int64_t sizes[] = {300, 7, 1001, 64};
    for (int i = 0; i < 4; i++) {
        model.params[i].offset = model.numel, model.params[i].numel = sizes[i];
        model.numel += sizes[i];
    }
    model.nparams = 4;
    const char *algos[] = {"allgather", "sparcml", "gtopk"};
    for (int a = 0; a < 3; a++)
        for (int ef = 0; ef < 2; ef++)
            for (int dgc = 0; dgc < 2; dgc++) {
                if (dgc && !ef) continue;
                pt_compress_config cfg;
                REQUIRE_OK(pt_compress_parse("topk:0.05", &cfg));
                REQUIRE_OK(pt_sparse_algo_parse(algos[a], &cfg.algo));
                cfg.error_feedback = ef, cfg.dgc = dgc, cfg.momentum = 0.9f;
                char what[64];
                snprintf(what, sizeof what, "topk %s ef %d dgc %d", algos[a], ef, dgc);
                run(cfg, what);
            }
    for (int ef = 0; ef < 2; ef++) {
        pt_compress_config cfg;
        REQUIRE_OK(pt_compress_parse("sign", &cfg));
        cfg.error_feedback = ef;
        run(cfg, ef ? "sign ef" : "sign");
    }
    /* DGC's warm-up over 4 epochs to 0.1%: 0.25 * 0.004^(e/4), close to the paper's 25%, 6.25%,
     * 1.5625%, 0.4%, then the target */
    pt_compress_config cfg;
    REQUIRE_OK(pt_compress_parse("topk:0.001", &cfg));
    cfg.warmup_epochs = 4;
    pt_compressor z;
    REQUIRE_OK(pt_compressor_init(&z, &cfg, &model));
    const double want[] = {0.25, 0.06287167148414677, 0.015811388300841896, 0.003976353643835253,
                           0.001, 0.001};
    for (int e = 0; e < 6; e++) {
        double d = pt_compressor_density(&z, e + 0.5);
        CHECK(fabs(d / want[e] - 1) < 1e-9,
              "density warm-up epoch %d: %g, expected %g", e, d, want[e]);
    }
    pt_compressor_free(&z);
    CHECK(pt_compress_parse("topk:0", &cfg) != PT_OK && pt_compress_parse("topk:1.5", &cfg) != PT_OK &&
              pt_compress_parse("topk:x", &cfg) != PT_OK && pt_compress_parse("bits", &cfg) != PT_OK,
          "bad --compress specs accepted");
    int fails = test_failures;
    MPI_Allreduce(MPI_IN_PLACE, &fails, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    int rc = rank == 0 ? test_exit_code("t_compress_ef") : 0;
    if (fails) rc = 1;
    MPI_Finalize();
    return rc;
}
