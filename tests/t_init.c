/* Initialization against PyTorch (tests/fixtures/init_torch.h5, written by
 * tests/fixtures/gen_init_fixture.py): for every parameter tensor of mlp, cnn, resnet, textcnn and
 * gpt, the values pt_model_init draws must follow the distribution PyTorch's reference draws them
 * from (its quantiles from >= 100000 PyTorch draws are in the fixture).
 *
 *   constant tensors (norm scales and shifts, gpt's biases): every element equals PyTorch's value;
 *   random tensors: pooled over as many seeds as give >= 4000 values, a Kolmogorov-Smirnov test
 *     against PyTorch's quantile function (the CDF interpolated linearly between its quantiles):
 *     D <= 1.95 / sqrt(n) (the 0.1% critical value) + 0.01 (the fixture's own sampling and
 *     interpolation error, <= 0.005 each). A fan-in off by a factor of 2 moves D by ~0.15 at
 *     these sizes (and the threshold is ~0.04); uniform tensors must also stay inside PyTorch's
 *     observed range, widened by 0.1% (a bound only slightly too large still fails there);
 *   the seeds' draws are distinct (seed s gives different values from seed s+1) and the mean of
 *     every random tensor is within 4 standard errors of 0, as PyTorch's are. */
#include <hdf5.h>
#include <string.h>

#include "../src/io/h5util.h"
#include "paratrain/model.h"
#include "testutil.h"

enum { KIND_CONST = 0, KIND_UNIFORM = 1, KIND_NORMAL = 2, MIN_SAMPLES = 4000 };

static hid_t fx;
static double probs[256];
static int nprobs;

static herr_t count_datasets(hid_t obj, const char *name, const pt_oinfo *info, void *op)
{
    (void)obj, (void)name;
    if (info->type == H5O_TYPE_DATASET) ++*(int *)op;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* PyTorch's CDF at x: linear between the quantiles (q[i], probs[i]) */
static double ref_cdf(const double *q, double x)
{
    if (x < q[0]) return 0.0;
    if (x >= q[nprobs - 1]) return 1.0;
    int lo = 0, hi = nprobs - 1; /* q[lo] <= x < q[hi] */
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (q[mid] <= x) lo = mid;
        else hi = mid;
    }
    const double w = q[hi] > q[lo] ? (x - q[lo]) / (q[hi] - q[lo]) : 1.0;
    return probs[lo] + w * (probs[hi] - probs[lo]);
}

static double ks_stat(const double *sorted, int64_t n, const double *q)
{
    double d = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double F = ref_cdf(q, sorted[i]);
        const double a = fabs(F - (double)i / (double)n), b = fabs(F - (double)(i + 1) / (double)n);
        if (a > d) d = a;
        if (b > d) d = b;
    }
    return d;
}

