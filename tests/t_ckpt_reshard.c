/* Checkpoints in the global layout, resharded on load (design.md #14; src/io/ckpt.c):
 *
 *   t_ckpt_reshard save DIR   at every grid (tp, dp) of this many ranks, with and without ZeRO-1,
 *                             saves each model's tensor-parallel shards (pt_ckpt_save_dist) to
 *                             DIR/<model>_np<P>_t<TP>_z<Z>, and the tp = 1 model with the old
 *                             pt_ckpt_save to DIR/<model>_np<P>_old
 *   t_ckpt_reshard load DIR   loads every checkpoint in DIR at every grid of this many ranks,
 *                             with and without ZeRO-1 (pt_ckpt_load_dist), and compares every
 *                             parameter, buffer and optimizer-state element bitwise with the
 *                             serial model's (the grid's metadata too)
 *   t_ckpt_reshard crc DIR    (one rank) every file passes pt_ckpt_verify (each dataset's crc32 is
 *                             the checksum of the whole global tensor) and every dataset's crc32
 *                             and bytes are the same in every file, whatever grid wrote it
 *
 * The shards are those of the tensor-parallel mlp and gpt (pt_model_create with opt.tp on a tp
 * group from MPI_Comm_split), and, for layouts those models do not have, made by hand from the
 * serial model: a copy whose tensors have the shape, split fields and flat buffer one tp rank
 * would hold (Megatron's splits: column-parallel weights along dim 0, row-parallel along dim 1,
 * the fused q,k,v weight in 3 blocks, a vocabulary-parallel embedding; plus 4-D conv weights
 * split along their first and their last dimension, and batch-norm buffers, replicated). Files
 * of the real and the hand-made shards of the same model load into each other. The values come
 * from the serial model by the global index of paratrain/model.h, computed here independently
 * of ckpt.c. Ranks are laid out tp innermost (rank = dp_rank * tp + tp_rank). */
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/ckpt.h"
#include "paratrain/comm.h"
#include "paratrain/model.h"
#include "paratrain/optim.h"
#include "testutil.h"

/* Stops the test when a setup step fails. */
#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                          \
        }                                                                                          \
    } while (0)

static int rank, nranks;

/* name (its files are DIR/<name>_...; a name's family, up to a '-', shares its files with the
 * family's other names: they are the same global model), spec, and whether the shards come from
 * the tensor-parallel model itself (pt_model_create with opt.tp) or by hand */
static const struct {
    const char *name, *spec;
    int real;
} models[] = {
    {"mlp", "mlp:12-16-8-4", 0},
    {"gpt", "gpt:layers=1,heads=4,d=16,ctx=8,vocab=32", 0},
    {"cnn", "cnn:c1=4,c2=8,hidden=16,classes=4,size=12", 0},
    {"resnet", "resnet:width=4,blocks=1,classes=4,size=8", 0},
    {"mlp-tp", "mlp:12-16-8-4", 1},
    {"gpt-tp", "gpt:layers=1,heads=4,d=16,ctx=8,vocab=32", 1},
};
/* the tp group of each tp size (index log2 tp): rank = dp_rank * tp + tp_rank */
static pt_comm tpc[3];
static MPI_Comm tpc_mpi[3];
static int have_tpc[3];
#define NMODELS (int)(sizeof models / sizeof *models)

/* The split a tensor-parallel model would give tensor `name`: dimension (-1: replicated) and
 * blocks. */
static int split_of(const char *name, int *blocks)
{
    *blocks = 1;
    int k;
    if (sscanf(name, "fc%d/", &k) == 1) /* mlp and cnn: column-, row-, column-parallel ... */
        return strstr(name, "/weight") ? (k % 2 ? 0 : 1) : (k % 2 ? 0 : -1);
    if (strstr(name, "attn_qkv/")) return *blocks = 3, 0;
    if (strstr(name, "mlp_fc/") || !strcmp(name, "wte/weight")) return 0;
    if (strstr(name, "attn_proj/weight") || strstr(name, "mlp_proj/weight")) return 1;
    if (!strcmp(name, "conv1/weight") || strstr(name, "stage2.0/conv1/weight")) return 0;
    if (!strcmp(name, "conv2/weight") || strstr(name, "stage3.0/conv2/weight")) return 3;
    return -1;
}

