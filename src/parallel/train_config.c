/* The option table: one row per training option. It drives command-line flags (--name value),
 * config files (name = value), --help, and the configuration text stored in every checkpoint. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/comm.h"
#include "paratrain/grid.h"
#include "paratrain/compress.h"
#include "paratrain/model.h"
#include "paratrain/optim.h"
#include "paratrain/loss_scale.h"
#include "paratrain/lowp.h"
#include "paratrain/ps.h"
#include "paratrain/train.h"
#include "compress.h"

typedef enum { OPT_STR, OPT_I64, OPT_U64, OPT_F64, OPT_BOOL } opt_type;

/* Range of a numeric option: [lo, hi], ends excluded by R_LO_OPEN / R_HI_OPEN; R_DEFAULT also
 * admits -1, "the optimizer's default". Every value is checked when it is set (flag, config file),
 * so a bad one is refused before any work starts, alike on every rank. */
enum { R_LO_OPEN = 1, R_HI_OPEN = 2, R_DEFAULT = 4 };

typedef struct {
    const char *name;
    opt_type type;
    size_t offset, size;
    double lo, hi;
    unsigned range;
    const char *help;
} opt_row;

#define INF HUGE_VAL
#define STEPS 1e12 /* the largest count of steps (or samples) any option takes */
#define ROW(name, type, field, help)                                                               \
    {name, type, offsetof(pt_train_config, field), sizeof(((pt_train_config *)0)->field), 0, 0, 0, help}
#define NUM(name, type, field, lo, hi, range, help)                                                \
    {name, type, offsetof(pt_train_config, field), sizeof(((pt_train_config *)0)->field), lo, hi,  \
     range, help}

