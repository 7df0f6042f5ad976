/* Model specs (docs/MODELS.md): each builder adds the nodes of one architecture.
 *
 *   mlp:IN-H1-...-CLASSES                    dense layers, --activation and --dropout between
 *   cnn:c1=32,c2=64,hidden=512,classes=10    two 5x5 conv + ReLU + 2x2 max-pool blocks, two dense
 *   resnet:width=16,blocks=2,classes=10      3x3 stem, three stages of basic blocks (batch norm),
 *                                            global average pool, dense
 *   textcnn:len=128,emb=64,filters=100,widths=3/4/5,classes=6
 *   gpt:layers=4,heads=4,d=256,ctx=128       pre-norm decoder, causal attention, GELU MLP, tied
 *                                            output; byte vocabulary (vocab=256)
 * Images are 28x28x1 (size=28). Unknown keys and values out of range are errors. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

#define CHECK_BUILD(cond)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return PT_ERR(PT_ERR_ARG, "use a smaller model", "model '%s' is too large: more than " \
                          "%d nodes, %d parameter tensors or %d slots", m->spec, PT_MAX_NODES,     \
                          PT_MAX_PARAMS, PT_MAX_SLOTS);                                            \
    } while (0)

/* ------------------------------------------------------------------ key=value specs */

typedef struct {
    const char *key;
    int val, lo, hi;
    int list[4], nlist; /* a '/'-separated list (textcnn widths) */
    int is_list;
    int seen; /* given in the spec: a key given twice is an error */
} spec_key;

static pt_status parse_keys(const char *spec, const char *args, spec_key *keys, int nkeys,
                            const char *example)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", args);
    /* strtok would skip empty fields: "gpt:d=32,,layers=1" and a trailing ',' are errors too */
    const size_t alen = strlen(args);
    if (alen && (args[0] == ',' || args[alen - 1] == ',' || strstr(args, ",,")))
        return PT_ERR(PT_ERR_ARG, example, "bad model spec '%s': empty key=value field", spec);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return PT_ERR(PT_ERR_ARG, example, "bad model spec '%s': '%s' is not key=value",
                          spec, tok);
        *eq = '\0';
        spec_key *k = NULL;
        for (int i = 0; i < nkeys; i++)
            if (!strcmp(keys[i].key, tok)) k = &keys[i];
        if (!k) return PT_ERR(PT_ERR_ARG, example, "bad model spec '%s': unknown key '%s'", spec, tok);
        if (k->seen) return PT_ERR(PT_ERR_ARG, example, "bad model spec '%s': key '%s' given twice", spec, tok);
        k->seen = 1;
        char *p = eq + 1, *end;
        k->nlist = 0;
        do {
            long v = strtol(p, &end, 10);
            if (end == p || v < k->lo || v > k->hi || (*end && *end != '/') ||
                (*end == '/' && !k->is_list) || k->nlist == 4)
                return PT_ERR(PT_ERR_ARG, example,
                              "bad model spec '%s': %s=%s (want %s%d..%d)", spec, tok, eq + 1,
                              k->is_list ? "up to 4 values like 3/4/5, each " : "", k->lo, k->hi);
            k->val = (int)v;
            if (k->is_list) k->list[k->nlist++] = (int)v;
            p = *end == '/' ? end + 1 : end;
        } while (*end == '/');
    }
    return PT_OK;
}

#define KEY(k, def, lo_, hi_) {.key = k, .val = def, .lo = lo_, .hi = hi_}

/* ------------------------------------------------------------------ layer helpers */

static int add_linear(pt_model *m, const char *name, int in, int P, int din, int dout, pt_act act,
                      float dropout, int bias, pt_init_kind init, float w_arg)
{
    char pn[PT_NAME_LEN];
    int out = pt_graph_slot(m, (int64_t)P * dout);
    pt_node *n = out < 0 ? NULL : pt_graph_node(m, &pt_op_linear, in, -1, out);
    if (!n) return -1;
    n->ia[0] = P, n->ia[1] = din, n->ia[2] = dout;
    n->act = act, n->dropout = dropout;
    snprintf(pn, sizeof pn, "%s/weight", name);
    n->p[0] = pt_graph_param(m, pn, 2, (int64_t[]){dout, din}, init, w_arg);
    n->np = 1;
    if (bias) {
        snprintf(pn, sizeof pn, "%s/bias", name);
        /* nn.Linear's bias bound is 1/sqrt(fan_in); other inits start biases at zero */
        n->p[1] = pt_graph_param(m, pn, 1, (int64_t[]){dout}, init == PT_INIT_UNIFORM ? init : PT_INIT_ZERO,
                                 1.0f / sqrtf((float)din));
        n->np = 2;
    }
    if (n->p[0] < 0 || (bias && n->p[1] < 0)) return -1;
    if (act != PT_ACT_NONE && act != PT_ACT_RELU) n->aux_row = (int64_t)P * dout; /* pre-activation */
    return out;
}

