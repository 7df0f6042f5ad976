#!/usr/bin/python3
"""Exports a paratrain checkpoint to a PyTorch state_dict.

  ckpt_to_torch.py CKPT OUT.pt

CKPT is a checkpoint file, a checkpoint directory (its `latest`) or DIR/latest. OUT.pt is written
with torch.save: the state_dict of scripts/torch_models.py's definition of the checkpoint's model,
which loads it with load_state_dict(strict=True):

    import torch, torch_models                      # scripts/ on sys.path
    model = torch_models.build(spec, activation)    # both printed here, and in OUT.pt.json
    model.load_state_dict(torch.load("OUT.pt")); model.eval()

Every dataset's crc32 is checked. Batch-norm running statistics come from /buffers
(num_batches_tracked is set to the checkpoint's step; paratrain's momentum is fixed at 0.1, so
PyTorch never reads it). The optimizer state (/optim) is not exported. The layouts are in
docs/CHECKPOINT_FORMAT.md ("PyTorch"). Needs python3-torch, python3-h5py, python3-numpy.
"""
import json
import os
import sys
import zlib

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402


def resolve(arg):
    d = arg[:-len("latest")] if arg.endswith("latest") else arg
    if os.path.isdir(d or "."):
        with open(os.path.join(d or ".", "latest")) as f:
            return os.path.join(d or ".", f.readline().strip())
    return arg


def attr_str(f, name, default=None):
    if name not in f.attrs:
        return default
    v = f.attrs[name]
    return v.decode() if isinstance(v, bytes) else str(v)


def activation_of(config):
    for line in config.splitlines():
        key, _, val = line.partition(" = ")
        if key == "activation":
            return val.strip()
    return "relu"


def read_checked(ds, name):
    a = np.ascontiguousarray(ds[()], dtype="<f4")
    want = int(ds.attrs["crc32"])
    got = zlib.crc32(a.tobytes())
    if got != want:
        raise SystemExit("ckpt_to_torch: checksum mismatch for '%s' (stored 0x%08x, computed "
                         "0x%08x): the checkpoint is damaged" % (name, want, got))
    return a


def export(path):
    """(spec, activation, step, state_dict) of the checkpoint at path."""
    with h5py.File(path, "r") as f:
        spec, config = attr_str(f, "model"), attr_str(f, "config", "")
        step = int(f.attrs["step"])
        act = activation_of(config)
        model = torch_models.build(spec, act)
        kind = model.kind
        sd = {}
        for grp in ("params", "buffers"):
            if grp not in f:
                continue
            names = []
            f[grp].visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            for n in names:
                a = read_checked(f[grp][n], "/%s/%s" % (grp, n))
                sd[torch_models.to_torch_name(n)] = torch_models.to_torch_layout(kind, n, a)
    for key, v in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(step, dtype=torch.long)
    model.load_state_dict(sd, strict=True)  # every tensor present, every shape right
    return spec, act, step, model.state_dict()


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__.strip().split("\n\n")[1])
    path = resolve(argv[1])
    spec, act, step, sd = export(path)
    torch.save(sd, argv[2])
    with open(argv[2] + ".json", "w") as f:
        json.dump({"model": spec, "activation": act, "step": step, "source": path}, f)
        f.write("\n")
    print("%s: model %s, activation %s, step %d, %d tensors -> %s" %
          (path, spec, act, step, len(sd), argv[2]))


if __name__ == "__main__":
    main(sys.argv)