/* The global flat index of local element e of p (model.h's mapping). */
static int64_t global_flat(const pt_param *p, int64_t e)
{
    int64_t idx[PT_MAX_DIMS];
    for (int k = p->ndim - 1; k >= 0; k--) idx[k] = e % p->shape[k], e /= p->shape[k];
    const int d = p->split_dim;
    if (d >= 0) {
        const int64_t lb = p->shape[d] / p->split_blocks;
        idx[d] = idx[d] / lb * (p->gshape[d] / p->split_blocks) + p->split_start + idx[d] % lb;
    }
    int64_t g = 0;
    for (int k = 0; k < p->ndim; k++) g = g * p->gshape[k] + idx[k];
    return g;
}

typedef struct {
    pt_model m;
    pt_optimizer o;
    int real; /* m was built by pt_model_create (tensor-parallel): pt_model_destroy frees it */
} shard;

/* Flat element L of the shard's local buffer: the serial model's flat index of the same value. */
static int64_t ref_index(const shard *s, const pt_model *R, int64_t L)
{
    for (int i = 0; i < s->m.nparams; i++) {
        const pt_param *p = &s->m.params[i];
        if (L >= p->offset && L < p->offset + p->numel)
            return R->params[i].offset + global_flat(p, L - p->offset);
    }
    fprintf(stderr, "FAIL: element %lld outside every tensor\n", (long long)L);
    exit(1);
}

/* Tensor-parallel rank t of T of the serial model R (and its optimizer RO), the optimizer state
 * sharded over D dp ranks (ZeRO-1) when zero. fill: the serial values; else NaN everywhere. */
static shard *make_shard(const pt_model *R, const pt_optimizer *RO, int T, int t, int D, int dpr,
                         int zero, int fill, int real)
{
    shard *s = calloc(1, sizeof *s);
    REQUIRE(s, "out of memory");
    if (real) { /* the tensor-parallel model: its own shapes and split fields */
        int lg = T == 1 ? 0 : T == 2 ? 1 : 2;
        pt_model_options mo = {.act = PT_ACT_RELU, .tp = T > 1 ? &tpc[lg] : NULL};
        REQUIRE_OK(pt_model_create(&s->m, R->spec, &mo, pt_backend_cpu(), 1));
        int split = 0;
        for (int i = 0; i < s->m.nparams; i++) split += s->m.params[i].gnumel > s->m.params[i].numel;
        REQUIRE(s->m.nparams == R->nparams && pt_model_tp_rank(&s->m) == t && (T == 1 || split > 0),
                "%s at tp %d: %d tensors, tp rank %d, %d split", R->spec, T, s->m.nparams,
                pt_model_tp_rank(&s->m), split);
        s->real = 1;
    }
    s->m = real ? s->m : *R;
    int64_t off = 0;
    for (int i = 0; i < R->nparams && !real; i++) {
        pt_param *p = &s->m.params[i];
        int sb, d = split_of(p->name, &sb);
        for (int k = 0; k < p->ndim; k++) p->gshape[k] = p->shape[k];
        p->gnumel = p->numel, p->split_dim = -1, p->split_blocks = 1, p->split_start = 0;
        if (T > 1 && d >= 0) {
            REQUIRE(p->shape[d] % (sb * T) == 0, "%s: dim %d (%lld) does not split in %d x %d",
                    p->name, d, (long long)p->shape[d], sb, T);
            const int64_t lb = p->shape[d] / sb / T;
            p->split_dim = d, p->split_blocks = sb, p->split_start = t * lb;
            p->shape[d] = sb * lb;
            p->numel = 1;
            for (int k = 0; k < p->ndim; k++) p->numel *= p->shape[k];
        }
        p->offset = off;
        off += p->numel;
    }
    if (!real) {
        s->m.numel = off;
        s->m.w = malloc(sizeof(float) * (size_t)(off + 1));
        s->m.buf = malloc(sizeof(float) * (size_t)(R->nbuf + 1));
        s->m.g = NULL;
    }
    off = s->m.numel;
    REQUIRE(s->m.w && (s->m.buf || !R->nbuf), "out of memory");
    memset(s->m.w, 0xff, sizeof(float) * (size_t)off);
    if (R->nbuf) memset(s->m.buf, 0xff, sizeof(float) * (size_t)R->nbuf);
    s->o = *RO;
    s->o.offset = 0, s->o.n = off;
    if (zero) pt_shard_range(off, D, dpr, &s->o.offset, &s->o.n);
    s->o.t = fill ? RO->t : -1;
    for (int k = 0; k < RO->nstates; k++) {
        s->o.state[k] = malloc(sizeof(float) * (size_t)(s->o.n + 1));
        REQUIRE(s->o.state[k], "out of memory");
        memset(s->o.state[k], 0xff, sizeof(float) * (size_t)s->o.n);
    }
    if (fill) {
        for (int64_t L = 0; L < off; L++) s->m.w[L] = R->w[ref_index(s, R, L)];
        if (R->nbuf) memcpy(s->m.buf, R->buf, sizeof(float) * (size_t)R->nbuf);
        for (int k = 0; k < RO->nstates; k++)
            for (int64_t L = 0; L < s->o.n; L++)
                s->o.state[k][L] = RO->state[k][ref_index(s, R, s->o.offset + L)];
    }
    return s;
}