/* ------------------------------------------------------------------ tensor parallelism
 *
 * Megatron's pair of dense layers: a column-parallel layer (each tp rank holds a slice of the
 * output features; its input passes a tp_f node, whose backward sums the input gradient over
 * tp) followed by a row-parallel one (each rank holds the matching slice of the input features
 * and computes a partial output, summed by a tp_g node; the bias, activation and dropout follow
 * on the full output, in a bias_act node). Parameters keep the serial names, order and tensor
 * indices; nodes the serial graph lacks do not shift the serial nodes' dropout ids. */
typedef enum { TP_REPLICATED = 0, TP_COLUMN, TP_ROW } tp_layout;

static pt_node *add_extra_node(pt_model *m, const pt_op *op, int in, int out)
{
    m->nextra_nodes++;
    pt_node *n = pt_graph_node(m, op, in, -1, out);
    if (!n) m->nextra_nodes--;
    return n;
}

/* A communication node over slot `in`, the new slot or -1: tp_f or tp_g (same size), or with
 * sequence parallelism tp_seq_gather (a shard of P/tp positions -> all P) or tp_seq_scatter
 * (P positions -> a shard). */
static int add_tp_comm(pt_model *m, const pt_op *op, int in, int P)
{
    /* the input slot's size is set only after the build: it is the input size */
    const int64_t size = in == 0 ? m->input_size : m->slots[in].size;
    const int64_t out_size = op == &pt_op_tp_seq_gather    ? size * m->tp_size
                             : op == &pt_op_tp_seq_scatter ? size / m->tp_size
                                                           : size;
    const int64_t whole = out_size > size ? out_size : size;
    const int out = pt_graph_slot(m, out_size);
    pt_node *n = out < 0 ? NULL : add_extra_node(m, op, in, out);
    if (!n) return -1;
    n->ia[0] = P, n->ia[1] = (int)(whole / P);
    return out;
}

/* Sequence parallelism at tp > 1: the comm nodes that replace f and g. */
static int seq_par(const pt_model *m) { return m->opt.sequence_parallel && m->tp_size > 1; }
static const pt_op *op_f(const pt_model *m) { return seq_par(m) ? &pt_op_tp_seq_gather : &pt_op_tp_f; }
static const pt_op *op_g(const pt_model *m) { return seq_par(m) ? &pt_op_tp_seq_scatter : &pt_op_tp_g; }

/* A dense layer as add_linear, laid out over tp. The weight's global shape is (dout x din);
 * blocks > 1 (column-parallel only) splits each of dout's `blocks` blocks over tp (fused q,k,v).
 * A row-parallel layer's input is already this rank's slice (din / tp features). */
static int add_linear_tp(pt_model *m, const char *name, int in, int P, int din, int dout,
                         pt_act act, float dropout, pt_init_kind init, float w_arg,
                         tp_layout layout, int blocks)
{
    const int tp = m->tp_size;
    if (tp <= 1 || layout == TP_REPLICATED)
        return add_linear(m, name, in, P, din, dout, act, dropout, 1, init, w_arg);
    char pn[PT_NAME_LEN];
    const pt_init_kind bias_init = init == PT_INIT_UNIFORM ? init : PT_INIT_ZERO;
    const float bias_arg = 1.0f / sqrtf((float)din); /* global fan-in, as nn.Linear */
    if (layout == TP_COLUMN) {
        /* the data (slot 0) is the same on every rank and takes no gradient: it needs no f */
        const int x = in == 0 && !seq_par(m) ? 0 : add_tp_comm(m, op_f(m), in, P), dl = dout / tp;
        const int out = x < 0 ? -1 : pt_graph_slot(m, (int64_t)P * dl);
        pt_node *n = out < 0 ? NULL : pt_graph_node(m, &pt_op_linear, x, -1, out);
        if (!n) return -1;
        n->ia[0] = P, n->ia[1] = din, n->ia[2] = dl;
        n->ia[3] = m->tp_rank * dl, n->ia[4] = dout; /* dropout by global column (blocks = 1) */
        n->act = act, n->dropout = dropout;
        snprintf(pn, sizeof pn, "%s/weight", name);
        n->p[0] = pt_graph_param_split(m, pn, 2, (int64_t[]){dout, din}, 0, blocks, init, w_arg);
        snprintf(pn, sizeof pn, "%s/bias", name);
        n->p[1] = pt_graph_param_split(m, pn, 1, (int64_t[]){dout}, 0, blocks, bias_init, bias_arg);
        n->np = 2;
        if (n->p[0] < 0 || n->p[1] < 0) return -1;
        if (act != PT_ACT_NONE && act != PT_ACT_RELU) n->aux_row = (int64_t)P * dl;
        return out;
    }
    /* TP_ROW: partial = x_local W_local^T; full = g(partial); y = dropout(act(full + b)). With
     * sequence parallelism `full` is this rank's shard of positions, and so the bias gradient is
     * a partial sum (grad_over_tp). */
    const int dl = din / tp;
    const int part = pt_graph_slot(m, (int64_t)P * dout);
    pt_node *n = part < 0 ? NULL : pt_graph_node(m, &pt_op_linear, in, -1, part);
    if (!n) return -1;
    n->ia[0] = P, n->ia[1] = dl, n->ia[2] = dout;
    snprintf(pn, sizeof pn, "%s/weight", name);
    n->p[0] = pt_graph_param_split(m, pn, 2, (int64_t[]){dout, din}, 1, 1, init, w_arg);
    n->np = 1;
    const int id = n->id, full = n->p[0] < 0 ? -1 : add_tp_comm(m, op_g(m), part, P);
    const int Pb = seq_par(m) ? P / tp : P; /* positions the bias is added to */
    const int out = full < 0 ? -1 : pt_graph_slot(m, (int64_t)Pb * dout);
    pt_node *b = out < 0 ? NULL : add_extra_node(m, &pt_op_bias_act, full, out);
    if (!b) return -1;
    b->id = id; /* the serial layer's dropout stream */
    b->ia[0] = Pb, b->ia[1] = dout;
    b->act = act, b->dropout = dropout;
    snprintf(pn, sizeof pn, "%s/bias", name);
    b->p[0] = pt_graph_param(m, pn, 1, (int64_t[]){dout}, bias_init, bias_arg);
    b->np = 1;
    if (b->p[0] < 0) return -1;
    m->params[b->p[0]].grad_over_tp = seq_par(m);
    if (act != PT_ACT_NONE && act != PT_ACT_RELU) b->aux_row = (int64_t)Pb * dout;
    return out;
}

