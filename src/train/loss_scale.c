/* The loss scaler's state machine (paratrain/loss_scale.h). Powers of two keep the scaling and
 * the unscaling exact: S * g and (S * g) / S are g again, bit for bit, unless S * g overflows. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/loss_scale.h"

pt_status pt_loss_scale_parse(const char *text, bool fp16, pt_loss_scale_mode *mode,
                              double *value)
{
    *value = 1.0;
    if (!text[0]) {
        *mode = fp16 ? PT_LOSS_SCALE_DYNAMIC : PT_LOSS_SCALE_NONE;
        if (fp16) *value = PT_LOSS_SCALE_INIT;
        return PT_OK;
    }
    if (!strcmp(text, "none")) {
        *mode = PT_LOSS_SCALE_NONE;
        return PT_OK;
    }
    if (!strcmp(text, "dynamic")) {
        *mode = PT_LOSS_SCALE_DYNAMIC, *value = PT_LOSS_SCALE_INIT;
        return PT_OK;
    }
    char *end = NULL;
    const double v = strtod(text, &end);
    if (end == text || *end || !isfinite(v) || v <= 0.0)
        return PT_ERR(PT_ERR_ARG, "give dynamic, none, or a positive number such as 1024",
                      "bad --loss-scale '%s'", text);
    *mode = PT_LOSS_SCALE_STATIC, *value = v;
    return PT_OK;
}

void pt_loss_scale_init(pt_loss_scaler *ls, pt_loss_scale_mode mode, double value, int64_t window)
{
    memset(ls, 0, sizeof *ls);
    ls->mode = mode;
    ls->scale = mode == PT_LOSS_SCALE_NONE ? 1.0 : value;
    ls->window = window > 0 ? window : PT_LOSS_SCALE_WINDOW;
}

bool pt_loss_scale_step(pt_loss_scaler *ls, bool overflow)
{
    if (ls->mode == PT_LOSS_SCALE_NONE) return !overflow;
    if (overflow) {
        ls->skipped++;
        ls->good_steps = 0;
        if (ls->mode == PT_LOSS_SCALE_DYNAMIC && ls->scale * 0.5 >= PT_LOSS_SCALE_MIN)
            ls->scale *= 0.5;
        return false;
    }
    if (ls->mode == PT_LOSS_SCALE_DYNAMIC && ++ls->good_steps >= ls->window) {
        if (ls->scale * 2.0 <= PT_LOSS_SCALE_MAX) ls->scale *= 2.0;
        ls->good_steps = 0;
    }
    return true;
}
