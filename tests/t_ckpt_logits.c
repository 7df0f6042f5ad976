/* Logits of a checkpoint's model, for tests/test_torch_export.sh:
 *
 *   t_ckpt_logits CKPT IN.h5 OUT.h5
 *
 * Builds the checkpoint's model (its `model` attribute; an mlp's activation from the `config`
 * attribute's "activation = NAME" line), loads the checkpoint with pt_ckpt_load (spec, shapes and
 * every checksum checked), runs the evaluation forward (no dropout, batch norm from its running
 * statistics) on IN.h5's /x (B, input_size) float32, and writes /logits (B, targets * classes)
 * float32 to OUT.h5. Exit 0, or 1 with a message. */
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/ckpt.h"
#include "paratrain/model.h"

static int die(const char *what)
{
    fprintf(stderr, "t_ckpt_logits: error: %s%s%s\n", what, pt_error_message()[0] ? ": " : "",
            pt_error_message());
    MPI_Finalize();
    return 1;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (argc != 4) {
        fprintf(stderr, "usage: t_ckpt_logits CKPT IN.h5 OUT.h5\n");
        MPI_Finalize();
        return 2;
    }
    char path[PT_PATH_MAX], spec[256], optname[32];
    pt_ckpt_meta meta;
    if (pt_ckpt_resolve(argv[1], path, sizeof path) != PT_OK ||
        pt_ckpt_read_meta(path, &meta, spec, sizeof spec, optname, sizeof optname) != PT_OK)
        return die("cannot read the checkpoint");
    pt_model_options mo = {.act = PT_ACT_RELU};
    const char *a = strstr(meta.config, "activation = ");
    if (a && (a == meta.config || a[-1] == '\n')) {
        a += strlen("activation = ");
        mo.act = !strncmp(a, "gelu", 4) ? PT_ACT_GELU : !strncmp(a, "tanh", 4) ? PT_ACT_TANH : PT_ACT_RELU;
    }

    hid_t fi = H5Fopen(argv[2], H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = fi >= 0 ? H5Dopen2(fi, "x", H5P_DEFAULT) : -1;
    if (ds < 0) return die("cannot open /x of the input file");
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[2] = {0, 0};
    if (H5Sget_simple_extent_ndims(sp) != 2 || H5Sget_simple_extent_dims(sp, dims, NULL) != 2)
        return die("/x must be (B, input_size)");
    H5Sclose(sp);
    const int B = (int)dims[0];
    pt_model m;
    if (pt_model_create(&m, spec, &mo, pt_backend_cpu(), B) != PT_OK) return die("cannot build the model");
    if ((int64_t)dims[1] != pt_model_input_size(&m)) return die("/x has the wrong input size");
    float *x = malloc(sizeof(float) * dims[0] * dims[1]);
    if (!x || H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        return die("cannot read /x");
    H5Dclose(ds), H5Fclose(fi);
    if (pt_ckpt_load(MPI_COMM_NULL, path, &m, NULL, &meta) != PT_OK) return die("cannot load the checkpoint");

    pt_fwd_ctx ctx = {.train = 0};
    const float *logits = pt_model_forward(&m, x, B, &ctx);
    if (pt_model_status(&m) != PT_OK) return die("forward failed");
    hsize_t od[2] = {(hsize_t)B, (hsize_t)pt_model_targets(&m) * (hsize_t)pt_model_classes(&m)};
    hid_t fo = H5Fcreate(argv[3], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t osp = H5Screate_simple(2, od, NULL);
    hid_t ods = fo >= 0 ? H5Dcreate2(fo, "logits", H5T_IEEE_F32LE, osp, H5P_DEFAULT, H5P_DEFAULT,
                                     H5P_DEFAULT) : -1;
    if (ods < 0 || H5Dwrite(ods, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, logits) < 0)
        return die("cannot write the logits");
    H5Dclose(ods), H5Sclose(osp), H5Fclose(fo);
    free(x);
    pt_model_destroy(&m);
    MPI_Finalize();
    return 0;
}
