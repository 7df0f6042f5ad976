/* pt-prep: turns datasets into paratrain's HDF5 shards (docs/DATA_FORMAT.md). Serial. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/data.h"

static void usage(FILE *fp)
{
    fputs("usage: pt-prep fashion-mnist [--src DIR] --out DIR [--shards N] [--val N]\n"
          "                              [--limit N] [--seed N] [--float32]\n"
          "\n"
          "  --src DIR    IDX files, gzip'd or not [/usr/share/datasets/fashion-mnist]\n"
          "  --out DIR    output directory: index.h5, train/ val/ test/ shards\n"
          "  --shards N   shard files per split [4]\n"
          "  --val N      validation examples held out of the training set [6000]\n"
          "  --limit N    keep only the first N training and test examples (small test data)\n"
          "  --seed N     seed of the validation split [1]\n"
          "  --float32    store images as float32 in [0,1] instead of uint8\n",
          fp);
}

static int parse_i64(const char *flag, const char *v, long long lo, long long *out)
{
    char *end;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || x < lo) {
        fprintf(stderr, "pt-prep: error: %s wants an integer >= %lld, got '%s'\n", flag, lo, v);
        return 0;
    }
    *out = x;
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "fashion-mnist") != 0) {
        fprintf(stderr, "pt-prep: error: unknown dataset '%s' (known: fashion-mnist)\n", argv[1]);
        return 2;
    }
    pt_prep_options o = {.src_dir = "/usr/share/datasets/fashion-mnist",
                         .shards = 4, .val_count = 6000, .seed = 1};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x;
        if (!strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--float32")) {
            o.float32 = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "pt-prep: error: %s needs a value (see --help)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--src")) o.src_dir = v;
        else if (!strcmp(a, "--out")) o.out_dir = v;
        else if (!strcmp(a, "--shards")) { if (!parse_i64(a, v, 1, &x)) return 2; o.shards = (int)x; }
        else if (!strcmp(a, "--val")) { if (!parse_i64(a, v, 0, &x)) return 2; o.val_count = x; }
        else if (!strcmp(a, "--limit")) { if (!parse_i64(a, v, 1, &x)) return 2; o.limit = x; }
        else if (!strcmp(a, "--seed")) { if (!parse_i64(a, v, 0, &x)) return 2; o.seed = (uint64_t)x; }
        else {
            fprintf(stderr, "pt-prep: error: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!o.out_dir) {
        fprintf(stderr, "pt-prep: error: --out DIR is required (see --help)\n");
        return 2;
    }
    pt_status st = pt_prep_fashion_mnist(&o);
    if (st != PT_OK) {
        fprintf(stderr, "pt-prep: error: %s\n", pt_error_message());
        return 1;
    }
    printf("pt-prep: wrote %s/index.h5 and its shards\n", o.out_dir);
    return 0;
}