static const opt_row rows[] = {
    ROW("data", OPT_STR, data, "directory of HDF5 shards written by pt-prep"),
    ROW("model", OPT_STR, model, "model spec: mlp:784-1024-1024-10, cnn, resnet, textcnn or gpt (keys like gpt:layers=4,d=256; docs/MODELS.md)"),
    ROW("activation", OPT_STR, activation, "mlp hidden activation: relu, gelu or tanh"),
    NUM("dropout", OPT_F64, dropout, 0, 1, R_HI_OPEN, "dropout probability (mlp: after each hidden activation; cnn, textcnn: before the classifier)"),
    ROW("augment", OPT_STR, augment, "training images: none, flip (horizontal, p = 0.5), crop:P "
                                     "(shift by up to P pixels, zero fill), or flip,crop:P"),
    ROW("optimizer", OPT_STR, optimizer, "sgd, momentum, nesterov, adagrad, adam or adamw"),
    NUM("lr", OPT_F64, lr, 0, INF, R_DEFAULT, "peak learning rate (-1: the optimizer's default)"),
    NUM("momentum", OPT_F64, momentum, 0, 1, R_DEFAULT, "SGD momentum (-1: 0.9 for momentum/nesterov, else 0)"),
    NUM("weight-decay", OPT_F64, weight_decay, 0, INF, R_DEFAULT, "L2 penalty; decoupled for adamw (-1: default)"),
    NUM("beta1", OPT_F64, beta1, 0, 1, R_DEFAULT | R_HI_OPEN, "Adam beta1 (-1: 0.9)"),
    NUM("beta2", OPT_F64, beta2, 0, 1, R_DEFAULT | R_HI_OPEN, "Adam beta2 (-1: 0.999)"),
    NUM("eps", OPT_F64, eps, 0, INF, R_DEFAULT | R_LO_OPEN, "Adam/AdaGrad epsilon (-1: 1e-8 / 1e-10)"),
    ROW("schedule", OPT_STR, schedule, "learning-rate schedule: constant, step or cosine"),
    NUM("warmup-steps", OPT_I64, warmup_steps, 0, STEPS, 0, "linear warm-up steps (any schedule)"),
    NUM("step-size", OPT_I64, step_size, 0, STEPS, 0, "step schedule: steps between decays"),
    NUM("gamma", OPT_F64, gamma, 0, 1, R_LO_OPEN, "step schedule: decay factor"),
    NUM("min-lr", OPT_F64, min_lr, 0, INF, 0, "cosine schedule: final learning rate"),
    NUM("clip-norm", OPT_F64, clip_norm, 0, INF, 0, "clip the global gradient norm to this (0: off)"),
    NUM("batch", OPT_I64, batch, 1, 1 << 24, 0, "global batch size, split over the ranks"),
    NUM("epochs", OPT_I64, epochs, 0, 1e6, 0, "epochs to train"),
    NUM("max-steps", OPT_I64, max_steps, 0, STEPS, 0, "stop after this many steps (0: epochs decide)"),
    NUM("stop-at", OPT_I64, stop_at, 0, STEPS, 0, "end this run at this step with a checkpoint, keeping the "
                                     "schedule, so --resume continues it (0: off)"),
    ROW("seed", OPT_U64, seed, "seed of initialization, shuffling and dropout"),
    NUM("log-every", OPT_I64, log_every, 1, STEPS, 0, "steps between progress lines and train records"),
    NUM("eval-every", OPT_I64, eval_every, 0, STEPS, 0, "steps between validations (0: every epoch)"),
    NUM("ckpt-every", OPT_I64, ckpt_every, 0, STEPS, 0, "steps between checkpoints (0: at the end only)"),
    NUM("early-stop", OPT_I64, early_stop, 0, 1e6, 0, "stop after this many validations without a better "
                                           "accuracy (0: off)"),
    ROW("ckpt-dir", OPT_STR, ckpt_dir, "checkpoint directory (empty: no checkpoints)"),
    ROW("resume", OPT_STR, resume, "resume from 'latest' or 'auto' (the newest checkpoint in "
                                   "--ckpt-dir that passes its checks; none: start fresh), a "
                                   "directory or a file"),
    ROW("metrics", OPT_STR, metrics, "JSON-lines metrics file (empty: none)"),
    NUM("tp", OPT_I64, tp, 1, 4096, 0, "tensor-parallel ranks per group (Megatron layers; 1: none)"),
    NUM("pp", OPT_I64, pp, 1, 4096, 0, "pipeline stages: the model's layers cut into this many "
                                  "contiguous stages, balanced by FLOPs (1: none)"),
    ROW("pipeline", OPT_STR, pipeline, "--pp > 1: the schedule, gpipe (all forwards, then all "
                                       "backwards), 1f1b (PipeDream-Flush) or interleaved"),
    NUM("micro-batches", OPT_I64, micro_batches, 1, 1 << 24, 0, "--pp > 1: micro-batches per step "
                                                 "(each rank's rows split evenly; 0: pp)"),
    NUM("virtual-stages", OPT_I64, virtual_stages, 1, 4096, 0, "model chunks per rank for "
                                                "--pipeline interleaved (1: none)"),
    ROW("trace", OPT_STR, trace, "--pp > 1: write a Chrome-trace / Perfetto JSON timeline of "
                                 "--trace-steps steps (every rank's spans, one file)"),
    NUM("trace-steps", OPT_I64, trace_steps, 1, 1000, 0, "steps --trace records"),
    ROW("recompute", OPT_BOOL, recompute, "--pp > 1: activation recomputation: a stage keeps only "
                                          "each in-flight micro-batch's input and reruns its "
                                          "forward right before the backward (same bits, less "
                                          "activation memory, one more forward)"),
    ROW("pp-split", OPT_STR, pp_split, "--pp > 1: the first node of each stage after the first, "
                                       "comma separated (empty: balanced by FLOPs)"),
    NUM("ps-servers", OPT_I64, ps_servers, 0, 4096, 0, "parameter-server ranks (0: none); the other "
                                                "ranks are workers (docs/ARCHITECTURE.md)"),
    ROW("ps-placement", OPT_STR, ps_placement, "parameter servers: the first S ranks, or spread "
                                               "evenly over the world"),
    ROW("ps-sync", OPT_STR, ps_sync, "parameter-server consistency: bsp (default), asp, or ssp:S "
                                     "(staleness bound S steps)"),
    ROW("ps-transport", OPT_STR, ps_transport, "parameter-server messages: p2p (MPI_Isend/Irecv) or "
                                               "rma (MPI_Put/MPI_Get into the servers' windows, p2p notes); "
                                               "any --ps-sync"),
    ROW("grid-order", OPT_STR, grid_order, "process grid axes, outermost first: a permutation of "
                                           "pp,dp,tp (default: tp innermost, so a tp group is "
                                           "consecutive ranks)"),
    ROW("sequence-parallel", OPT_BOOL, sequence_parallel, "with --tp > 1: split layer norms and "
                                                          "dropout along the sequence "
                                                          "(reduce-scatter / all-gather)"),
    NUM("zero", OPT_I64, zero, 0, 1, R_DEFAULT, "ZeRO stage: 0, 1 to shard the optimizer state and the "
                              "update over the data-parallel ranks (reduce-scatter, shard update, "
                              "allgather), or auto (default; also -1): 1 when there are 2 or more "
                              "data-parallel ranks and neither --compress nor --ps-servers replaces "
                              "the allreduce, else 0"),
    NUM("bucket-mb", OPT_F64, bucket_mb, 0, 65536, 0, "gradient bucket size in MiB; buckets are reduced while "
                                         "backward runs (0: one allreduce after backward)"),
    ROW("reproducible", OPT_BOOL, reproducible, "bitwise-identical training for any number of "
                                                "ranks (exact 128-bit gradient sums; slower)"),
    NUM("repro-chunk", OPT_I64, repro_chunk, 1, 1 << 24, R_DEFAULT, "--reproducible: samples per gradient "
                                             "chunk (must divide the per-rank batch; runs compare "
                                             "bitwise at the same chunk), or auto (default; also "
                                             "-1): the largest that divides the per-rank batch of "
                                             "every rank count 1..4 dividing --batch"),
    ROW("sync-bn", OPT_BOOL, sync_bn, "batch norm: normalize with the statistics of the global "
                                      "batch (summed over the ranks) instead of each rank's share"),
    ROW("conv-algo", OPT_STR, conv_algo, "conv2d: auto (direct implicit-GEMM kernels where they "
                                         "apply) or im2col (column matrix + BLAS GEMM)"),
    ROW("allreduce", OPT_STR, allreduce, "gradient allreduce: auto, mpi, ring, recursive_doubling, "
                                         "rabenseifner, binomial or hierarchical"),
    ROW("compress", OPT_STR, compress, "gradient compression: none, topk:DENSITY (e.g. topk:0.001), "
                                       "sign (scaled, EF-SignSGD with --error-feedback), signsgd "
                                       "(majority vote), fp16 or bf16 (16-bit wire, fp32 sums)"),
    ROW("sparse-allreduce", OPT_STR, sparse_allreduce, "topk: allgather, sparcml (recursive "
                                                       "doubling, dense past --sparcml-switch) or "
                                                       "gtopk (global top-k)"),
    ROW("error-feedback", OPT_BOOL, error_feedback, "topk, sign: add what was not sent to the next "
                                                    "step's gradient"),
    ROW("dgc", OPT_BOOL, dgc, "topk: Deep Gradient Compression's momentum correction and "
                              "masking (with --optimizer momentum) and local clipping "
                              "(--clip-norm / sqrt(ranks))"),
    NUM("density-warmup-epochs", OPT_F64, density_warmup_epochs, 0, 1e6, 0, "topk: density from 25% down to "
                                                                 "DENSITY exponentially over "
                                                                 "these epochs (0: off)"),
    NUM("sparcml-switch", OPT_F64, sparcml_switch, 0, 0.5, R_LO_OPEN, "sparcml: density at which a merged sparse "
                                                   "vector is sent dense"),
    ROW("backend", OPT_STR, backend, "compute backend: cpu (cuda when built --with-cuda)"),
    /* mixed precision (issue 17): validated by check_precision */
    ROW("precision", OPT_STR, precision, "compute precision of the dense and conv layers: fp32, "
                                         "bf16 or fp16 (fp32 master weights and optimizer "
                                         "state; docs/MIXED_PRECISION.md)"),
    ROW("loss-scale", OPT_STR, loss_scale, "fp16 loss scaling: dynamic (start 2^16, double after "
                                           "--loss-scale-window clean steps, halve and skip on "
                                           "Inf/NaN), none, or a fixed VALUE (default: dynamic "
                                           "for fp16; refused with bf16 and fp32)"),
    NUM("loss-scale-window", OPT_I64, loss_scale_window, 1, STEPS, 0, "dynamic loss scale: "
                                                     "overflow-free steps before it doubles"),
    NUM("eval-batch", OPT_I64, eval_batch, 0, 1 << 24, 0, "samples per rank per evaluation batch "
                                                         "(0: the per-rank training batch; "
                                                         "training evaluates in chunks of at "
                                                         "most that, in its own buffers)"),
    ROW("validate-data", OPT_BOOL, validate_data, "scan the data for bad labels/NaN at start"),
    ROW("quiet", OPT_BOOL, quiet, "no progress lines"),
};
#define NROWS (sizeof rows / sizeof *rows)