#define TP_HINT "choose --tp dividing it, or widths divisible by --tp"

static int add_conv(pt_model *m, const char *name, int in, int H, int cin, int cout, int k, int s,
                    int pad, int bias, pt_act act, pt_init_kind init, int *Ho)
{
    char pn[PT_NAME_LEN];
    *Ho = (H + 2 * pad - k) / s + 1;
    int out = pt_graph_slot(m, (int64_t)*Ho * *Ho * cout);
    pt_node *n = out < 0 ? NULL : pt_graph_node(m, &pt_op_conv2d, in, -1, out);
    if (!n) return -1;
    const int fan_in = k * k * cin, fan_out = k * k * cout;
    n->d.conv2d = (pt_conv2d_desc){.H = H, .Cin = cin, .Cout = cout, .k = k, .stride = s,
                                   .pad = pad, .Ho = *Ho, .algo = m->opt.conv_algo};
    n->act = act;
    snprintf(pn, sizeof pn, "%s/weight", name);
    /* PyTorch's Conv2d default (bound 1/sqrt(fan_in)), or He-normal for ReLU nets (fan_out, as
     * torchvision's ResNet) */
    n->p[0] = pt_graph_param(m, pn, 4, (int64_t[]){cout, k, k, cin}, init,
                             init == PT_INIT_UNIFORM ? 1.0f / sqrtf((float)fan_in)
                                                     : sqrtf(2.0f / (float)fan_out));
    n->np = 1;
    if (bias) {
        snprintf(pn, sizeof pn, "%s/bias", name);
        n->p[1] = pt_graph_param(m, pn, 1, (int64_t[]){cout}, PT_INIT_UNIFORM,
                                 1.0f / sqrtf((float)fan_in));
        n->np = 2;
    }
    return n->p[0] < 0 || (bias && n->p[1] < 0) ? -1 : out;
}

/* A normalization's scale (1) and shift (0), NAME/weight and NAME/bias, as p[0] and p[1]. */
static void add_affine(pt_model *m, pt_node *n, const char *name, int C)
{
    char pn[PT_NAME_LEN];
    snprintf(pn, sizeof pn, "%s/weight", name);
    n->p[0] = pt_graph_param(m, pn, 1, (int64_t[]){C}, PT_INIT_CONST, 1.0f);
    snprintf(pn, sizeof pn, "%s/bias", name);
    n->p[1] = pt_graph_param(m, pn, 1, (int64_t[]){C}, PT_INIT_ZERO, 0.0f);
    n->np = 2;
}

static int add_bn(pt_model *m, const char *name, int in, int HW, int C, pt_act act)
{
    char pn[PT_NAME_LEN];
    int out = pt_graph_slot(m, (int64_t)HW * C);
    pt_node *n = out < 0 ? NULL : pt_graph_node(m, &pt_op_batchnorm, in, -1, out);
    if (!n) return -1;
    n->ia[0] = HW, n->ia[1] = C;
    n->fa[0] = 0.1f, n->fa[1] = 1e-5f;
    n->act = act;
    n->aux_fixed = 2 * (int64_t)C;
    add_affine(m, n, name, C);
    snprintf(pn, sizeof pn, "%s/running_mean", name);
    n->b[0] = pt_graph_buffer(m, pn, C, 0.0f);
    snprintf(pn, sizeof pn, "%s/running_var", name);
    n->b[1] = pt_graph_buffer(m, pn, C, 1.0f);
    return n->p[0] < 0 || n->p[1] < 0 || n->b[0] < 0 || n->b[1] < 0 ? -1 : out;
}

static int add_ln(pt_model *m, const char *name, int in, int P, int D)
{
    int out = pt_graph_slot(m, (int64_t)P * D);
    pt_node *n = out < 0 ? NULL : pt_graph_node(m, &pt_op_layernorm, in, -1, out);
    if (!n) return -1;
    n->ia[0] = P, n->ia[1] = D;
    n->fa[1] = 1e-5f;
    n->aux_row = 2 * (int64_t)P;
    add_affine(m, n, name, D);
    return n->p[0] < 0 || n->p[1] < 0 ? -1 : out;
}

