/* pt-prep kjv-lm and kjv-books: the King James Bible (Debian's bible-kjv-text, decoded by
 * `bible -f 'Gen1:1-Rev22:21'`) to shards of byte tokens.
 *
 * Input: one verse per line, "<book><chapter>:<verse> <text>", books abbreviated as `bible`
 * prints them (the table below, in canonical order). Every line is checked; the first bad one
 * stops the tool with its line number.
 *
 * kjv-lm    the verses' text, each followed by '\n', cut into windows of ctx + 1 bytes with
 *           stride ctx (input t and target t + 1 overlap by one byte), split by book so no verse
 *           of a validation or test book is trained on: validation Ruth, Ecclesiastes, Mark,
 *           Galatians; test Esther, Lamentations, John, Philippians; train the other 58 books.
 * kjv-books one sample per verse: its first ctx bytes, zero-padded; the label is the book group
 *           (docs/DATA_FORMAT.md). A chapter is held out whole: Philox(seed, split stream,
 *           book * 1000 + chapter) < 0.1 sends it to test, < 0.2 to validation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/data.h"
#include "paratrain/rng.h"
#include "prep.h"

static const char *const BOOKS[66] = {
    "Ge",   "Exo",  "Lev",  "Num",   "Deu",  "Josh", "Jdgs", "Ruth", "1Sm",  "2Sm",   "1Ki",
    "2Ki",  "1Chr", "2Chr", "Ezra",  "Neh",  "Est",  "Job",  "Psa",  "Prv",  "Eccl",  "SSol",
    "Isa",  "Jer",  "Lam",  "Eze",   "Dan",  "Hos",  "Joel", "Amos", "Obad", "Jonah", "Mic",
    "Nahum", "Hab", "Zep",  "Hag",   "Zec",  "Mal",  "Mat",  "Mark", "Luke", "John",  "Acts",
    "Rom",  "1Cor", "2Cor", "Gal",   "Eph",  "Phi",  "Col",  "1Th",  "2Th",  "1Tim",  "2Tim",
    "Titus", "Phmn", "Heb", "Jas",   "1Pet", "2Pet", "1Jn",  "2Jn",  "3Jn",  "Jude",  "Rev"};

/* Book groups: Law (Genesis-Deuteronomy), History (Joshua-Esther), Poetry/Wisdom (Job-Song of
 * Solomon), Prophets (Isaiah-Malachi), Gospels/Acts (Matthew-Acts), Epistles/Revelation. */
static const int GROUP_START[7] = {0, 5, 17, 22, 39, 44, 66};
static const char *const GROUP_NAMES =
    "Law,History,Poetry/Wisdom,Prophets,Gospels/Acts,Epistles/Revelation";

static int book_group(int b)
{
    int g = 0;
    while (b >= GROUP_START[g + 1]) g++;
    return g;
}

/* split of a book for kjv-lm: 0 train, 1 val, 2 test */
static int lm_split(int b)
{
    static const int val[] = {7, 20, 40, 47}, test[] = {16, 24, 42, 49};
    for (int i = 0; i < 4; i++)
        if (b == val[i]) return 1;
    for (int i = 0; i < 4; i++)
        if (b == test[i]) return 2;
    return 0;
}

typedef struct {
    int book, chapter;
    const char *text;
    int len;
} verse;

static pt_status parse(const char *path, char **buf_out, verse **vs_out, int64_t *nv_out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return PT_ERR(PT_ERR_IO, "make it with: bible -f 'Gen1:1-Rev22:21' > FILE (package bible-kjv)",
                      "cannot open KJV text '%s': %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size <= 0 || size > (64L << 20)) {
        fclose(f);
        return PT_ERR(PT_ERR_FORMAT, "expected the ~4.4 MB text of `bible -f 'Gen1:1-Rev22:21'`",
                      "'%s' is %s", path, size <= 0 ? "empty" : "larger than 64 MiB");
    }
    char *buf = malloc((size_t)size + 1);
    verse *vs = malloc(sizeof(verse) * (size_t)(size / 4 + 1));
    if (!buf || !vs || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        fclose(f), free(buf), free(vs);
        return PT_ERR(PT_ERR_IO, NULL, "cannot read '%s'", path);
    }
    fclose(f);
    buf[size] = '\0';
    int64_t nv = 0, line = 0;
    pt_status st = PT_OK;
    /* Lines are bounded by the file size, not by NUL: a NUL byte (binary data) must make its
     * line fail the verse check below, not end the text early. */
    char *const stop = buf + size;
    for (char *p = buf; p < stop && st == PT_OK;) {
        char *eol = memchr(p, '\n', (size_t)(stop - p));
        if (!eol) eol = stop;
        line++;
        char *end = eol;
        if (end > p && end[-1] == '\r') end--;
        if (end == p) { /* blank line */
            p = eol < stop ? eol + 1 : eol;
            continue;
        }
        /* book: an optional leading digit, then letters */
        char *q = p;
        if (*q >= '1' && *q <= '3') q++;
        while ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z')) q++;
        int book = -1;
        for (int b = 0; b < 66; b++)
            if ((size_t)(q - p) == strlen(BOOKS[b]) && !strncmp(p, BOOKS[b], (size_t)(q - p))) book = b;
        long ch = 0, vn = 0;
        char *r = q;
        if (book >= 0) ch = strtol(q, &r, 10);
        int ok = book >= 0 && r > q && ch > 0 && *r == ':';
        if (ok) {
            char *s = r + 1;
            vn = strtol(s, &r, 10);
            ok = r > s && vn > 0 && *r == ' ' && r + 1 < end;
        }
        for (char *c = r + 1; ok && c < end; c++)
            if (*c == '\0') ok = 0;
        if (!ok) {
            int shown = (int)(end - p < 40 ? end - p : 40);
            for (int c = 0; c < shown; c++) /* quote it printable */
                if ((unsigned char)p[c] < 32 || (unsigned char)p[c] > 126) p[c] = '?';
            st = PT_ERR(PT_ERR_FORMAT,
                        "each line must be '<book><chapter>:<verse> <text>' as `bible -f` prints it",
                        "'%s' line %lld is not a verse: '%.*s'%s", path, (long long)line, shown, p,
                        end - p > 40 ? "..." : "");
            break;
        }
        vs[nv].book = book, vs[nv].chapter = (int)ch;
        vs[nv].text = r + 1, vs[nv].len = (int)(end - (r + 1));
        nv++;
        p = eol < stop ? eol + 1 : eol;
    }
    if (st == PT_OK && nv == 0)
        st = PT_ERR(PT_ERR_FORMAT, NULL, "'%s' holds no verses", path);
    if (st != PT_OK) {
        free(buf), free(vs);
        return st;
    }
    *buf_out = buf, *vs_out = vs, *nv_out = nv;
    return PT_OK;
}

