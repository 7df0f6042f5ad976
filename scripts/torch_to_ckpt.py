#!/usr/bin/python3
"""Writes a PyTorch model (scripts/torch_models.py) as a paratrain checkpoint.

  torch_to_ckpt.py --model SPEC [--activation relu|gelu|tanh] [--state-dict IN.pt | --seed N]
                   [--optimizer NAME] [--data DIR] OUT

OUT: a checkpoint directory (step_00000000.h5 is written there and `latest` names it) or a file
name ending in .h5. The model is torch_models.build(SPEC, ACTIVATION), initialized by PyTorch's
defaults after torch.manual_seed(N) (default 0), or loaded from IN.pt (a state_dict, e.g. from
ckpt_to_torch.py). The file has every attribute `paratrain eval` and `--resume` read (step 0,
epoch 0, `config` naming the model, activation and, with --data, the data directory), a crc32
attribute per dataset (zlib's CRC-32 of the float32 little-endian bytes, as src/io/ckpt.c), and,
for --optimizer (default: momentum), that optimizer's state as zeros, which is what paratrain
starts from. Needs python3-torch, python3-h5py, python3-numpy.
"""
import argparse
import os
import sys
import zlib

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402

FORMAT_VERSION = 1
OPTIM_STATES = {"sgd": [], "momentum": ["momentum"], "nesterov": ["momentum"],
                "adagrad": ["sum_sq"], "adam": ["exp_avg", "exp_avg_sq"],
                "adamw": ["exp_avg", "exp_avg_sq"]}


def attr_str(obj, name, s):
    """A fixed-length, NUL-terminated string attribute, as src/io/h5util.c writes and reads."""
    b = s.encode() + b"\0"
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(len(b))
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    obj.attrs.create(name, np.array(b, dtype="S%d" % len(b)), dtype=h5py.Datatype(tid))


def attr_i64(obj, name, v):
    obj.attrs.create(name, np.int64(v), dtype="<i8")


def write_tensor(f, path, a):
    a = np.ascontiguousarray(a, dtype="<f4")
    ds = f.create_dataset(path, data=a, dtype="<f4")
    attr_i64(ds, "crc32", zlib.crc32(a.tobytes()))


def tensors(model):
    """paratrain name -> numpy array in paratrain's layout: (params, buffers)."""
    params, buffers = {}, {}
    for key, t in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        name = torch_models.from_torch_name(key)
        a = torch_models.from_torch_layout(model.kind, name, t).numpy()
        (buffers if "running_" in key else params)[name] = a
    return params, buffers


def write(path, model, activation, optimizer, data, seed):
    params, buffers = tensors(model)
    config = "model = %s\nactivation = %s\noptimizer = %s\nseed = %d\n" % (
        model.spec, activation, optimizer, seed)
    if data:
        config += "data = %s\n" % data
    with h5py.File(path, "w") as f:
        for n, a in params.items():
            write_tensor(f, "params/" + n, a)
        for n, a in buffers.items():
            write_tensor(f, "buffers/" + n, a)
        for s in OPTIM_STATES[optimizer]:
            for n, a in params.items():
                write_tensor(f, "optim/%s/%s" % (s, n), np.zeros_like(a))
        attr_i64(f, "format_version", FORMAT_VERSION)
        for k in ("step", "epoch", "step_in_epoch", "optimizer_steps", "early_stop_best_step",
                  "early_stop_bad_evals", "optimizer_sharded"):
            attr_i64(f, k, 0)
        f.attrs.create("seed", np.uint64(seed), dtype="<u8")
        f.attrs.create("early_stop_best", np.float64("inf"), dtype="<f8")
        attr_str(f, "rng", "philox4x32-10, counter-based: the state is (seed, step)")
        attr_str(f, "model", model.spec)
        attr_str(f, "optimizer", optimizer)
        attr_i64(f, "num_params", sum(a.size for a in params.values()))
        attr_str(f, "process_grid", "dp=1 tp=1 pp=1")
        for k in ("dp_size", "tp_size", "pp_size", "writers"):
            attr_i64(f, k, 1)
        attr_i64(f, "zero", 0)
        attr_str(f, "grid_order", "pp,dp,tp")
        attr_str(f, "config", config)
        attr_str(f, "source", "scripts/torch_to_ckpt.py, torch " + torch.__version__)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--activation", default="relu", choices=sorted(torch_models.ACTS))
    ap.add_argument("--state-dict")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--optimizer", default="momentum", choices=sorted(OPTIM_STATES))
    ap.add_argument("--data")
    ap.add_argument("out")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    model = torch_models.build(a.model, a.activation)
    if a.state_dict:
        model.load_state_dict(torch.load(a.state_dict), strict=True)
    if a.out.endswith(".h5"):
        write(a.out, model, a.activation, a.optimizer, a.data, a.seed)
        print("wrote %s" % a.out)
        return
    os.makedirs(a.out, exist_ok=True)
    name = "step_00000000.h5"
    tmp, dst = os.path.join(a.out, "." + name + ".tmp"), os.path.join(a.out, name)
    write(tmp, model, a.activation, a.optimizer, a.data, a.seed)
    os.replace(tmp, dst)
    with open(os.path.join(a.out, ".latest.tmp"), "w") as f:
        f.write(name + "\n")
    os.replace(os.path.join(a.out, ".latest.tmp"), os.path.join(a.out, "latest"))
    print("wrote %s" % dst)


if __name__ == "__main__":
    main()