static int add_pool(pt_model *m, const pt_op *op, int in, int H, int C, int k, int s, int *Ho)
{
    *Ho = (H - k) / s + 1;
    int out = pt_graph_slot(m, (int64_t)*Ho * *Ho * C);
    pt_node *n = out < 0 ? NULL : pt_graph_node(m, op, in, -1, out);
    if (!n) return -1;
    n->d.pool = (pt_pool2d_desc){.H = H, .C = C, .k = k, .stride = s, .Ho = *Ho};
    if (op == &pt_op_maxpool2d) n->aux_row = (int64_t)*Ho * *Ho * C;
    return out;
}

static int add_add(pt_model *m, int a, int b, pt_act act)
{
    int out = pt_graph_slot(m, m->slots[a].size);
    pt_node *n = out < 0 ? NULL : pt_graph_node(m, &pt_op_add, a, b, out);
    if (!n) return -1;
    n->act = act;
    return out;
}

/* ------------------------------------------------------------------ the models */

static pt_status no_tp_layout(const pt_model *m)
{
    if (m->tp_size <= 1) return PT_OK;
    return PT_ERR(PT_ERR_ARG, "tensor parallelism covers mlp and gpt (docs/MODELS.md)",
                  "model '%s' has no tensor-parallel layout; use --tp 1 (got --tp %d)", m->spec,
                  m->tp_size);
}

#define MLP_HINT "write it as mlp:IN-HIDDEN-...-CLASSES, e.g. mlp:784-1024-1024-10"

/* "784-1024-10" -> widths; each must be a positive integer, separated by single '-'. */
static pt_status parse_mlp(const char *dims_str, int *dims, int *n_out)
{
    int n = 0;
    const char *p = dims_str;
    for (;;) {
        char *end;
        const size_t tok = strcspn(p, "-"); /* the field quoted in a message: up to the next '-' */
        long v = strtol(p, &end, 10);
        if (tok == 0)
            return PT_ERR(PT_ERR_ARG, MLP_HINT, "bad model spec 'mlp:%s': an empty layer width (a "
                          "'-' at the start or end, or two in a row)", dims_str);
        if (end == p || v <= 0 || v > (1 << 24) || (*end && *end != '-') || p[0] == ' ' || p[0] == '+')
            return PT_ERR(PT_ERR_ARG, MLP_HINT,
                          "bad model spec 'mlp:%s': '%.*s' is not a positive layer width", dims_str,
                          (int)tok, p);
        if (n == 65)
            return PT_ERR(PT_ERR_ARG, NULL, "bad model spec 'mlp:%s': more than 64 layers", dims_str);
        dims[n++] = (int)v;
        if (!*end) break;
        p = end + 1; /* past '-': a trailing '-' leaves an empty field, rejected above */
    }
    if (n < 2)
        return PT_ERR(PT_ERR_ARG, "an MLP needs at least an input and an output width",
                      "bad model spec 'mlp:%s'", dims_str);
    *n_out = n;
    return PT_OK;
}

static pt_status build_mlp(pt_model *m, const char *dims_str)
{
    int dims[65], n = 0;
    PT_TRY(parse_mlp(dims_str, dims, &n));
    m->input_size = dims[0];
    m->classes = dims[n - 1];
    /* tp: layers pair up, fc1 column- and fc2 row-parallel, fc3 and fc4, ...; an odd last layer
     * is replicated. A pair splits the width between its two layers. */
    const int tp = m->tp_size, nlayers = n - 1;
    for (int i = 1; tp > 1 && i + 1 <= nlayers; i += 2)
        if (dims[i] % tp)
            return PT_ERR(PT_ERR_ARG, TP_HINT, "mlp:%s: --tp %d does not divide the width %d "
                          "between fc%d (column-parallel) and fc%d (row-parallel)", dims_str, tp,
                          dims[i], i, i + 1);
    int x = 0;
    for (int i = 1; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "fc%d", i);
        const int last = i == n - 1;
        const tp_layout layout = i % 2 ? (i < nlayers ? TP_COLUMN : TP_REPLICATED) : TP_ROW;
        x = add_linear_tp(m, name, x, 1, dims[i - 1], dims[i], last ? PT_ACT_NONE : m->opt.act,
                          last ? 0.0f : m->opt.dropout, PT_INIT_UNIFORM,
                          1.0f / sqrtf((float)dims[i - 1]), layout, 1);
        CHECK_BUILD(x >= 0);
    }
    return PT_OK;
}

/* Each key=value model: its keys with defaults and ranges, parsed and cross-checked without
 * building anything, so a spec can be validated and compared before any work (pt_model_spec_*). */
