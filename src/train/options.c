/* Checks of the options that need the grid or the data: pt_train_config_check
 * (train_config.c) has checked everything a single configuration can show. Each check gives the
 * same answer on every rank (the grid and the data are the same everywhere). */
#include "paratrain/train_state.h"

pt_status pt_train_check_grid_options(pt_train_state *s)
{
    const pt_train_config *c = s->cfg;
    const int dp = s->dp_size;
    if (c->batch < dp || c->batch > (1 << 24))
        return PT_ERR(PT_ERR_ARG, "every data-parallel rank needs at least one sample per step",
                      "--batch %lld is outside [number of data-parallel ranks = %d, 2^24]",
                      (long long)c->batch, dp);
    if (c->reproducible) {
        const int64_t ch = pt_train_repro_chunk(c);
        if (ch <= 0 || c->batch % ((int64_t)dp * ch) != 0)
            return PT_ERR(PT_ERR_ARG, "choose --batch a multiple of data-parallel ranks x --repro-chunk",
                          "--reproducible splits the global batch %lld into chunks of %lld samples, "
                          "an equal number per data-parallel rank, but %d rank%s cannot share them "
                          "evenly",
                          (long long)c->batch, (long long)ch, dp, dp == 1 ? "" : "s");
        if (c->batch / ch > 128)
            return PT_ERR(PT_ERR_ARG, "raise --repro-chunk",
                          "--reproducible allows at most 128 chunks per step (the exact "
                          "accumulator's headroom); --batch %lld / --repro-chunk %lld is %lld",
                          (long long)c->batch, (long long)ch, (long long)(c->batch / ch));
    }
    return PT_OK;
}

pt_status pt_train_check_data_options(pt_train_state *s)
{
    const pt_train_config *c = s->cfg;
    s->steps_per_epoch = s->train.count / c->batch;
    if (s->steps_per_epoch == 0)
        return PT_ERR(PT_ERR_ARG, "lower --batch", "--batch %lld is larger than the %lld training samples",
                      (long long)c->batch, (long long)s->train.count);
    s->total_steps = c->max_steps > 0 ? c->max_steps : c->epochs * s->steps_per_epoch;
    if (s->total_steps <= 0) /* pt_train_config_check refused 0 and 0 already */
        return PT_ERR(PT_ERR_INTERNAL, NULL, "no steps to train (--epochs %lld, --max-steps %lld)",
                      (long long)c->epochs, (long long)c->max_steps);
    if (c->zero != 0 && c->zero != 1 && c->zero != -1)
        return PT_ERR(PT_ERR_ARG, "ZeRO stage 1 shards the optimizer state; 0 turns it off",
                      "--zero %lld is not supported (0 or 1)", (long long)c->zero);
    if (!(c->bucket_mb >= 0) || c->bucket_mb > 65536)
        return PT_ERR(PT_ERR_ARG, "give a size in MiB, 0 for no buckets", "--bucket-mb %g is out of range",
                      c->bucket_mb);
    return PT_OK;
}