void pt_train_config_defaults(pt_train_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->data, sizeof c->data, "data/fashion-mnist");
    snprintf(c->model, sizeof c->model, "mlp:784-1024-1024-10");
    snprintf(c->activation, sizeof c->activation, "relu");
    snprintf(c->optimizer, sizeof c->optimizer, "momentum");
    snprintf(c->schedule, sizeof c->schedule, "constant");
    snprintf(c->allreduce, sizeof c->allreduce, "auto");
    snprintf(c->conv_algo, sizeof c->conv_algo, "auto");
    snprintf(c->backend, sizeof c->backend, "cpu");
    snprintf(c->compress, sizeof c->compress, "none");
    snprintf(c->augment, sizeof c->augment, "none");
    snprintf(c->sparse_allreduce, sizeof c->sparse_allreduce, "sparcml");
    c->error_feedback = true, c->sparcml_switch = PT_SPARCML_DENSE_SWITCH;
    c->lr = c->momentum = c->weight_decay = c->beta1 = c->beta2 = c->eps = -1.0;
    c->gamma = 0.1, c->batch = 128, c->epochs = 1, c->seed = 1;
    c->log_every = 50, c->eval_batch = 0, c->validate_data = true;
    c->bucket_mb = 0.0, c->repro_chunk = -1; /* auto: pt_train_repro_chunk */
    c->zero = -1; /* auto: pt_train_zero_stage */
    c->tp = 1, c->pp = 1;
    snprintf(c->ps_placement, sizeof c->ps_placement, "first");
    snprintf(c->ps_transport, sizeof c->ps_transport, "p2p");
    snprintf(c->pipeline, sizeof c->pipeline, "1f1b");
    c->virtual_stages = 1;
    c->trace_steps = 3;
    snprintf(c->precision, sizeof c->precision, "fp32");
    c->loss_scale_window = PT_LOSS_SCALE_WINDOW;
    snprintf(c->grid_order, sizeof c->grid_order, "%s", PT_GRID_ORDER_DEFAULT);
}