#define MAX_KEYS 8
static pt_status parse_cnn(const char *spec, const char *args, spec_key *k, int *nk)
{
    const spec_key d[] = {KEY("c1", 32, 1, 4096), KEY("c2", 64, 1, 4096), KEY("hidden", 512, 1, 1 << 16),
                          KEY("classes", 10, 2, 1 << 16), KEY("size", 28, 4, 1024)};
    memcpy(k, d, sizeof d), *nk = 5;
    return parse_keys(spec, args, k, *nk, "e.g. cnn:c1=32,c2=64,hidden=512");
}

static pt_status build_cnn(pt_model *m, const char *args)
{
    PT_TRY(no_tp_layout(m));
    spec_key k[MAX_KEYS];
    int nk;
    PT_TRY(parse_cnn(m->spec, args, k, &nk));
    const int c1 = k[0].val, c2 = k[1].val, hid = k[2].val, S = k[4].val;
    m->input_size = S * S;
    m->classes = k[3].val;
    int H, x;
    x = add_conv(m, "conv1", 0, S, 1, c1, 5, 1, 2, 1, PT_ACT_RELU, PT_INIT_UNIFORM, &H);
    CHECK_BUILD(x >= 0);
    x = add_pool(m, &pt_op_maxpool2d, x, H, c1, 2, 2, &H);
    CHECK_BUILD(x >= 0);
    x = add_conv(m, "conv2", x, H, c1, c2, 5, 1, 2, 1, PT_ACT_RELU, PT_INIT_UNIFORM, &H);
    CHECK_BUILD(x >= 0);
    x = add_pool(m, &pt_op_maxpool2d, x, H, c2, 2, 2, &H);
    CHECK_BUILD(x >= 0);
    const int flat = H * H * c2;
    x = add_linear(m, "fc1", x, 1, flat, hid, PT_ACT_RELU, m->opt.dropout, 1, PT_INIT_UNIFORM,
                   1.0f / sqrtf((float)flat));
    CHECK_BUILD(x >= 0);
    x = add_linear(m, "fc2", x, 1, hid, m->classes, PT_ACT_NONE, 0.0f, 1, PT_INIT_UNIFORM,
                   1.0f / sqrtf((float)hid));
    CHECK_BUILD(x >= 0);
    return PT_OK;
}

static pt_status parse_resnet(const char *spec, const char *args, spec_key *k, int *nk)
{
    const spec_key d[] = {KEY("width", 16, 1, 1024), KEY("blocks", 2, 1, 8),
                          KEY("classes", 10, 2, 1 << 16), KEY("size", 28, 8, 1024)};
    memcpy(k, d, sizeof d), *nk = 4;
    return parse_keys(spec, args, k, *nk, "e.g. resnet:width=16,blocks=2");
}

static pt_status build_resnet(pt_model *m, const char *args)
{
    PT_TRY(no_tp_layout(m));
    spec_key k[MAX_KEYS];
    int nk;
    PT_TRY(parse_resnet(m->spec, args, k, &nk));
    const int w = k[0].val, nb = k[1].val, S = k[3].val;
    m->input_size = S * S;
    m->classes = k[2].val;
    int H, C = w, x;
    x = add_conv(m, "stem/conv", 0, S, 1, w, 3, 1, 1, 0, PT_ACT_NONE, PT_INIT_NORMAL, &H);
    CHECK_BUILD(x >= 0);
    x = add_bn(m, "stem/bn", x, H * H, w, PT_ACT_RELU);
    CHECK_BUILD(x >= 0);
    for (int s = 0; s < 3; s++)
        for (int b = 0; b < nb; b++) {
            const int cout = w << s, stride = s > 0 && b == 0 ? 2 : 1;
            char g[48];
            int Ho, a, sc = x, H2;
            snprintf(g, sizeof g, "stage%d.%d/conv1", s + 1, b);
            a = add_conv(m, g, x, H, C, cout, 3, stride, 1, 0, PT_ACT_NONE, PT_INIT_NORMAL, &Ho);
            CHECK_BUILD(a >= 0);
            snprintf(g, sizeof g, "stage%d.%d/bn1", s + 1, b);
            a = add_bn(m, g, a, Ho * Ho, cout, PT_ACT_RELU);
            CHECK_BUILD(a >= 0);
            snprintf(g, sizeof g, "stage%d.%d/conv2", s + 1, b);
            a = add_conv(m, g, a, Ho, cout, cout, 3, 1, 1, 0, PT_ACT_NONE, PT_INIT_NORMAL, &H2);
            CHECK_BUILD(a >= 0);
            snprintf(g, sizeof g, "stage%d.%d/bn2", s + 1, b);
            a = add_bn(m, g, a, Ho * Ho, cout, PT_ACT_NONE);
            CHECK_BUILD(a >= 0);
            if (stride != 1 || C != cout) { /* projection shortcut: 1x1 conv + batch norm */
                snprintf(g, sizeof g, "stage%d.%d/down", s + 1, b);
                sc = add_conv(m, g, x, H, C, cout, 1, stride, 0, 0, PT_ACT_NONE, PT_INIT_NORMAL, &H2);
                CHECK_BUILD(sc >= 0);
                snprintf(g, sizeof g, "stage%d.%d/down_bn", s + 1, b);
                sc = add_bn(m, g, sc, Ho * Ho, cout, PT_ACT_NONE);
                CHECK_BUILD(sc >= 0);
            }
            x = add_add(m, a, sc, PT_ACT_RELU);
            CHECK_BUILD(x >= 0);
            H = Ho, C = cout;
        }
    x = add_pool(m, &pt_op_avgpool2d, x, H, C, H, H, &H);
    CHECK_BUILD(x >= 0);
    x = add_linear(m, "fc", x, 1, C, m->classes, PT_ACT_NONE, 0.0f, 1, PT_INIT_UNIFORM,
                   1.0f / sqrtf((float)C));
    CHECK_BUILD(x >= 0);
    return PT_OK;
}

