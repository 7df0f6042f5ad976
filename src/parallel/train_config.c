/* The option table: one row per training option. It drives command-line flags (--name value),
 * config files (name = value), --help, and the configuration text stored in every checkpoint. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/compress.h"
#include "paratrain/train.h"

typedef enum { OPT_STR, OPT_I64, OPT_U64, OPT_F64, OPT_BOOL } opt_type;

typedef struct {
    const char *name;
    opt_type type;
    size_t offset, size;
    const char *help;
} opt_row;

#define ROW(name, type, field, help)                                                               \
    {name, type, offsetof(pt_train_config, field), sizeof(((pt_train_config *)0)->field), help}

static const opt_row rows[] = {
    ROW("data", OPT_STR, data, "directory of HDF5 shards written by pt-prep"),
    ROW("model", OPT_STR, model, "model spec: mlp:784-1024-1024-10, cnn, resnet, textcnn or gpt (keys like gpt:layers=4,d=256; docs/MODELS.md)"),
    ROW("activation", OPT_STR, activation, "mlp hidden activation: relu, gelu or tanh"),
    ROW("dropout", OPT_F64, dropout, "dropout probability (mlp: after each hidden activation; cnn, textcnn: before the classifier)"),
    ROW("augment", OPT_STR, augment, "training images: none, flip (horizontal, p = 0.5), crop:P "
                                     "(shift by up to P pixels, zero fill), or flip,crop:P"),
    ROW("optimizer", OPT_STR, optimizer, "sgd, momentum, nesterov, adagrad, adam or adamw"),
    ROW("lr", OPT_F64, lr, "peak learning rate (-1: the optimizer's default)"),
    ROW("momentum", OPT_F64, momentum, "SGD momentum (-1: 0.9 for momentum/nesterov, else 0)"),
    ROW("weight-decay", OPT_F64, weight_decay, "L2 penalty; decoupled for adamw (-1: default)"),
    ROW("beta1", OPT_F64, beta1, "Adam beta1 (-1: 0.9)"),
    ROW("beta2", OPT_F64, beta2, "Adam beta2 (-1: 0.999)"),
    ROW("eps", OPT_F64, eps, "Adam/AdaGrad epsilon (-1: 1e-8 / 1e-10)"),
    ROW("schedule", OPT_STR, schedule, "learning-rate schedule: constant, step or cosine"),
    ROW("warmup-steps", OPT_I64, warmup_steps, "linear warm-up steps (any schedule)"),
    ROW("step-size", OPT_I64, step_size, "step schedule: steps between decays"),
    ROW("gamma", OPT_F64, gamma, "step schedule: decay factor"),
    ROW("min-lr", OPT_F64, min_lr, "cosine schedule: final learning rate"),
    ROW("clip-norm", OPT_F64, clip_norm, "clip the global gradient norm to this (0: off)"),
    ROW("batch", OPT_I64, batch, "global batch size, split over the ranks"),
    ROW("epochs", OPT_I64, epochs, "epochs to train"),
    ROW("max-steps", OPT_I64, max_steps, "stop after this many steps (0: epochs decide)"),
    ROW("stop-at", OPT_I64, stop_at, "end this run at this step with a checkpoint, keeping the "
                                     "schedule, so --resume continues it (0: off)"),
    ROW("seed", OPT_U64, seed, "seed of initialization, shuffling and dropout"),
    ROW("log-every", OPT_I64, log_every, "steps between progress lines and train records"),
    ROW("eval-every", OPT_I64, eval_every, "steps between validations (0: every epoch)"),
    ROW("ckpt-every", OPT_I64, ckpt_every, "steps between checkpoints (0: at the end only)"),
    ROW("early-stop", OPT_I64, early_stop, "stop after this many validations without a better "
                                           "accuracy (0: off)"),
    ROW("ckpt-dir", OPT_STR, ckpt_dir, "checkpoint directory (empty: no checkpoints)"),
    ROW("resume", OPT_STR, resume, "resume from 'latest' or 'auto' (the newest checkpoint in "
                                   "--ckpt-dir that passes its checks; none: start fresh), a "
                                   "directory or a file"),
    ROW("metrics", OPT_STR, metrics, "JSON-lines metrics file (empty: none)"),
    ROW("zero", OPT_I64, zero, "ZeRO stage: 0, or 1 to shard the optimizer state over the ranks "
                              "(reduce-scatter, shard update, allgather)"),
    ROW("bucket-mb", OPT_F64, bucket_mb, "gradient bucket size in MiB; buckets are reduced while "
                                         "backward runs (0: one allreduce after backward)"),
    ROW("reproducible", OPT_BOOL, reproducible, "bitwise-identical training for any number of "
                                                "ranks (exact 128-bit gradient sums; slower)"),
    ROW("repro-chunk", OPT_I64, repro_chunk, "--reproducible: samples per gradient chunk (must "
                                             "divide the per-rank batch)"),
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
    ROW("density-warmup-epochs", OPT_F64, density_warmup_epochs, "topk: density from 25% down to "
                                                                 "DENSITY exponentially over "
                                                                 "these epochs (0: off)"),
    ROW("sparcml-switch", OPT_F64, sparcml_switch, "sparcml: density at which a merged sparse "
                                                   "vector is sent dense"),
    ROW("backend", OPT_STR, backend, "compute backend: cpu (cuda when built --with-cuda)"),
    ROW("eval-batch", OPT_I64, eval_batch, "samples per rank per evaluation batch"),
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
    c->log_every = 50, c->eval_batch = 1000, c->validate_data = true;
    c->bucket_mb = 0.0, c->repro_chunk = 8;
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

pt_status pt_train_config_set(pt_train_config *c, const char *key, const char *value)
{
    const opt_row *r = find(key);
    if (!r) return PT_ERR(PT_ERR_ARG, "see --help for the options", "unknown option '%s'", key);
    void *p = (char *)c + r->offset;
    char *end = NULL;
    errno = 0;
    switch (r->type) {
    case OPT_STR:
        if (strlen(value) >= r->size)
            return PT_ERR(PT_ERR_ARG, NULL, "value of --%s is too long", key);
        snprintf(p, r->size, "%s", value);
        return PT_OK;
    case OPT_I64: {
        long long v = strtoll(value, &end, 10);
        if (end == value || *end || errno) break;
        *(int64_t *)p = v;
        return PT_OK;
    }
    case OPT_U64: {
        if (value[0] == '-') break;
        unsigned long long v = strtoull(value, &end, 10);
        if (end == value || *end || errno) break;
        *(uint64_t *)p = v;
        return PT_OK;
    }
    case OPT_F64: {
        double v = strtod(value, &end);
        if (end == value || *end || errno || v != v) break;
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
    static const char *kinds[] = {"a string", "an integer", "a non-negative integer", "a number",
                                  "true or false"};
    return PT_ERR(PT_ERR_ARG, NULL, "--%s wants %s, got '%s'", key, kinds[r->type], value);
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

static int format_value(const pt_train_config *c, const opt_row *r, char *buf, size_t len)
{
    const void *p = (const char *)c + r->offset;
    switch (r->type) {
    case OPT_STR: return snprintf(buf, len, "%s", (const char *)p);
    case OPT_I64: return snprintf(buf, len, "%lld", (long long)*(const int64_t *)p);
    case OPT_U64: return snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)p);
    case OPT_F64: return snprintf(buf, len, "%.17g", *(const double *)p);
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
        format_value(c, &rows[i], v, sizeof v);
        off += (size_t)snprintf(buf + off, len - off, "%s = %s\n", rows[i].name, v);
    }
}

void pt_train_config_help(FILE *fp)
{
    pt_train_config d;
    pt_train_config_defaults(&d);
    for (size_t i = 0; i < NROWS; i++) {
        char v[64];
        format_value(&d, &rows[i], v, sizeof v);
        char flag[48];
        snprintf(flag, sizeof flag, "--%s %s", rows[i].name,
                 rows[i].type == OPT_STR ? "S" : rows[i].type == OPT_BOOL ? "B" : "N");
        fprintf(fp, "  %-22s %s [%s]\n", flag, rows[i].help, v);
    }
}