/* Parameter-server options that one configuration can show wrong (S against the world size is
 * checked once the world is known: pt_ps_batch_share). */
static pt_status check_ps(const pt_train_config *c, const pt_compress_config *zc)
{
    pt_ps_sync sync;
    int bound;
    pt_ps_placement pl;
    PT_TRY(pt_ps_parse_sync(c->ps_sync, &sync, &bound));
    PT_TRY(pt_ps_parse_placement(c->ps_placement, &pl));
    pt_ps_transport tr;
    PT_TRY(pt_ps_parse_transport(c->ps_transport, &tr));
    if (c->ps_servers == 0) {
        if (c->ps_sync[0])
            return PT_ERR(PT_ERR_ARG, "add --ps-servers S (S >= 1) or drop --ps-sync",
                          "--ps-sync %s needs parameter servers; --ps-servers is 0", c->ps_sync);
        if (tr != PT_PS_P2P)
            return PT_ERR(PT_ERR_ARG, "add --ps-servers S (S >= 1) or drop --ps-transport",
                          "--ps-transport %s needs parameter servers; --ps-servers is 0", c->ps_transport);
        return PT_OK;
    }
    if (c->tp > 1 || c->pp > 1)
        return PT_ERR(PT_ERR_ARG, "drop --tp and --pp, or --ps-servers",
                      "--ps-servers does not combine with tensor or pipeline parallelism (--tp %lld, "
                      "--pp %lld)", (long long)c->tp, (long long)c->pp);
    if (c->zero == 1 || c->bucket_mb > 0 || c->reproducible || zc->kind != PT_COMPRESS_NONE || c->sync_bn)
        return PT_ERR(PT_ERR_ARG, "drop --zero, --bucket-mb, --reproducible, --compress and --sync-bn",
                      "--ps-servers replaces the gradient allreduce (the servers shard the optimizer "
                      "state themselves)");
    return PT_OK;
}