pt_status pt_prep_kjv(const pt_prep_options *o, bool books, int ctx)
{
    if (ctx < 2 || ctx > 65535) return PT_ERR(PT_ERR_ARG, NULL, "--ctx must be in 2..65535");
    char *buf = NULL;
    verse *vs = NULL;
    int64_t nv = 0;
    PT_TRY(parse(o->src_dir, &buf, &vs, &nv));
    pt_status st = PT_OK;
    uint8_t *data = NULL, *labels = NULL;
    int64_t *rows = NULL;
    pt_prep_split sp[3] = {{0}};
    const int S = books ? ctx : ctx + 1;
    if (books) {
        data = calloc((size_t)nv, (size_t)S);
        labels = malloc((size_t)nv);
        rows = malloc(sizeof(int64_t) * (size_t)nv);
        if (!data || !labels || !rows) {
            st = PT_ERR(PT_ERR_NOMEM, NULL, "no memory for %lld verses", (long long)nv);
            goto out;
        }
        int64_t cnt[3] = {0, 0, 0};
        int *which = malloc(sizeof(int) * (size_t)nv);
        if (!which) {
            st = PT_ERR(PT_ERR_NOMEM, NULL, "no memory for %lld verses", (long long)nv);
            goto out;
        }
        for (int64_t i = 0; i < nv; i++) {
            memcpy(data + i * S, vs[i].text, (size_t)(vs[i].len < S ? vs[i].len : S));
            labels[i] = (uint8_t)book_group(vs[i].book);
            float u = pt_rng_uniform(o->seed, PT_STREAM_SPLIT,
                                     (uint64_t)vs[i].book * 1000 + (uint64_t)vs[i].chapter);
            which[i] = u < 0.1f ? 2 : u < 0.2f ? 1 : 0;
            cnt[which[i]]++;
        }
        int64_t pos[3] = {0, cnt[0], cnt[0] + cnt[1]};
        for (int k = 0; k < 3; k++) sp[k].rows = rows + pos[k], sp[k].n = cnt[k];
        for (int64_t i = 0; i < nv; i++) rows[pos[which[i]]++] = i;
        free(which);
        for (int k = 0; k < 3; k++) sp[k].data = data, sp[k].labels = labels;
    } else {
        int64_t bytes[3] = {0, 0, 0};
        for (int64_t i = 0; i < nv; i++) bytes[lm_split(vs[i].book)] += vs[i].len + 1;
        int64_t win[3], total = 0;
        for (int k = 0; k < 3; k++) total += win[k] = bytes[k] > ctx ? (bytes[k] - 1) / ctx : 0;
        uint8_t *text = malloc((size_t)(bytes[0] + bytes[1] + bytes[2] + 1));
        data = malloc((size_t)(total ? total : 1) * (size_t)S);
        labels = calloc((size_t)(total ? total : 1), 1);
        rows = malloc(sizeof(int64_t) * (size_t)(total ? total : 1));
        if (!text || !data || !labels || !rows) {
            free(text);
            st = PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the token stream");
            goto out;
        }
        int64_t row = 0;
        for (int k = 0; k < 3; k++) {
            int64_t n = 0;
            for (int64_t i = 0; i < nv; i++) /* the split's text, in canonical order */
                if (lm_split(vs[i].book) == k) {
                    memcpy(text + n, vs[i].text, (size_t)vs[i].len);
                    n += vs[i].len;
                    text[n++] = '\n';
                }
            sp[k].rows = rows + row, sp[k].n = win[k];
            for (int64_t w = 0; w < win[k]; w++, row++) {
                memcpy(data + row * S, text + w * ctx, (size_t)S);
                rows[row] = row;
            }
        }
        free(text);
        for (int k = 0; k < 3; k++) sp[k].data = data, sp[k].labels = labels;
        if (win[0] == 0) {
            st = PT_ERR(PT_ERR_ARG, "lower --ctx: the input is too short for one training window",
                        "'%s': the training books hold fewer than %d bytes", o->src_dir, ctx + 1);
            goto out;
        }
    }
    {
        const pt_prep_meta meta = {.source = books ? "kjv-books" : "kjv-lm",
                                   .class_names = books ? GROUP_NAMES : "bytes 0-255",
                                   .num_classes = books ? 6 : 256, .h = 1, .w = S, .tokens = 1};
        st = pt_prep_write(o, sp, &meta);
    }
out:
    free(buf), free(vs), free(data), free(labels), free(rows);
    return st;
}
