/* pt-ckpt: inspect and compare checkpoints.
 *
 *   pt-ckpt info CKPT              attributes, the process grid that wrote it, datasets with
 *                                  their global shapes, checksum verification
 *   pt-ckpt diff A B [--tol X]     per-dataset max |a - b|; exit 0 when every dataset is within X
 *                                  (default 0: bitwise equal), 1 otherwise
 *
 * CKPT may be a file or a checkpoint directory (its latest). */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/ckpt.h"
#include "../io/h5util.h"

/* Every dataset path of a file, however many (a gpt with 7 layers and AdamW has 264) and however
 * long; sorted, so two files' lists merge in one pass. */
typedef struct {
    char **names;
    int n, cap;
    int nomem;
} name_list;

static herr_t collect(hid_t obj, const char *name, const pt_oinfo *info, void *op)
{
    (void)obj;
    name_list *l = op;
    if (info->type != H5O_TYPE_DATASET) return 0;
    if (l->n == l->cap) {
        const int cap = l->cap ? 2 * l->cap : 64;
        char **names = realloc(l->names, sizeof *names * (size_t)cap);
        if (!names) return l->nomem = 1, -1;
        l->names = names, l->cap = cap;
    }
    if (!(l->names[l->n] = strdup(name))) return l->nomem = 1, -1;
    l->n++;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_free(name_list *l)
{
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

/* 0, or 1 with a message when the file could not be walked whole */
static int list_datasets(hid_t f, const char *path, name_list *l)
{
    memset(l, 0, sizeof *l);
    if (PT_OVISIT(f, collect, l) < 0 || l->nomem) {
        fprintf(stderr, "pt-ckpt: error: cannot list the datasets of '%s'%s\n", path,
                l->nomem ? " (out of memory)" : "");
        list_free(l);
        return 1;
    }
    if (l->n) qsort(l->names, (size_t)l->n, sizeof *l->names, by_name);
    return 0;
}

static float *read_all(hid_t f, const char *name, hsize_t *n, char *shape, size_t shape_len,
                       long long *crc)
{
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) return NULL;
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[H5S_MAX_RANK];
    int nd = H5Sget_simple_extent_ndims(sp);
    if (nd < 0 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
        H5Sclose(sp), H5Dclose(ds);
        return NULL;
    }
    *n = 1;
    size_t off = (size_t)snprintf(shape, shape_len, "(");
    for (int i = 0; i < nd; i++) {
        *n *= dims[i];
        off += (size_t)snprintf(shape + off, shape_len - off, i ? ", %llu" : "%llu",
                                (unsigned long long)dims[i]);
    }
    snprintf(shape + off, shape_len - off, ")");
    H5Sclose(sp);
    float *buf = malloc(sizeof(float) * (*n ? *n : 1));
    if (buf && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        free(buf), buf = NULL;
    *crc = -1;
    if (H5Aexists(ds, "crc32") > 0) {
        hid_t a = H5Aopen(ds, "crc32", H5P_DEFAULT);
        H5Aread(a, H5T_NATIVE_LLONG, crc);
        H5Aclose(a);
    }
    H5Dclose(ds);
    return buf;
}

static hid_t open_arg(const char *arg, char *path)
{
    if (pt_ckpt_resolve(arg, path, PT_PATH_MAX) != PT_OK) {
        fprintf(stderr, "pt-ckpt: error: %s\n", pt_error_message());
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) fprintf(stderr, "pt-ckpt: error: cannot open '%s' as HDF5\n", path);
    return f;
}

static herr_t print_attr(hid_t loc, const char *name, const H5A_info_t *ainfo, void *op)
{
    (void)ainfo, (void)op;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    H5T_class_t cls = H5Tget_class(t);
    if (cls == H5T_STRING) {
        size_t n = H5Tget_size(t);
        char *s = calloc(n + 1, 1);
        H5Aread(a, t, s);
        if (strchr(s, '\n')) printf("  %-22s (text, %zu bytes)\n", name, strlen(s));
        else printf("  %-22s %s\n", name, s);
        free(s);
    } else if (cls == H5T_FLOAT) {
        double v;
        H5Aread(a, H5T_NATIVE_DOUBLE, &v);
        printf("  %-22s %g\n", name, v);
    } else {
        long long v;
        H5Aread(a, H5T_NATIVE_LLONG, &v);
        printf("  %-22s %lld\n", name, v);
    }
    H5Tclose(t);
    H5Aclose(a);
    return 0;
}

static int info(const char *arg)
{
    char path[PT_PATH_MAX];
    hid_t f = open_arg(arg, path);
    if (f < 0) return 1;
    printf("%s\n", path);
    H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, NULL, print_attr, NULL);
    pt_ckpt_meta meta;
    if (pt_ckpt_read_meta(path, &meta, NULL, 0, NULL, 0) != PT_OK) {
        fprintf(stderr, "pt-ckpt: error: %s\n", pt_error_message());
        H5Fclose(f);
        return 1;
    }
    /* the grid that wrote it; the tensors are stored whole (global shapes), whatever the grid */
    printf("grid: dp=%d tp=%d pp=%d zero=%d order=%s\n", meta.dp_size, meta.tp_size,
           meta.pp_size, meta.zero, meta.grid_order);
    printf("datasets (global shape):\n");
    name_list l;
    if (list_datasets(f, path, &l)) {
        H5Fclose(f);
        return 1;
    }
    int bad = 0;
    for (int i = 0; i < l.n; i++) {
        hsize_t n;
        char shape[96] = "(?)";
        long long crc;
        float *b = read_all(f, l.names[i], &n, shape, sizeof shape, &crc);
        int ok = b && crc >= 0 && (uint32_t)crc == pt_crc32(b, sizeof(float) * n);
        bad += !ok;
        printf("  /%-36s %-16s crc32 %s\n", l.names[i], shape, ok ? "ok" : "MISMATCH");
        free(b);
    }
    printf("%d datasets\n", l.n);
    list_free(&l);
    H5Fclose(f);
    return bad ? 1 : 0;
}

/* Both files are walked: a dataset present in only one of them is a difference. */
static int diff(const char *a, const char *b, double tol)
{
    char pa[PT_PATH_MAX], pb[PT_PATH_MAX];
    hid_t fa = open_arg(a, pa), fb = fa >= 0 ? open_arg(b, pb) : -1;
    if (fa < 0 || fb < 0) {
        if (fa >= 0) H5Fclose(fa);
        return 2;
    }
    name_list la, lb;
    if (list_datasets(fa, pa, &la) || list_datasets(fb, pb, &lb)) {
        list_free(&la);
        H5Fclose(fa), H5Fclose(fb);
        return 2;
    }
    int differ = 0, total = 0, ia = 0, ib = 0;
    double worst = 0.0;
    while (ia < la.n || ib < lb.n) {
        const int c = ia == la.n ? 1 : ib == lb.n ? -1 : strcmp(la.names[ia], lb.names[ib]);
        total++;
        if (c != 0) { /* only in one file */
            printf("  /%-36s only in %s\n", c < 0 ? la.names[ia] : lb.names[ib],
                   c < 0 ? "the first file" : "the second file");
            differ = 1;
            if (c < 0) ia++;
            else ib++;
            continue;
        }
        const char *name = la.names[ia];
        ia++, ib++;
        hsize_t na, nb;
        char sa[96] = "", sb[96] = "";
        long long ca, cb;
        float *x = read_all(fa, name, &na, sa, sizeof sa, &ca);
        float *y = read_all(fb, name, &nb, sb, sizeof sb, &cb);
        if (!x || !y || strcmp(sa, sb)) {
            printf("  /%-36s %s\n", name,
                   !x || !y ? "unreadable in one file" : "of another shape in each file");
            differ = 1;
        } else {
            double m = 0.0;
            hsize_t nbits = 0;
            for (hsize_t k = 0; k < na; k++) {
                double d = fabs((double)x[k] - (double)y[k]);
                if (d > m || d != d) m = d;
                nbits += memcmp(&x[k], &y[k], sizeof(float)) != 0;
            }
            if (m > worst || m != m) worst = m;
            if (!(m <= tol) || (tol == 0.0 && nbits)) differ = 1;
            printf("  /%-36s %-16s max|a-b| %.3e  elements differing %llu\n", name, sa, m,
                   (unsigned long long)nbits);
        }
        free(x), free(y);
    }
    printf("%s: max|a-b| %.3e over %d datasets (tolerance %g)\n", differ ? "DIFFERENT" : "EQUAL",
           worst, total, tol);
    list_free(&la), list_free(&lb);
    H5Fclose(fa), H5Fclose(fb);
    return differ;
}

int main(int argc, char **argv)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (argc >= 3 && !strcmp(argv[1], "info")) return info(argv[2]);
    if (argc >= 4 && !strcmp(argv[1], "diff")) {
        double tol = 0.0;
        if (argc == 6 && !strcmp(argv[4], "--tol")) tol = atof(argv[5]);
        else if (argc != 4) goto usage;
        return diff(argv[2], argv[3], tol);
    }
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        puts("usage: pt-ckpt info CKPT\n       pt-ckpt diff A B [--tol X]");
        return 0;
    }
usage:
    fputs("usage: pt-ckpt info CKPT\n       pt-ckpt diff A B [--tol X]\n", stderr);
    return 2;
}
