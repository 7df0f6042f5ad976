/* The data pipeline of training: opening the splits, this rank's rows of each global batch (the
 * batch is split over dp: every rank of a tp group reads the same rows), and augmentation. */
#include <stdlib.h>
#include <string.h>

#include "paratrain/rng.h"
#include "paratrain/train_state.h"
#include "paratrain/watchdog.h"

static pt_status open_split(pt_train_state *s, pt_dataset *d, const char *split, bool *have)
{
    /* val/test are optional: a data directory with an empty split simply has none. */
    *have = false;
    pt_watchdog_arm("collective HDF5 I/O", "opening the data shards (pt_dataset_open)", -1);
    pt_status st = pt_dataset_open(d, s->cfg->data, split, s->world, s->cfg->validate_data);
    pt_watchdog_disarm();
    if (st != PT_OK) return st;
    *have = d->count > 0;
    return PT_OK;
}

pt_status pt_train_open_data(pt_train_state *s)
{
    PT_TRY(open_split(s, &s->train, "train", &(bool){0}));
    PT_TRY(open_split(s, &s->val, "val", &s->have_val));
    return open_split(s, &s->test, "test", &s->have_test);
}

/* --augment: "none", "flip", "crop:P", "flip,crop:P" (either order). */
pt_status pt_train_parse_augment(pt_train_state *s)
{
    const char *spec = s->cfg->augment;
    pt_train_batch *b = &s->batch;
    b->aug_flip = false, b->aug_crop = 0;
    if (!strcmp(spec, "none") || !spec[0]) return PT_OK;
    char buf[32];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char *end = NULL;
        if (!strcmp(tok, "flip")) b->aug_flip = true;
        else if (!strncmp(tok, "crop:", 5) && (b->aug_crop = (int)strtol(tok + 5, &end, 10), 1) &&
                 end != tok + 5 && !*end && b->aug_crop > 0 && b->aug_crop < s->train.width)
            ;
        else
            return PT_ERR(PT_ERR_ARG, "give none, flip, crop:P or flip,crop:P (P pixels, 0 < P < width)",
                          "bad --augment '%s'", spec);
    }
    if (s->train.tokens || s->train.height < 2)
        return PT_ERR(PT_ERR_ARG, "drop --augment for text data",
                      "--augment flips and shifts images; '%s' holds %s", s->cfg->data,
                      s->train.tokens ? "tokens" : "1-D samples");
    b->aug_tmp = malloc(sizeof(float) * (size_t)s->train.sample_size);
    if (!b->aug_tmp) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for augmentation");
    return PT_OK;
}

/* Flips and shifts this rank's rows of the global batch. The draws are keyed by (seed, step,
 * position in the global batch), so a sample is augmented the same way whatever the grid,
 * and a resumed run repeats them. Samples are (C, H, W); shifted-in pixels are 0. */
static void augment_batch(pt_train_state *s)
{
    pt_train_batch *b = &s->batch;
    const int C = s->train.channels, H = s->train.height, W = s->train.width, P = b->aug_crop;
    for (int64_t r = 0; r < b->rows; r++) {
        uint32_t w[4];
        pt_rng_block(s->cfg->seed, PT_STREAM_AUGMENT,
                     (uint64_t)s->step * (uint64_t)s->cfg->batch + (uint64_t)(b->row_offset + r), w);
        const bool flip = b->aug_flip && (w[0] & 1u);
        const int dy = P ? (int)(w[1] % (uint32_t)(2 * P + 1)) - P : 0;
        const int dx = P ? (int)(w[2] % (uint32_t)(2 * P + 1)) - P : 0;
        if (!flip && !dy && !dx) continue;
        float *x = b->x + r * s->train.sample_size, *o = b->aug_tmp;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int xx = 0; xx < W; xx++) {
                    const int sy = y + dy, sx0 = xx + dx, sx = flip ? W - 1 - sx0 : sx0;
                    o[((int64_t)c * H + y) * W + xx] =
                        sy < 0 || sy >= H || sx0 < 0 || sx0 >= W ? 0.0f : x[((int64_t)c * H + sy) * W + sx];
                }
        memcpy(x, o, sizeof(float) * (size_t)s->train.sample_size);
    }
}

pt_status pt_train_batch_alloc(pt_train_state *s)
{
    pt_train_batch *b = &s->batch;
    const int64_t S = s->train.sample_size;
    b->x = malloc(sizeof(float) * (size_t)(b->rows * S + 1));
    b->y = malloc(sizeof(int32_t) * (size_t)(b->rows + 1));
    b->idx = malloc(sizeof(int64_t) * (size_t)(b->rows + 1));
    if (!b->x || !b->y || !b->idx) return PT_ERR(PT_ERR_NOMEM, NULL, "no memory for the batch");
    return pt_sampler_init(&s->sampler, s->train.count, s->cfg->seed, true);
}

pt_status pt_train_read_batch(pt_train_state *s)
{
    pt_train_batch *b = &s->batch;
    const int64_t epoch = s->step / s->steps_per_epoch, pos = s->step % s->steps_per_epoch;
    pt_sampler_set_epoch(&s->sampler, epoch);
    const int64_t *gb = s->sampler.perm + pos * s->cfg->batch;
    memcpy(b->idx, gb + b->row_offset, sizeof(int64_t) * (size_t)b->rows);
    pt_status st = pt_dataset_read(&s->train, b->idx, (int)b->rows, b->x, b->y);
    if (st == PT_OK && b->aug_tmp) augment_batch(s);
    return st;
}

void pt_train_data_free(pt_train_state *s)
{
    pt_sampler_free(&s->sampler);
    free(s->batch.x), free(s->batch.y), free(s->batch.idx), free(s->batch.aug_tmp);
    s->batch.x = NULL, s->batch.y = NULL, s->batch.idx = NULL, s->batch.aug_tmp = NULL;
    pt_watchdog_arm("collective HDF5 I/O", "closing the data shards (H5Fclose)", -1);
    pt_dataset_close(&s->train), pt_dataset_close(&s->val), pt_dataset_close(&s->test);
    pt_watchdog_disarm();
}