static void check_model(const char *spec)
{
    hid_t g = H5Gopen2(fx, spec, H5P_DEFAULT);
    if (g < 0) {
        CHECK(0, "fixture has no group '%s'", spec);
        return;
    }
    pt_model m;
    pt_model_options mo = {.act = PT_ACT_RELU};
    REQUIRE_OK(pt_model_create(&m, spec, &mo, pt_backend_cpu(), 1));
    int nref = 0;
    PT_OVISIT(g, count_datasets, &nref);
    CHECK(m.nparams == nref, "%s: %d parameter tensors, PyTorch's reference has %d", spec,
          m.nparams, nref);
    /* seeds enough for the smallest random tensor */
    int64_t smallest = m.numel;
    for (int t = 0; t < m.nparams; t++)
        if (m.params[t].numel < smallest) smallest = m.params[t].numel;
    const int seeds = (int)((MIN_SAMPLES + smallest - 1) / smallest);
    float *all = malloc(sizeof(float) * (size_t)(m.numel * seeds));
    for (int s = 0; s < seeds; s++) {
        REQUIRE_OK(pt_model_init(&m, 1000 + (uint64_t)s));
        m.be->to_host(all + (int64_t)s * m.numel, m.w, sizeof(float) * (size_t)m.numel);
    }
    double worst = 0.0;
    int nrandom = 0;
    for (int t = 0; t < m.nparams; t++) {
        const pt_param *p = &m.params[t];
        double q[256];
        int kind = -1;
        hid_t d = H5Dopen2(g, p->name, H5P_DEFAULT);
        if (d < 0) {
            CHECK(0, "%s: %s has no PyTorch reference", spec, p->name);
            continue;
        }
        hid_t a = H5Aopen(d, "kind", H5P_DEFAULT);
        H5Aread(a, H5T_NATIVE_INT, &kind);
        H5Aclose(a);
        H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, q);
        H5Dclose(d);
        const int use = kind == KIND_CONST ? 1 : (int)((MIN_SAMPLES + p->numel - 1) / p->numel);
        const int64_t n = p->numel * use;
        double *v = malloc(sizeof(double) * (size_t)n);
        for (int s = 0; s < use; s++)
            for (int64_t i = 0; i < p->numel; i++)
                v[s * p->numel + i] = all[(int64_t)s * m.numel + p->offset + i];
        if (kind == KIND_CONST) {
            int64_t off = 0;
            for (int64_t i = 0; i < n; i++) off += v[i] != q[0];
            CHECK(q[0] == q[nprobs - 1] && off == 0,
                  "%s: %s: %lld of %lld elements differ from PyTorch's constant %g", spec, p->name,
                  (long long)off, (long long)n, q[0]);
            free(v);
            continue;
        }
        nrandom++;
        /* two seeds draw different values (the test pools seeds: they must be independent) */
        if (use > 1) {
            int64_t same = 0;
            for (int64_t i = 0; i < p->numel; i++) same += v[i] == v[p->numel + i];
            CHECK(same * 10 < p->numel, "%s: %s: seeds 1000 and 1001 agree in %lld of %lld elements",
                  spec, p->name, (long long)same, (long long)p->numel);
        }
        double mean = 0.0, var = 0.0;
        for (int64_t i = 0; i < n; i++) mean += v[i];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) var += (v[i] - mean) * (v[i] - mean);
        var /= (double)(n - 1);
        CHECK(fabs(mean) <= 4.0 * sqrt(var / (double)n), "%s: %s: mean %.3g, standard error %.3g",
              spec, p->name, mean, sqrt(var / (double)n));
        qsort(v, (size_t)n, sizeof *v, cmp_double);
        const double D = ks_stat(v, n, q), crit = 1.95 / sqrt((double)n) + 0.01;
        if (D / crit > worst) worst = D / crit;
        CHECK(D <= crit,
              "%s: %s (%s): Kolmogorov-Smirnov D = %.4f > %.4f against PyTorch over %lld values; "
              "ours span [%.4g, %.4g], sd %.4g; PyTorch's [%.4g, %.4g]",
              spec, p->name, kind == KIND_UNIFORM ? "uniform" : "normal", D, crit, (long long)n, v[0],
              v[n - 1], sqrt(var), q[0], q[nprobs - 1]);
        if (kind == KIND_UNIFORM) {
            const double slack = 1e-3 * (q[nprobs - 1] - q[0]);
            CHECK(v[0] >= q[0] - slack && v[n - 1] <= q[nprobs - 1] + slack,
                  "%s: %s: values span [%.5g, %.5g], PyTorch's uniform [%.5g, %.5g]", spec, p->name,
                  v[0], v[n - 1], q[0], q[nprobs - 1]);
        }
        free(v);
    }
    printf("%-62s %2d tensors (%d random, %d seeds), worst D / critical %.2f\n", spec, m.nparams,
           nrandom, seeds, worst);
    free(all);
    pt_model_destroy(&m);
    H5Gclose(g);
}

int main(void)
{
    const char *dir = getenv("srcdir");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/init_torch.h5", dir ? dir : ".");
    fx = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fx < 0) {
        fprintf(stderr, "FAIL: cannot open %s\n", path);
        return 1;
    }
    hid_t d = H5Dopen2(fx, "probs", H5P_DEFAULT);
    hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
    nprobs = sp >= 0 ? (int)H5Sget_simple_extent_npoints(sp) : 0;
    if (nprobs < 2 || nprobs > 256 ||
        H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, probs) < 0) {
        fprintf(stderr, "FAIL: %s has no usable /probs\n", path);
        return 1;
    }
    H5Sclose(sp), H5Dclose(d);
    check_model("mlp:20-16-8-5");
    check_model("cnn:c1=4,c2=6,hidden=16,classes=5,size=12");
    check_model("resnet:width=8,blocks=1,classes=5,size=8");
    check_model("textcnn:len=12,emb=5,filters=3,widths=2/3,classes=4,vocab=20");
    check_model("gpt:layers=2,heads=2,d=8,ctx=6,vocab=16");
    H5Fclose(fx);
    return test_exit_code("t_init");
}