static int add_embedding(pt_model *m, int T, int D, int V, int pos, int stride)
{
    int out = pt_graph_slot(m, (int64_t)T * D);
    pt_node *n = out < 0 ? NULL : pt_graph_node(m, &pt_op_embedding, 0, -1, out);
    if (!n) return -1;
    n->ia[0] = T, n->ia[1] = D, n->ia[2] = V, n->ia[3] = stride;
    /* GPT-2's N(0, 0.02); nn.Embedding's N(0, 1) for TextCNN. Over tp, vocabulary-parallel:
     * rows [v0, v0 + V/tp) here, the ranks' outputs summed by a tp_g node. */
    n->p[0] = pt_graph_param_split(m, "wte/weight", 2, (int64_t[]){V, D}, 0, 1, PT_INIT_NORMAL,
                                   pos ? 0.02f : 1.0f);
    n->np = 1;
    if (pos) {
        n->p[1] = pt_graph_param(m, "wpe/weight", 2, (int64_t[]){T, D}, PT_INIT_NORMAL, 0.02f);
        n->np = 2;
    }
    if (n->p[0] < 0 || (pos && n->p[1] < 0)) return -1;
    if (m->tp_size <= 1) return out;
    n->ia[4] = m->tp_rank * (V / m->tp_size), n->ia[5] = V / m->tp_size;
    n->ia[6] = m->tp_rank != 0; /* wpe is replicated: one rank adds it before the sum */
    return add_tp_comm(m, op_g(m), out, T);
}

static pt_status parse_textcnn(const char *spec, const char *args, spec_key *k, int *nk)
{
    const spec_key d[] = {KEY("len", 128, 8, 1 << 16), KEY("emb", 64, 1, 4096),
                          KEY("filters", 100, 1, 4096),
                          {.key = "widths", .val = 5, .lo = 1, .hi = 16, .list = {3, 4, 5},
                           .nlist = 3, .is_list = 1},
                          KEY("classes", 6, 2, 1 << 16), KEY("vocab", 256, 2, 1 << 20)};
    memcpy(k, d, sizeof d), *nk = 6;
    PT_TRY(parse_keys(spec, args, k, *nk, "e.g. textcnn:len=128,emb=64,filters=100,widths=3/4/5"));
    for (int i = 0; i < k[3].nlist; i++)
        if (k[3].list[i] > k[0].val)
            return PT_ERR(PT_ERR_ARG, NULL, "bad model spec '%s': width %d > len %d", spec,
                          k[3].list[i], k[0].val);
    return PT_OK;
}

static pt_status build_textcnn(pt_model *m, const char *args)
{
    PT_TRY(no_tp_layout(m));
    spec_key k[MAX_KEYS];
    int nk;
    PT_TRY(parse_textcnn(m->spec, args, k, &nk));
    const int L = k[0].val, E = k[1].val, F = k[2].val, nw = k[3].nlist;
    m->input_size = L;
    m->classes = k[4].val;
    int x = add_embedding(m, L, E, k[5].val, 0, L);
    CHECK_BUILD(x >= 0);
    int out = pt_graph_slot(m, (int64_t)nw * F);
    pt_node *n = out < 0 ? NULL : pt_graph_node(m, &pt_op_conv1d_max, x, -1, out);
    CHECK_BUILD(n);
    n->d.textcnn.L = L, n->d.textcnn.E = E, n->d.textcnn.F = F, n->d.textcnn.nw = nw;
    n->dropout = m->opt.dropout;
    n->aux_row = (int64_t)nw * F;
    for (int i = 0; i < nw; i++) {
        const int kw = k[3].list[i];
        char pn[PT_NAME_LEN];
        n->d.textcnn.k[i] = kw;
        snprintf(pn, sizeof pn, "conv%d/weight", kw);
        n->p[2 * i] = pt_graph_param(m, pn, 3, (int64_t[]){F, kw, E}, PT_INIT_UNIFORM,
                                     1.0f / sqrtf((float)(kw * E)));
        snprintf(pn, sizeof pn, "conv%d/bias", kw);
        n->p[2 * i + 1] = pt_graph_param(m, pn, 1, (int64_t[]){F}, PT_INIT_UNIFORM,
                                         1.0f / sqrtf((float)(kw * E)));
        CHECK_BUILD(n->p[2 * i] >= 0 && n->p[2 * i + 1] >= 0);
    }
    n->np = 2 * nw;
    x = add_linear(m, "fc", out, 1, nw * F, m->classes, PT_ACT_NONE, 0.0f, 1, PT_INIT_UNIFORM,
                   1.0f / sqrtf((float)(nw * F)));
    CHECK_BUILD(x >= 0);
    return PT_OK;
}

