/* The model and the optimizer of a training run (and of the checkpoint evaluation). */
#include <string.h>

#include "paratrain/agree.h"
#include "paratrain/comm.h"
#include "paratrain/train_state.h"
#include "paratrain/watchdog.h"

static pt_status parse_act(const char *s, pt_act *a)
{
    if (!strcmp(s, "relu")) *a = PT_ACT_RELU;
    else if (!strcmp(s, "gelu")) *a = PT_ACT_GELU;
    else if (!strcmp(s, "tanh")) *a = PT_ACT_TANH;
    else return PT_ERR(PT_ERR_ARG, "choose relu, gelu or tanh", "unknown activation '%s'", s);
    return PT_OK;
}

pt_status pt_train_build_model(pt_model *m, const pt_train_config *c, const pt_dataset *d,
                               int max_batch, struct pt_comm *tp)
{
    return pt_train_build_model_ex(m, c, d, max_batch, tp, false);
}

pt_status pt_train_build_model_ex(pt_model *m, const pt_train_config *c, const pt_dataset *d,
                                  int max_batch, struct pt_comm *tp, bool forward_only)
{
    const pt_backend *be = pt_backend_by_name(c->backend);
    if (!be && !strcmp(c->backend, "cuda"))
        return PT_ERR(PT_ERR_CUDA,
                      "configure with --with-cuda on a GPU machine, or use --backend cpu",
                      "--backend cuda is not available: %s", pt_backend_cuda_why());
    if (!be)
        return PT_ERR(PT_ERR_ARG, "choose cpu or cuda", "unknown backend '%s'", c->backend);
    /* --reproducible promises the same bits for any thread count too, which GEMM alone breaks */
    if (be->set_deterministic) be->set_deterministic(c->reproducible);
    pt_model_options mo = {.dropout = (float)c->dropout, .sync_bn = c->sync_bn,
                           .forward_only = forward_only};
    /* the model's tensor-parallel layers run on the tp group; a group of one is no group */
    if (tp && tp->size > 1) mo.tp = tp, mo.sequence_parallel = c->sequence_parallel;
    PT_TRY(parse_act(c->activation, &mo.act));
    if (!strcmp(c->conv_algo, "im2col")) mo.conv_algo = PT_CONV_ALGO_IM2COL;
    else if (strcmp(c->conv_algo, "auto"))
        return PT_ERR(PT_ERR_ARG, "choose auto or im2col", "unknown --conv-algo '%s'", c->conv_algo);
    PT_TRY(pt_model_create(m, c->model, &mo, be, max_batch));
    if (pt_model_input_size(m) != d->sample_size) {
        /* each model kind takes its input size from a different key */
        const char *hint = "the model's first width must equal channels*height*width";
        if (!strncmp(c->model, "gpt", 3))
            hint = "gpt's ctx must be one less than the tokens per sample (pt-prep kjv-lm --ctx)";
        else if (!strncmp(c->model, "textcnn", 7))
            hint = "textcnn's len must equal the tokens per sample (pt-prep kjv-books --ctx)";
        else if (!strncmp(c->model, "cnn", 3) || !strncmp(c->model, "resnet", 6))
            hint = "the model's size=S must match the S x S images";
        pt_status st = PT_ERR(PT_ERR_ARG, hint,
                              "model '%s' takes %d inputs, but the samples of '%s' have %lld "
                              "values (%d x %d x %d)",
                              c->model, pt_model_input_size(m), d->dir, (long long)d->sample_size,
                              d->channels, d->height, d->width);
        pt_model_destroy(m);
        return st;
    }
    if (pt_model_classes(m) != d->num_classes) {
        pt_status st = PT_ERR(PT_ERR_ARG, "the model's last width must equal the number of classes",
                              "model '%s' has %d outputs, but '%s' has %d classes", c->model,
                              pt_model_classes(m), d->dir, d->num_classes);
        pt_model_destroy(m);
        return st;
    }
    return PT_OK;
}

/* Synchronized batch norm: sums the statistics over the data-parallel group. */
static int sum_over_dp(void *arg, double *x, int n)
{
    const pt_comm *dp = arg;
    pt_status st = pt_mpi_allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, dp->comm,
                                    "the statistics of synchronized batch norm");
    return st == PT_OK ? MPI_SUCCESS : MPI_ERR_OTHER;
}

