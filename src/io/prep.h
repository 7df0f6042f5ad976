/* What every pt-prep dataset shares: the shard and index writer (prep_fashion_mnist.c). */
#ifndef PT_IO_PREP_H
#define PT_IO_PREP_H

#include "paratrain/data.h"

/* One split: rows[i] is the row of `data` (h*w bytes each) and of `labels` of sample i. */
typedef struct {
    const uint8_t *data, *labels;
    const int64_t *rows;
    int64_t n;
} pt_prep_split;

typedef struct {
    const char *source, *class_names;
    int num_classes, h, w;
    int tokens; /* samples are byte tokens: read as their values, not scaled to [0, 1] */
} pt_prep_meta;

/* Writes train, val and test (in that order in sp) and then, atomically, the index. */
pt_status pt_prep_write(const pt_prep_options *o, const pt_prep_split sp[3], const pt_prep_meta *meta);

#endif
