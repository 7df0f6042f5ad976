/* Loss scaling for fp16 training (Micikevicius et al. 2018; docs/MIXED_PRECISION.md): the loss
 * gradient is multiplied by a scale S so that small gradients survive fp16's range, and the
 * parameter gradients are divided by S again before anything reads them (clipping, the norm,
 * the update). Dynamic: S starts at 2^16, doubles after `window` consecutive steps without an
 * Inf/NaN gradient and halves on every step that has one, which is skipped (no update). The
 * decision is the training loop's, agreed over every rank; this is only the state machine. */
#ifndef PARATRAIN_LOSS_SCALE_H
#define PARATRAIN_LOSS_SCALE_H

#include <stdbool.h>
#include <stdint.h>

#include "paratrain/error.h"

typedef enum { PT_LOSS_SCALE_NONE = 0, PT_LOSS_SCALE_STATIC, PT_LOSS_SCALE_DYNAMIC } pt_loss_scale_mode;

#define PT_LOSS_SCALE_INIT 65536.0     /* 2^16 */
#define PT_LOSS_SCALE_WINDOW 2000      /* clean steps before the scale doubles */
#define PT_LOSS_SCALE_MIN (1.0 / 16777216.0)/* 2^-24: below it an fp16 gradient is all zeros */
#define PT_LOSS_SCALE_MAX 16777216.0   /* 2^24 */

typedef struct {
    pt_loss_scale_mode mode;
    double scale;       /* S: 1 when mode is NONE */
    int64_t good_steps; /* consecutive overflow-free steps since the last change of S */
    int64_t window;     /* dynamic: good_steps that double S */
    int64_t skipped;    /* steps skipped for an overflow, over the run (resumes keep it) */
} pt_loss_scaler;

/* --loss-scale text: "dynamic", "none", or a positive finite VALUE (static). "" is the
 * precision's default: dynamic for fp16, none otherwise. Messages name the flag. */
pt_status pt_loss_scale_parse(const char *text, bool fp16, pt_loss_scale_mode *mode,
                              double *value);
void pt_loss_scale_init(pt_loss_scaler *ls, pt_loss_scale_mode mode, double value,
                        int64_t window);
/* After a step whose gradients were (overflow) or were not all finite on every rank: returns
 * true when the step's update is to be applied; adjusts S (dynamic) and the counters. A static
 * scale never changes, but its overflowing steps are skipped too. */
bool pt_loss_scale_step(pt_loss_scaler *ls, bool overflow);

#endif
