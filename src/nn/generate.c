/* Sampling text from a byte-level language model (gpt). The model sees a window of its context
 * length: the prompt, left-aligned, and the tokens sampled so far; causal attention means the
 * padding after the last real token does not change its logits. When the window is full it slides
 * by one token. Each draw is Philox(seed, stream, token index), so a seed reproduces a sample.
 * The logits are backend memory: the row sampled from is copied to the host first. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/model.h"
#include "paratrain/rng.h"

enum { PT_STREAM_SAMPLE = 4 };

/* p: V floats of host scratch */
static int sample(const float *logits, int V, float temperature, int top_k, float u, float *p)
{
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    if (temperature <= 0.0f) return best; /* greedy */
    /* keep the top_k largest (all when top_k <= 0); ties broken by the lower token */
    float kth = -INFINITY;
    if (top_k > 0 && top_k < V) {
        memcpy(p, logits, sizeof(float) * (size_t)V);
        for (int k = 0; k < top_k; k++) { /* k-th largest by selection: V is small (bytes) */
            int at = -1;
            for (int v = 0; v < V; v++)
                if (p[v] > -INFINITY && (at < 0 || p[v] > p[at])) at = v;
            kth = p[at];
            p[at] = -INFINITY;
        }
    }
    double sum = 0.0;
    for (int v = 0; v < V; v++) {
        p[v] = logits[v] >= kth ? expf((logits[v] - logits[best]) / temperature) : 0.0f;
        sum += p[v];
    }
    double acc = 0.0, target = u * sum;
    int pick = best;
    for (int v = 0; v < V; v++) {
        acc += p[v];
        if (p[v] > 0.0f && acc >= target) {
            pick = v;
            break;
        }
    }
    return pick;
}

pt_status pt_generate(pt_model *m, const char *prompt, int ntokens, float temperature, int top_k,
                      uint64_t seed, unsigned char *out)
{
    const int T = m->targets, V = m->classes;
    if (T < 2 || m->input_size != T + 1)
        return PT_ERR(PT_ERR_ARG, "generate needs a gpt checkpoint",
                      "model '%s' is not a language model", m->spec);
    if (m->local_classes != m->classes) /* each tp rank holds a slice of the logits */
        return PT_ERR(PT_ERR_ARG, "generate with --tp 1 (a checkpoint loads on any grid)",
                      "generate does not run tensor-parallel (--tp %d)", m->tp_size);
    float *x = calloc((size_t)T + 1, sizeof(float));
    float *row = malloc(sizeof(float) * 2 * (size_t)V); /* the logits, and sample's scratch */
    if (!x || !row) {
        free(x), free(row);
        return PT_ERR(PT_ERR_NOMEM, NULL, "no memory");
    }
    const size_t plen = strlen(prompt);
    int len = 0;
    const size_t skip = plen > (size_t)T - 1 ? plen - ((size_t)T - 1) : 0; /* keep the tail */
    for (size_t i = skip; i < plen; i++) x[len++] = (float)(unsigned char)prompt[i];
    if (len == 0) x[len++] = (float)'\n'; /* an empty prompt starts a new line */
    pt_fwd_ctx ctx = {0};
    for (int i = 0; i < ntokens; i++) {
        const float *logits = pt_model_forward(m, x, 1, &ctx) + (int64_t)(len - 1) * V;
        m->be->to_host(row, logits, sizeof(float) * (size_t)V);
        const int tok = sample(row, V, temperature, top_k,
                               pt_rng_uniform(seed, PT_STREAM_SAMPLE, (uint64_t)i), row + V);
        out[i] = (unsigned char)tok;
        if (len == T) { /* slide */
            memmove(x, x + 1, sizeof(float) * (size_t)(T - 1));
            len--;
        }
        x[len++] = (float)tok;
    }
    free(x), free(row);
    return pt_model_status(m);
}