static pt_status parse_gpt(const char *spec, const char *args, spec_key *k, int *nk)
{
    const spec_key d[] = {KEY("layers", 4, 1, 64), KEY("heads", 4, 1, 256), KEY("d", 256, 8, 1 << 14),
                          KEY("ctx", 128, 2, 4096), KEY("vocab", 256, 2, 1 << 20)};
    memcpy(k, d, sizeof d), *nk = 5;
    PT_TRY(parse_keys(spec, args, k, *nk, "e.g. gpt:layers=4,heads=4,d=256,ctx=128"));
    if (k[2].val % k[1].val)
        return PT_ERR(PT_ERR_ARG, "choose d divisible by heads", "bad model spec '%s': d=%d, heads=%d",
                      spec, k[2].val, k[1].val);
    return PT_OK;
}

static pt_status build_gpt(pt_model *m, const char *args)
{
    spec_key k[MAX_KEYS];
    int nk;
    PT_TRY(parse_gpt(m->spec, args, k, &nk));
    const int L = k[0].val, Hh = k[1].val, T = k[3].val, V = k[4].val, D = k[2].val;
    m->input_size = T + 1; /* T inputs and, shifted by one, T targets */
    m->targets = T;
    m->classes = V;
    /* tp (Megatron): attention split by heads (q,k,v column-parallel, attn_proj row-parallel),
     * the MLP as a column/row pair, the vocabulary split for the embedding and the tied output
     * layer (local logits; pt_tp_softmax_xent reduces the loss over tp). */
    const int tp = m->tp_size;
    if (tp > 1 && Hh % tp)
        return PT_ERR(PT_ERR_ARG, TP_HINT, "%s: --tp %d does not divide heads=%d", m->spec, tp, Hh);
    if (tp > 1 && (4 * D) % tp)
        return PT_ERR(PT_ERR_ARG, TP_HINT, "%s: --tp %d does not divide the MLP width 4*d=%d",
                      m->spec, tp, 4 * D);
    if (tp > 1 && V % tp)
        return PT_ERR(PT_ERR_ARG, TP_HINT, "%s: --tp %d does not divide vocab=%d", m->spec, tp, V);
    if (seq_par(m) && T % tp)
        return PT_ERR(PT_ERR_ARG, "choose ctx divisible by --tp, or leave --sequence-parallel out",
                      "%s: --sequence-parallel: --tp %d does not divide ctx=%d", m->spec, tp, T);
    const int Ts = seq_par(m) ? T / tp : T; /* positions per rank outside the tp layers */
    const int Dl = D / tp, Hl = Hh / tp, Vl = V / tp;
    m->local_classes = Vl, m->vocab_start = (int64_t)m->tp_rank * Vl;
    const float std = 0.02f, proj_std = 0.02f / sqrtf(2.0f * (float)L); /* GPT-2 */
    int x = add_embedding(m, T, D, V, 1, T + 1);
    CHECK_BUILD(x >= 0);
    for (int l = 0; l < L; l++) {
        char g[48];
        int h, a;
        snprintf(g, sizeof g, "h%d/ln1", l);
        CHECK_BUILD((h = add_ln(m, g, x, Ts, D)) >= 0);
        snprintf(g, sizeof g, "h%d/attn_qkv", l);
        CHECK_BUILD((a = add_linear_tp(m, g, h, T, D, 3 * D, PT_ACT_NONE, 0, PT_INIT_NORMAL, std,
                                       TP_COLUMN, 3)) >= 0);
        int o = pt_graph_slot(m, (int64_t)T * Dl);
        pt_node *n = o < 0 ? NULL : pt_graph_node(m, &pt_op_attention, a, -1, o);
        CHECK_BUILD(n);
        n->ia[0] = T, n->ia[1] = Dl, n->ia[2] = Hl; /* this rank's heads */
        n->aux_row = (int64_t)Hl * T;
        snprintf(g, sizeof g, "h%d/attn_proj", l);
        CHECK_BUILD((a = add_linear_tp(m, g, o, T, D, D, PT_ACT_NONE, 0, PT_INIT_NORMAL, proj_std,
                                       TP_ROW, 1)) >= 0);
        CHECK_BUILD((x = add_add(m, x, a, PT_ACT_NONE)) >= 0);
        snprintf(g, sizeof g, "h%d/ln2", l);
        CHECK_BUILD((h = add_ln(m, g, x, Ts, D)) >= 0);
        snprintf(g, sizeof g, "h%d/mlp_fc", l);
        CHECK_BUILD((a = add_linear_tp(m, g, h, T, D, 4 * D, PT_ACT_GELU, 0, PT_INIT_NORMAL, std,
                                       TP_COLUMN, 1)) >= 0);
        snprintf(g, sizeof g, "h%d/mlp_proj", l);
        CHECK_BUILD((a = add_linear_tp(m, g, a, T, 4 * D, D, PT_ACT_NONE, 0, PT_INIT_NORMAL,
                                       proj_std, TP_ROW, 1)) >= 0);
        CHECK_BUILD((x = add_add(m, x, a, PT_ACT_NONE)) >= 0);
    }
    CHECK_BUILD((x = add_ln(m, "ln_f", x, Ts, D)) >= 0);
    /* a layer norm on a shard of positions: each rank's gradient is a partial sum */
    for (int i = 0; seq_par(m) && i < m->nnodes; i++)
        if (m->nodes[i].op == &pt_op_layernorm)
            m->params[m->nodes[i].p[0]].grad_over_tp = m->params[m->nodes[i].p[1]].grad_over_tp = 1;
    if (tp > 1) CHECK_BUILD((x = add_tp_comm(m, op_f(m), x, T)) >= 0); /* before the vocabulary split */
    /* the output layer borrows the token embedding (weight tying): owns no parameter */
    int out = pt_graph_slot(m, (int64_t)T * Vl);
    pt_node *n = out < 0 ? NULL : pt_graph_node(m, &pt_op_linear, x, -1, out);
    CHECK_BUILD(n);
    n->ia[0] = T, n->ia[1] = D, n->ia[2] = Vl;
    n->p[0] = m->nodes[0].p[0];
    n->np = 0;
    return PT_OK;
}