static void free_shard(shard *s)
{
    if (s->real) pt_model_destroy(&s->m);
    else free(s->m.w), free(s->m.buf);
    for (int k = 0; k < s->o.nstates; k++) free(s->o.state[k]);
    free(s);
}

/* The serial model and an Adam state with distinct values everywhere. */
static void make_ref(const char *spec, pt_model *R, pt_optimizer *RO)
{
    pt_model_options mo = {.act = PT_ACT_RELU};
    REQUIRE_OK(pt_model_create(R, spec, &mo, pt_backend_cpu(), 1));
    REQUIRE_OK(pt_model_init(R, 7));
    for (int64_t i = 0; i < R->nbuf; i++) R->buf[i] = 0.5f + 0.001f * (float)i;
    pt_optim_config cfg;
    REQUIRE_OK(pt_optim_config_parse(&cfg, "adam"));
    REQUIRE_OK(pt_optim_create(RO, &cfg, pt_backend_cpu(), R->numel));
    for (int k = 0; k < RO->nstates; k++)
        for (int64_t i = 0; i < R->numel; i++)
            RO->state[k][i] = (float)(k + 1) * sinf(0.37f * (float)i) + 1e-4f * (float)i;
    RO->t = 42;
}

static void grid_of(int T, int *t, int *D, int *dpr)
{
    *t = rank % T, *D = nranks / T, *dpr = rank / T;
}

static int run_save(const char *dir)
{
    for (int mi = 0; mi < NMODELS; mi++) {
        pt_model R;
        pt_optimizer RO;
        make_ref(models[mi].spec, &R, &RO);
        char path[PT_PATH_MAX + 160];
        pt_ckpt_meta meta = {.step = 5, .seed = 7, .dp_size = nranks, .pp_size = 1};
        snprintf(meta.config, sizeof meta.config, "model = %s\n", models[mi].spec);
        for (int T = 1; T <= nranks && T <= 4; T *= 2) {
            if (nranks % T) continue;
            for (int zero = 0; zero < 2; zero++) {
                int t, D, dpr;
                grid_of(T, &t, &D, &dpr);
                shard *s = make_shard(&R, &RO, T, t, D, dpr, zero, 1, models[mi].real);
                pt_ckpt_dist dist = {dpr, D, t, T};
                meta.tp_size = T, meta.dp_size = D, meta.zero = zero;
                snprintf(path, sizeof path, "%s/%s_np%d_t%d_z%d", dir, models[mi].name, nranks, T, zero);
                REQUIRE_OK(pt_ckpt_save_dist(MPI_COMM_WORLD, path, &s->m, &s->o, &meta, NULL, &dist, NULL));
                free_shard(s);
            }
        }
        /* the tp = 1 API of before, on the serial model (ZeRO-1 shards when more ranks) */
        shard *s = make_shard(&R, &RO, 1, 0, nranks, rank, nranks > 1, 1, 0);
        meta.tp_size = 1, meta.dp_size = nranks, meta.zero = 0;
        snprintf(path, sizeof path, "%s/%s_np%d_old", dir, models[mi].name, nranks);
        REQUIRE_OK(pt_ckpt_save(MPI_COMM_WORLD, path, &s->m, &s->o, &meta, NULL));
        free_shard(s);
        pt_optim_destroy(&RO);
        pt_model_destroy(&R);
    }
    if (rank == 0) printf("ok: saved %d models at every grid of %d ranks\n", NMODELS, nranks);
    return 0;
}

static size_t family_len(const char *name) { return strcspn(name, "-"); }

/* Whether directory `dir` (NAME_np...) holds a model of the family of `name` (its first fl
 * characters). */