int pt_train_zero_stage(const pt_train_config *c, int dp_size)
{
    if (c->zero >= 0) return (int)c->zero;
    /* auto: sharding the update is never slower at dp > 1 (each rank updates 1/dp of the
     * parameters; the reduce-scatter + allgather move the allreduce's bytes), and at dp = 1 it
     * is the replicated update. Compression and parameter servers replace the allreduce. */
    pt_compress_config zc;
    const bool compressed = pt_compress_parse(c->compress, &zc) != PT_OK || zc.kind != PT_COMPRESS_NONE;
    return dp_size > 1 && !compressed && c->ps_servers == 0;
}

int64_t pt_train_repro_chunk(const pt_train_config *c)
{
    if (c->repro_chunk > 0) return c->repro_chunk;
    /* auto: a function of the batch alone (so every rank count gets the same chunks, hence the
     * same bits): gcd of batch / p over p = 1..4 dividing the batch. Larger chunks mean fewer
     * forward/backward passes and fewer exact conversions of the gradient per step. */
    int64_t g = 0;
    for (int64_t p = 1; p <= 4; p++)
        if (c->batch > 0 && c->batch % p == 0) {
            int64_t a = c->batch / p, b = g;
            while (b) {
                const int64_t t = a % b;
                a = b, b = t;
            }
            g = a;
        }
    return g > 0 ? g : 1;
}

static const opt_row *find(const char *key)
{
    for (size_t i = 0; i < NROWS; i++)
        if (!strcmp(rows[i].name, key)) return &rows[i];
    return NULL;
}

bool pt_train_config_has(const char *key) { return find(key) != NULL; }

bool pt_train_config_is_bool(const char *key)
{
    const opt_row *r = find(key);
    return r && r->type == OPT_BOOL;
}

/* The allowed values of a numeric row as text: "1..16777216", "[0, 1)", "-1 or >= 0". */
static void range_text(const opt_row *r, char *buf, size_t len)
{
    const char *def = r->range & R_DEFAULT ? "-1 or " : "";
    if (r->type == OPT_I64 && (r->range & R_DEFAULT)) { /* --zero, --repro-chunk: -1 is auto */
        snprintf(buf, len, "%.0f..%.0f or auto", r->lo, r->hi);
    } else if (r->type == OPT_I64) {
        if (r->hi >= STEPS) snprintf(buf, len, "%s>= %.0f", def, r->lo);
        else snprintf(buf, len, "%s%.0f..%.0f", def, r->lo, r->hi);
    } else if (isinf(r->hi)) {
        snprintf(buf, len, "%s%s %g", def, r->range & R_LO_OPEN ? ">" : ">=", r->lo);
    } else {
        snprintf(buf, len, "%s%c%g, %g%c", def, r->range & R_LO_OPEN ? '(' : '[', r->lo, r->hi,
                 r->range & R_HI_OPEN ? ')' : ']');
    }
}

static bool in_range(const opt_row *r, double v)
{
    if ((r->range & R_DEFAULT) && v == -1.0) return true;
    const bool lo_ok = r->range & R_LO_OPEN ? v > r->lo : v >= r->lo;
    const bool hi_ok = r->range & R_HI_OPEN ? v < r->hi : v <= r->hi;
    return lo_ok && hi_ok;
}