typedef pt_status (*spec_parser)(const char *spec, const char *args, spec_key *k, int *nk);
static const struct {
    const char *name;
    pt_status (*build)(pt_model *, const char *);
    spec_parser parse; /* NULL: mlp (widths, not keys) */
} models[] = {{"mlp", build_mlp, NULL}, {"cnn", build_cnn, parse_cnn}, {"resnet", build_resnet, parse_resnet},
              {"textcnn", build_textcnn, parse_textcnn}, {"gpt", build_gpt, parse_gpt}};
#define NMODELS (sizeof models / sizeof *models)

/* The model kind of a spec ("gpt:..." or a bare "cnn"), and where its arguments start. */
static int find_model(const char *s, const char **args)
{
    for (size_t i = 0; i < NMODELS; i++) {
        size_t len = strlen(models[i].name);
        if (!strncmp(s, models[i].name, len) && (s[len] == ':' || s[len] == '\0')) {
            *args = s[len] ? s + len + 1 : "";
            return (int)i;
        }
    }
    PT_ERR(PT_ERR_ARG,
           "known models: mlp:IN-HIDDEN-...-CLASSES, cnn, resnet, textcnn, gpt (docs/MODELS.md)",
           "unknown model spec '%s'", s);
    return -1;
}

pt_status pt_model_spec_canonical(const char *spec, char *out, size_t len)
{
    const char *args;
    const int i = find_model(spec, &args);
    if (i < 0) return PT_ERR_ARG;
    size_t off = (size_t)snprintf(out, len, "%s:", models[i].name);
    if (!models[i].parse) {
        int dims[65], n;
        PT_TRY(parse_mlp(args, dims, &n));
        for (int j = 0; j < n && off < len; j++)
            off += (size_t)snprintf(out + off, len - off, "%s%d", j ? "-" : "", dims[j]);
    } else {
        spec_key k[MAX_KEYS];
        int nk;
        PT_TRY(models[i].parse(spec, args, k, &nk));
        for (int j = 0; j < nk && off < len; j++) {
            off += (size_t)snprintf(out + off, len - off, "%s%s=", j ? "," : "", k[j].key);
            if (!k[j].is_list) off += (size_t)snprintf(out + off, len - off, "%d", k[j].val);
            for (int l = 0; k[j].is_list && l < k[j].nlist && off < len; l++)
                off += (size_t)snprintf(out + off, len - off, "%s%d", l ? "/" : "", k[j].list[l]);
        }
    }
    if (off >= len) return PT_ERR(PT_ERR_ARG, NULL, "model spec '%s' is too long", spec);
    return PT_OK;
}

bool pt_model_spec_uses_activation(const char *spec)
{
    int dims[65], n;
    /* only an MLP's hidden layers take --activation; the other models fix theirs */
    if (strncmp(spec, "mlp:", 4) != 0) return false;
    if (parse_mlp(spec + 4, dims, &n) != PT_OK) {
        pt_error_clear();
        return false;
    }
    return n > 2;
}

bool pt_model_spec_same(const char *a, const char *b)
{
    char ca[512], cb[512];
    if (pt_model_spec_canonical(a, ca, sizeof ca) != PT_OK ||
        pt_model_spec_canonical(b, cb, sizeof cb) != PT_OK) {
        pt_error_clear();
        return !strcmp(a, b);
    }
    return !strcmp(ca, cb);
}

pt_status pt_graph_build(pt_model *m)
{
    const char *args;
    const int i = find_model(m->spec, &args);
    if (i < 0) return PT_ERR_ARG;
    if (m->opt.sequence_parallel && models[i].build != build_gpt)
        return PT_ERR(PT_ERR_ARG, "leave --sequence-parallel out for this model",
                      "model '%s': --sequence-parallel applies to gpt only (it shards a sequence)",
                      m->spec);
    return models[i].build(m, args);
}