static int in_family(const char *dir, const char *name, size_t fl)
{
    return !strncmp(dir, name, fl) && (dir[fl] == '_' || dir[fl] == '-');
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The checkpoint directories of DIR, sorted (every rank sees the same list). */
static int list_dirs(const char *dir, char names[][128], int max)
{
    DIR *d = opendir(dir);
    REQUIRE(d, "cannot open %s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max)
        if (e->d_name[0] != '.' && strlen(e->d_name) < 128) snprintf(names[n++], 128, "%.127s", e->d_name);
    closedir(d);
    char *ptrs[256];
    for (int i = 0; i < n; i++) ptrs[i] = names[i];
    qsort(ptrs, (size_t)n, sizeof *ptrs, cmp_names);
    static char sorted[256][128];
    for (int i = 0; i < n; i++) memcpy(sorted[i], ptrs[i], 128);
    memcpy(names, sorted, sizeof(char[128]) * (size_t)n);
    return n;
}

static int run_load(const char *dir)
{
    static char names[256][128];
    const int n = list_dirs(dir, names, 256);
    int loads = 0;
    for (int mi = 0; mi < NMODELS; mi++) {
        pt_model R;
        pt_optimizer RO;
        make_ref(models[mi].spec, &R, &RO);
        const size_t ml = family_len(models[mi].name);
        for (int f = 0; f < n; f++) {
            if (!in_family(names[f], models[mi].name, ml)) continue;
            char d[PT_PATH_MAX + 160], path[PT_PATH_MAX];
            snprintf(d, sizeof d, "%.3000s/%.127s", dir, names[f]);
            REQUIRE_OK(pt_ckpt_resolve(d, path, sizeof path));
            const size_t nl = strcspn(names[f], "_");
            int wT = 1, wZ = 0, wP = 0;
            const int old = strstr(names[f], "_old") != NULL;
            if (!old) sscanf(names[f] + nl, "_np%d_t%d_z%d", &wP, &wT, &wZ);
            for (int T = 1; T <= nranks && T <= 4; T *= 2) {
                if (nranks % T) continue;
                for (int zero = 0; zero < 2; zero++) {
                    int t, D, dpr;
                    grid_of(T, &t, &D, &dpr);
                    shard *got = make_shard(&R, &RO, T, t, D, dpr, zero, 0, models[mi].real);
                    shard *want = make_shard(&R, &RO, T, t, D, dpr, zero, 1, models[mi].real);
                    pt_ckpt_dist dist = {dpr, D, t, T};
                    pt_ckpt_meta meta;
                    pt_status st = pt_ckpt_load_dist(MPI_COMM_WORLD, path, &got->m, &got->o, &meta, &dist);
                    CHECK(st == PT_OK, "%s at tp %d dp %d zero %d: %s", names[f], T, D, zero, pt_error_message());
                    if (st == PT_OK) {
                        int bad = memcmp(got->m.w, want->m.w, sizeof(float) * (size_t)want->m.numel) != 0;
                        bad |= memcmp(got->m.buf, want->m.buf, sizeof(float) * (size_t)R.nbuf) != 0;
                        for (int k = 0; k < RO.nstates; k++)
                            bad |= memcmp(got->o.state[k], want->o.state[k], sizeof(float) * (size_t)want->o.n) != 0;
                        bad |= got->o.t != RO.t;
                        CHECK(!bad, "%s loaded at tp %d dp %d zero %d (rank %d): not bitwise the serial model's",
                              names[f], T, D, zero, rank);
                        CHECK(meta.step == 5 && meta.tp_size == wT && meta.pp_size == 1 &&
                                  (old || (meta.zero == wZ && meta.dp_size * meta.tp_size == wP)),
                              "%s: metadata step %lld dp %d tp %d pp %d zero %d", names[f],
                              (long long)meta.step, meta.dp_size, meta.tp_size, meta.pp_size, meta.zero);
                    }
                    loads++;
                    free_shard(got), free_shard(want);
                }
            }
        }
        pt_optim_destroy(&RO);
        pt_model_destroy(&R);
    }
    if (rank == 0 && !test_failures) printf("ok: %d loads at %d ranks, every tensor bitwise\n", loads, nranks);
    return loads > 0 ? 0 : 1;
}

/* Rank 0 alone: checksums and bytes are the same in every file. */
static int run_crc(const char *dir)
{
    static char names[256][128];
    const int n = list_dirs(dir, names, 256);
    int files = 0, datasets = 0;
    for (int mi = 0; mi < NMODELS; mi++) {
        pt_model R;
        pt_optimizer RO;
        make_ref(models[mi].spec, &R, &RO);
        if (strchr(models[mi].name, '-')) continue; /* its files are the family's */
        const size_t ml = family_len(models[mi].name);
        char first[PT_PATH_MAX + 160] = "";
        for (int f = 0; f < n; f++) {
            if (!in_family(names[f], models[mi].name, ml)) continue;
            char d[PT_PATH_MAX + 160], path[PT_PATH_MAX];
            snprintf(d, sizeof d, "%.3000s/%.127s", dir, names[f]);
            REQUIRE_OK(pt_ckpt_resolve(d, path, sizeof path));
            pt_ckpt_meta meta;
            CHECK(pt_ckpt_verify(path, &meta) == PT_OK, "%s: %s", path, pt_error_message());
            files++;
            if (!first[0]) {
                snprintf(first, sizeof first, "%s", path);
                continue;
            }
            /* every parameter and state dataset against the first file's */
            hid_t fa = H5Fopen(first, H5F_ACC_RDONLY, H5P_DEFAULT), fb = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
            REQUIRE(fa >= 0 && fb >= 0, "cannot open %s or %s", first, path);
            for (int g = 0; g < 3 + (R.nbuffers > 0); g++)
                for (int i = 0; i < (g == 3 ? R.nbuffers : R.nparams); i++) {
                    char name[256];
                    const char *pn = g == 3 ? R.buffers[i].name : R.params[i].name;
                    if (g == 0) snprintf(name, sizeof name, "params/%s", pn);
                    else if (g == 3) snprintf(name, sizeof name, "buffers/%s", pn);
                    else snprintf(name, sizeof name, "optim/%s/%s", RO.state_names[g - 1], pn);
                    long long ca = -1, cb = -2;
                    hid_t da = H5Dopen2(fa, name, H5P_DEFAULT), db = H5Dopen2(fb, name, H5P_DEFAULT);
                    REQUIRE(da >= 0 && db >= 0, "%s missing in %s or %s", name, first, path);
                    hid_t aa = H5Aopen(da, "crc32", H5P_DEFAULT), ab = H5Aopen(db, "crc32", H5P_DEFAULT);
                    H5Aread(aa, H5T_NATIVE_LLONG, &ca), H5Aread(ab, H5T_NATIVE_LLONG, &cb);
                    H5Aclose(aa), H5Aclose(ab);
                    const int64_t ne = g == 3 ? R.buffers[i].numel : R.params[i].numel;
                    float *xa = malloc(sizeof(float) * (size_t)ne), *xb = malloc(sizeof(float) * (size_t)ne);
                    REQUIRE(xa && xb, "out of memory");
                    REQUIRE(H5Dread(da, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, xa) >= 0 &&
                                H5Dread(db, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, xb) >= 0,
                            "cannot read %s", name);
                    CHECK(ca == cb, "%s: crc32 %lld in %s, %lld in %s", name, ca, first, cb, path);
                    CHECK(!memcmp(xa, xb, sizeof(float) * (size_t)ne), "%s: bytes differ in %s and %s", name, first, path);
                    free(xa), free(xb);
                    H5Dclose(da), H5Dclose(db);
                    datasets++;
                }
            H5Fclose(fa), H5Fclose(fb);
        }
        pt_optim_destroy(&RO);
        pt_model_destroy(&R);
    }
    if (!test_failures) printf("ok: %d files pass pt_ckpt_verify; %d datasets have the same crc32 and bytes as the "
           "first file of their model\n", files, datasets);
    return files > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    for (int lg = 1; lg < 3; lg++) { /* tp groups of 2 and 4 neighbouring ranks */
        const int T = 1 << lg;
        if (nranks % T) continue;
        MPI_Comm_split(MPI_COMM_WORLD, rank / T, rank % T, &tpc_mpi[lg]);
        REQUIRE_OK(pt_comm_init(&tpc[lg], tpc_mpi[lg])); /* keeps the communicator */
        have_tpc[lg] = 1;
    }
    int rc = 2;
    if (argc == 3 && !strcmp(argv[1], "save")) rc = run_save(argv[2]);
    else if (argc == 3 && !strcmp(argv[1], "load")) rc = run_load(argv[2]);
    else if (argc == 3 && !strcmp(argv[1], "crc")) rc = run_crc(argv[2]);
    else if (rank == 0) fprintf(stderr, "usage: t_ckpt_reshard save|load|crc DIR\n");
    if (test_failures) {
        fprintf(stderr, "t_ckpt_reshard %s (rank %d of %d): %d of %d checks failed\n", argc > 1 ? argv[1] : "",
                rank, nranks, test_failures, test_checks);
        rc = 1;
    }
    for (int lg = 1; lg < 3; lg++)
        if (have_tpc[lg]) pt_comm_free(&tpc[lg]), MPI_Comm_free(&tpc_mpi[lg]);
    MPI_Finalize();
    return rc;
}