pt_status pt_train_config_set(pt_train_config *c, const char *key, const char *value)
{
    const opt_row *r = find(key);
    if (!r) return PT_ERR(PT_ERR_ARG, "see --help for the options", "unknown option '%s'", key);
    void *p = (char *)c + r->offset;
    char *end = NULL;
    errno = 0;
    /* strtoll/strtod skip leading blanks and take '+': a value must start with its number */
    const bool starts_ok = value[0] && !isspace((unsigned char)value[0]) && value[0] != '+';
    double num = 0.0; /* the numeric value, for the range check */
    switch (r->type) {
    case OPT_STR:
        if (strlen(value) >= r->size)
            return PT_ERR(PT_ERR_ARG, NULL, "value of --%s is too long (at most %zu characters)",
                          key, r->size - 1);
        snprintf(p, r->size, "%s", value);
        return PT_OK;
    case OPT_I64: {
        if ((r->range & R_DEFAULT) && !strcmp(value, "auto")) { /* --zero, --repro-chunk */
            *(int64_t *)p = -1;
            return PT_OK;
        }
        long long v = strtoll(value, &end, 10);
        if (!starts_ok || end == value || *end || errno) break;
        num = (double)v;
        if (!in_range(r, num)) goto out_of_range;
        *(int64_t *)p = v;
        return PT_OK;
    }
    case OPT_U64: {
        if (!starts_ok || value[0] == '-') break;
        unsigned long long v = strtoull(value, &end, 10);
        if (end == value || *end || errno) break;
        *(uint64_t *)p = v;
        return PT_OK;
    }
    case OPT_F64: {
        double v = strtod(value, &end);
        /* inf and nan parse as numbers; no option means anything by them (and a JSON metrics
         * record could not hold them) */
        if (!starts_ok || end == value || *end || errno || !isfinite(v)) break;
        num = v;
        if (!in_range(r, num)) goto out_of_range;
        *(double *)p = v;
        return PT_OK;
    }
    case OPT_BOOL:
        if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "yes"))
            *(bool *)p = true;
        else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "no"))
            *(bool *)p = false;
        else
            break;
        return PT_OK;
    }
    static const char *kinds[] = {"a string", "an integer", "a non-negative integer",
                                  "a finite number", "true or false"};
    return PT_ERR(PT_ERR_ARG, "see --help for each option's range", "--%s wants %s, got '%s'",
                  key, kinds[r->type], value);
out_of_range:;
    char allowed[64];
    range_text(r, allowed, sizeof allowed);
    return PT_ERR(PT_ERR_ARG, "see --help for each option's range",
                  "--%s %s is out of range (allowed: %s)", key, value, allowed);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

pt_status pt_train_config_load(pt_train_config *c, const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp) return PT_ERR(PT_ERR_IO, NULL, "cannot read config file '%s': %s", path, strerror(errno));
    char line[PT_PATH_MAX + 128];
    int lineno = 0;
    pt_status st = PT_OK;
    while (st == PT_OK && fgets(line, sizeof line, fp)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *s = trim(line);
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            st = PT_ERR(PT_ERR_ARG, "write lines as: name = value", "%s:%d: no '=' in '%s'", path,
                        lineno, s);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        st = pt_train_config_set(c, key, val);
        if (st != PT_OK) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", pt_error_message());
            st = PT_ERR(st, NULL, "%s:%d: %s", path, lineno, msg);
        }
    }
    fclose(fp);
    return st;
}

static int format_value(const pt_train_config *c, const opt_row *r, char *buf, size_t len,
                        bool exact)
{
    const void *p = (const char *)c + r->offset;
    switch (r->type) {
    case OPT_STR: return snprintf(buf, len, "%s", (const char *)p);
    case OPT_I64: return snprintf(buf, len, "%lld", (long long)*(const int64_t *)p);
    case OPT_U64: return snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)p);
    case OPT_F64: return snprintf(buf, len, exact ? "%.17g" : "%g", *(const double *)p);
    case OPT_BOOL: return snprintf(buf, len, "%s", *(const bool *)p ? "true" : "false");
    }
    return 0;
}

void pt_train_config_dump(const pt_train_config *c, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < NROWS && off < len; i++) {
        char v[PT_PATH_MAX];
        format_value(c, &rows[i], v, sizeof v, true);
        off += (size_t)snprintf(buf + off, len - off, "%s = %s\n", rows[i].name, v);
    }
}

void pt_train_config_help(FILE *fp)
{
    pt_train_config d;
    pt_train_config_defaults(&d);
    for (size_t i = 0; i < NROWS; i++) {
        char v[64], range[80] = "";
        format_value(&d, &rows[i], v, sizeof v, false);
        if (rows[i].type == OPT_I64 || rows[i].type == OPT_F64) {
            char rt[64];
            range_text(&rows[i], rt, sizeof rt);
            snprintf(range, sizeof range, " (allowed: %s)", rt);
        }
        char flag[48];
        snprintf(flag, sizeof flag, "--%s %s", rows[i].name,
                 rows[i].type == OPT_STR ? "S" : rows[i].type == OPT_BOOL ? "B" : "N");
        fprintf(fp, "  %-22s %s [%s]%s\n", flag, rows[i].help, v, range);
    }
}

