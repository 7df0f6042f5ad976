/* pt-prep: turns datasets into paratrain's HDF5 shards (docs/DATA_FORMAT.md). Serial.
 *
 * Exit codes (paratrain's rule): 0 success; 2 a usage error (an unknown option or dataset, a
 * missing or malformed value, values that do not fit each other or the source data); 1 any
 * other error (files missing, unreadable or damaged, no space). */
#include <errno.h>
#include <limits.h>
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
          "  --limit N    keep only the first N training and test examples (small test data);\n"
          "               --val must then be below N\n"
          "  --seed N     seed of the validation split [1]\n"
          "  --float32    store images as float32 in [0,1] instead of uint8\n"
          "\n"
          "       pt-prep kjv-lm    [--src FILE] --out DIR [--ctx N] [--shards N]\n"
          "       pt-prep kjv-books [--src FILE] --out DIR [--ctx N] [--shards N] [--seed N]\n"
          "\n"
          "  The King James Bible, one verse per line as `bible -f 'Gen1:1-Rev22:21'` prints it\n"
          "  (Debian packages bible-kjv and bible-kjv-text).\n"
          "  kjv-lm: byte tokens in windows of N+1 bytes, split by book (language modelling).\n"
          "  kjv-books: one verse per sample (first N bytes), labelled with its book group;\n"
          "  test and validation verses come from held-out chapters. docs/DATA_FORMAT.md.\n"
          "  --src FILE   the text [run `bible` into DIR/kjv.txt]\n"
          "  --ctx N      tokens per sample: context length / verse length [128]\n",
          fp);
}

static int parse_i64(const char *flag, const char *v, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi || v[0] == ' ' || v[0] == '+') {
        fprintf(stderr, "pt-prep: error: %s wants an integer in %lld..%lld, got '%s'\n", flag, lo,
                hi, v);
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
    const bool kjv_lm = !strcmp(argv[1], "kjv-lm"), kjv_books = !strcmp(argv[1], "kjv-books");
    if (strcmp(argv[1], "fashion-mnist") != 0 && !kjv_lm && !kjv_books) {
        fprintf(stderr, "pt-prep: error: unknown dataset '%s' (known: fashion-mnist, kjv-lm, "
                        "kjv-books)\n", argv[1]);
        return 2;
    }
    pt_prep_options o = {.src_dir = kjv_lm || kjv_books ? NULL : "/usr/share/datasets/fashion-mnist",
                         .shards = 4, .val_count = 6000, .seed = 1};
    long long ctx = 128;
    int val_given = 0;
    /* the options of each dataset (usage above) */
    const char *takes = kjv_lm      ? " --src --out --ctx --shards "
                        : kjv_books ? " --src --out --ctx --shards --seed "
                                    : " --src --out --shards --val --limit --seed --float32 ";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x;
        if (!strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        /* an option this dataset does not take is refused, not read as one wanting a value */
        char word[64];
        snprintf(word, sizeof word, " %s ", a);
        if (strlen(a) > 48 || !strstr(takes, word)) {
            fprintf(stderr, "pt-prep: error: unknown option '%s' for %s (it takes:%.*s; see --help)\n",
                    a, argv[1], (int)strlen(takes) - 1, takes);
            return 2;
        }
        if (!strcmp(a, "--float32")) {
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
        else if (!strcmp(a, "--shards")) { if (!parse_i64(a, v, 1, 100000, &x)) return 2; o.shards = (int)x; }
        else if (!strcmp(a, "--val")) { if (!parse_i64(a, v, 0, 1LL << 40, &x)) return 2; o.val_count = x; val_given = 1; }
        else if (!strcmp(a, "--limit")) { if (!parse_i64(a, v, 1, 1LL << 40, &x)) return 2; o.limit = x; }
        else if (!strcmp(a, "--ctx")) { if (!parse_i64(a, v, 2, 65535, &ctx)) return 2; }
        else if (!strcmp(a, "--seed")) { if (!parse_i64(a, v, 0, LLONG_MAX, &x)) return 2; o.seed = (uint64_t)x; }
    }
    if (o.limit > 0 && o.val_count >= o.limit) {
        if (!val_given) o.val_count = o.limit / 10; /* the default 6000 does not fit: a tenth */
        else {
            fprintf(stderr, "pt-prep: error: --val %lld is not below --limit %lld: no training "
                            "examples would remain\n", (long long)o.val_count, (long long)o.limit);
            return 2;
        }
    }
    if (!o.out_dir) {
        fprintf(stderr, "pt-prep: error: --out DIR is required (see --help)\n");
        return 2;
    }
    pt_status st;
    if (kjv_lm || kjv_books) {
        char src[PT_PATH_MAX + 16];
        if (!o.src_dir) { /* decode the Debian package's text with its own reader */
            snprintf(src, sizeof src, "mkdir -p '%s' && bible -f 'Gen1:1-Rev22:21' > '%s/kjv.txt'",
                     o.out_dir, o.out_dir);
            if (system(src) != 0) {
                fprintf(stderr, "pt-prep: error: `bible -f` failed (hint: apt-get install "
                                "bible-kjv bible-kjv-text, or pass --src FILE)\n");
                return 1;
            }
            snprintf(src, sizeof src, "%s/kjv.txt", o.out_dir);
            o.src_dir = src;
        }
        st = pt_prep_kjv(&o, kjv_books, (int)ctx);
    } else {
        st = pt_prep_fashion_mnist(&o);
    }
    if (st != PT_OK) {
        fprintf(stderr, "pt-prep: error: %s\n", pt_error_message());
        return st == PT_ERR_ARG ? 2 : 1;
    }
    printf("pt-prep: wrote %s/index.h5 and its shards\n", o.out_dir);
    return 0;
}