/* --backend cuda: the modes whose communication is not staged through host memory yet are
 * refused, then each rank takes the GPU of its node-local rank (modulo the GPUs present). Open MPI
 * here is not CUDA-aware, so anything handing a device pointer to MPI would crash in MPI. */
static pt_status select_cuda(const pt_train_state *s)
{
    const pt_train_config *c = s->cfg;
    const char *mode = c->tp > 1 ? "--tp > 1" : c->pp > 1 ? "--pp > 1"
                                         : c->ps_servers > 0 ? "--ps-servers" : NULL;
    if (mode)
        return PT_ERR(PT_ERR_ARG, "use --backend cpu for this mode, or plain data parallelism on "
                                  "the GPU",
                      "--backend cuda does not support %s yet: that mode's communication still "
                      "hands device memory to MPI, and this Open MPI is not CUDA-aware (only the "
                      "data-parallel gradients are staged through host memory)", mode);
    MPI_Comm node;
    int local = 0;
    PT_MPI_CHECK(MPI_Comm_split_type(s->world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
    int rc = MPI_Comm_rank(node, &local);
    MPI_Comm_free(&node);
    PT_MPI_CHECK(rc);
    return pt_backend_cuda_select(local);
}

pt_status pt_train_setup_model(pt_train_state *s, int max_batch)
{
    const pt_train_config *c = s->cfg;
    pt_status st = PT_OK;
    if (!strcmp(c->backend, "cuda")) {
        /* every rank fails alike (no device anywhere, or a refused mode): one message */
        st = select_cuda(s);
        PT_TRY(pt_agree(s->world, st, NULL));
    }
    st = pt_train_build_model(&s->model, c, &s->train, max_batch, s->tp);
    PT_TRY(pt_agree(s->world, st, NULL));
    st = pt_model_init(&s->model, c->seed);
    PT_TRY(pt_agree(s->world, st, NULL));
    s->model.allreduce_sum = sum_over_dp;
    s->model.allreduce_arg = s->dp;
    if (c->reproducible && pt_model_has_batchnorm(&s->model)) {
        st = PT_ERR(PT_ERR_ARG, "train batch-norm models without --reproducible",
                    "--reproducible computes the batch in chunks, which would change what batch "
                    "norm normalizes over; '%s' has batch norm", c->model);
        PT_TRY(pt_agree(s->world, st, NULL));
    }
    return PT_OK;
}

pt_status pt_train_make_optimizer(pt_train_state *s, int64_t offset, int64_t count)
{
    const pt_train_config *c = s->cfg;
    pt_optim_config oc;
    PT_TRY(pt_optim_config_parse(&oc, c->optimizer));
    if (c->lr >= 0) oc.lr = (float)c->lr;
    if (c->momentum >= 0) oc.momentum = (float)c->momentum;
    if (c->dgc) { /* momentum correction: the ranks keep the momentum, the update has none */
        if (oc.kind != PT_OPT_SGD)
            return PT_ERR(PT_ERR_ARG, "use --optimizer momentum (or sgd) with --dgc",
                          "--dgc corrects SGD momentum; '%s' is not SGD", c->optimizer);
        s->dgc_momentum = oc.momentum;
        oc.momentum = 0.0f, oc.nesterov = false;
    }
    if (c->weight_decay >= 0) oc.weight_decay = (float)c->weight_decay;
    if (c->beta1 >= 0) oc.beta1 = (float)c->beta1;
    if (c->beta2 >= 0) oc.beta2 = (float)c->beta2;
    if (c->eps >= 0) oc.eps = (float)c->eps;
    PT_TRY(pt_optim_create(&s->opt, &oc, s->model.be, count));
    s->opt.offset = offset;
    memset(&s->sched, 0, sizeof s->sched);
    PT_TRY(pt_schedule_parse(&s->sched, c->schedule));
    s->sched.base_lr = oc.lr;
    s->sched.min_lr = (float)c->min_lr;
    s->sched.warmup_steps = c->warmup_steps;
    s->sched.step_size = c->step_size;
    s->sched.gamma = (float)c->gamma;
    s->sched.total_steps = s->total_steps;
    if (s->sched.kind == PT_SCHED_STEP && c->step_size <= 0)
        return PT_ERR(PT_ERR_ARG, "give --step-size N", "the step schedule needs --step-size > 0");
    return PT_OK;
}