/* --augment syntax (the pixel bound P < width is checked against the data later). */
static pt_status check_augment(const char *spec)
{
    if (!strcmp(spec, "none") || !spec[0]) return PT_OK;
    char buf[32];
    snprintf(buf, sizeof buf, "%s", spec);
    const size_t n = strlen(spec);
    bool ok = spec[0] != ',' && spec[n - 1] != ',' && !strstr(spec, ",,");
    for (char *tok = strtok(buf, ","); ok && tok; tok = strtok(NULL, ",")) {
        char *end = NULL;
        if (!strcmp(tok, "flip")) continue;
        ok = !strncmp(tok, "crop:", 5) && tok[5] >= '1' && tok[5] <= '9' &&
             strtol(tok + 5, &end, 10) > 0 && !*end;
    }
    return ok ? PT_OK
              : PT_ERR(PT_ERR_ARG, "give none, flip, crop:P or flip,crop:P (P pixels, 0 < P < width)",
                       "bad --augment '%s'", spec);
}

/* --precision and --loss-scale, and the combinations mixed precision does not support. */
static pt_status check_precision(const pt_train_config *c)
{
    pt_dtype t = PT_F32;
    if (pt_precision_parse(c->precision, &t) != PT_OK || (t != PT_F32 && t != PT_BF16 && t != PT_F16))
        return PT_ERR(PT_ERR_ARG, "choose fp32, bf16 or fp16", "unknown --precision '%s'",
                      c->precision);
    pt_loss_scale_mode mode;
    double value;
    PT_TRY(pt_loss_scale_parse(c->loss_scale, t == PT_F16, &mode, &value));
    if (t != PT_F16 && c->loss_scale[0] && strcmp(c->loss_scale, "none"))
        return PT_ERR(PT_ERR_ARG, "drop --loss-scale, or use --precision fp16",
                      "--loss-scale %s: loss scaling is for fp16, whose exponent range is narrow; "
                      "%s has fp32's range and needs none", c->loss_scale, c->precision);
    if (t == PT_F32) return PT_OK;
    if (!strcmp(c->backend, "cuda"))
        return PT_ERR(PT_ERR_ARG, "use --precision fp32 with --backend cuda, or --backend cpu",
                      "--precision %s: the cuda backend has no low-precision kernels yet",
                      c->precision);
    if (c->reproducible)
        return PT_ERR(PT_ERR_ARG, "drop --reproducible, or use --precision fp32",
                      "--reproducible with --precision %s: the low-precision GEMM kernels do not "
                      "promise the same bits for every thread count", c->precision);
    if (c->ps_servers > 0)
        return PT_ERR(PT_ERR_ARG, "drop --ps-servers, or use --precision fp32",
                      "--precision %s is not supported with the parameter server", c->precision);
    pt_compress_config zc;
    PT_TRY(pt_compress_parse(c->compress, &zc));
    if (mode != PT_LOSS_SCALE_NONE && zc.kind != PT_COMPRESS_NONE && zc.kind != PT_COMPRESS_FP16 &&
        zc.kind != PT_COMPRESS_BF16)
        return PT_ERR(PT_ERR_ARG, "use --compress none, fp16 or bf16, or --loss-scale none",
                      "--compress %s keeps per-rank state (residuals, momentum) that a step "
                      "skipped for an fp16 overflow would leave poisoned with Inf", c->compress);
    return PT_OK;
}

pt_status pt_train_config_check(const pt_train_config *c)
{
    PT_TRY(check_precision(c));
    char canon[512];
    PT_TRY(pt_model_spec_canonical(c->model, canon, sizeof canon));
    if (strcmp(c->activation, "relu") && strcmp(c->activation, "gelu") && strcmp(c->activation, "tanh"))
        return PT_ERR(PT_ERR_ARG, "choose relu, gelu or tanh", "unknown activation '%s'", c->activation);
    pt_optim_config oc;
    PT_TRY(pt_optim_config_parse(&oc, c->optimizer));
    pt_schedule sched;
    PT_TRY(pt_schedule_parse(&sched, c->schedule));
    if (sched.kind == PT_SCHED_STEP && c->step_size <= 0)
        return PT_ERR(PT_ERR_ARG, "give --step-size N", "the step schedule needs --step-size > 0");
    pt_allreduce_algo algo;
    PT_TRY(pt_allreduce_algo_parse(c->allreduce, &algo));
    if (strcmp(c->conv_algo, "auto") && strcmp(c->conv_algo, "im2col"))
        return PT_ERR(PT_ERR_ARG, "choose auto or im2col", "unknown --conv-algo '%s'", c->conv_algo);
    /* the name only: asking for the CUDA backend here would initialize it on device 0 before
     * each rank selects its own (pt_train_setup_model says when it is missing) */
    if (strcmp(c->backend, "cpu") && strcmp(c->backend, "cuda"))
        return PT_ERR(PT_ERR_ARG, "choose cpu or cuda", "unknown backend '%s'", c->backend);
    PT_TRY(check_augment(c->augment));
    pt_compress_config zc;
    PT_TRY(pt_compress_parse(c->compress, &zc));
    pt_sparse_algo sa;
    PT_TRY(pt_sparse_algo_parse(c->sparse_allreduce, &sa));
    if (c->dgc && zc.kind != PT_COMPRESS_TOPK)
        return PT_ERR(PT_ERR_ARG, "add --compress topk:D", "--dgc needs top-k compression");
    if (c->dgc && oc.kind != PT_OPT_SGD)
        return PT_ERR(PT_ERR_ARG, "use --optimizer momentum (or sgd) with --dgc",
                      "--dgc corrects SGD momentum; '%s' is not SGD", c->optimizer);
    if (zc.kind != PT_COMPRESS_NONE && (c->zero == 1 || c->bucket_mb > 0 || c->reproducible))
        return PT_ERR(PT_ERR_ARG, "drop --zero, --bucket-mb and --reproducible, or --compress",
                      "--compress %s replaces the whole-gradient allreduce, so it does not combine "
                      "with ZeRO-1, buckets or the exact reduction", c->compress);
    PT_TRY(check_ps(c, &zc));
    int order[PT_NAXES];
    PT_TRY(pt_grid_parse_order(c->grid_order, order, NULL, 0));
    if (strcmp(c->pipeline, "gpipe") && strcmp(c->pipeline, "1f1b") && strcmp(c->pipeline, "interleaved"))
        return PT_ERR(PT_ERR_ARG, "choose gpipe, 1f1b or interleaved", "unknown --pipeline '%s'",
                      c->pipeline);
    if (c->pp == 1 && c->trace[0])
        return PT_ERR(PT_ERR_ARG, "add --pp N (N > 1) or drop --trace",
                      "--trace records pipeline schedules; --pp is 1");
    if (c->pp == 1 && c->recompute)
        return PT_ERR(PT_ERR_ARG, "add --pp N (N > 1) or drop --recompute",
                      "--recompute recomputes pipeline stages' activations; --pp is 1");
    if (c->pp == 1 && (c->micro_batches > 1 || c->pp_split[0]))
        return PT_ERR(PT_ERR_ARG, "add --pp N (N > 1) or drop --micro-batches and --pp-split",
                      "--micro-batches and --pp-split apply to pipeline parallelism; --pp is 1");
    if (c->sequence_parallel && c->tp < 2)
        return PT_ERR(PT_ERR_ARG, "add --tp N (N > 1) or drop --sequence-parallel",
                      "--sequence-parallel splits tensor-parallel layers; --tp is %lld", (long long)c->tp);
    if ((!strcmp(c->resume, "latest") || !strcmp(c->resume, "auto")) && !c->ckpt_dir[0])
        return PT_ERR(PT_ERR_ARG, "give --ckpt-dir DIR", "--resume %s needs --ckpt-dir", c->resume);
    if (c->epochs == 0 && c->max_steps == 0)
        return PT_ERR(PT_ERR_ARG, "give --epochs N or --max-steps N (at least 1)",
                      "nothing to train: --epochs and --max-steps are both 0");
    return PT_OK;
}
