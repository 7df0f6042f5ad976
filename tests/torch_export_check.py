#!/usr/bin/python3
"""PyTorch side of tests/test_torch_export.sh.

  inputs DATA SPLIT B OUT.h5            the split's first B samples as paratrain reads them: /x
                                        (B, input_size) float32 and /y (B,) int32, via h5py
  logits MODEL.pt IN.h5 OUT.h5          the exported model's logits on IN.h5's /x -> /logits
  compare A.h5 B.h5 TOL                 max |a - b| of /logits over max |b|; exit 1 above TOL
  evalloss MODEL.pt DATA SPLIT          mean loss and accuracy over the whole split (as
                                        `paratrain eval` prints them)
  random SPEC B OUT.h5                  B random inputs for the model of SPEC (/x; /y zeros)
  init SPEC ACTIVATION SEED OUT.pt      a PyTorch-initialized model (batch-norm statistics and
                                        affine parameters drawn at random, so they matter)

MODEL.pt is a state_dict with MODEL.pt.json beside it (scripts/ckpt_to_torch.py writes both).
"""
import json
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import torch_models  # noqa: E402

torch.set_num_threads(1)


def load_model(pt):
    with open(pt + ".json") as f:
        meta = json.load(f)
    m = torch_models.build(meta["model"], meta.get("activation", "relu"))
    m.load_state_dict(torch.load(pt), strict=True)
    return m.eval()


def read_split(data, split, limit=None):
    """x (N, input_size) float32 and y (N,) int32, in sample order, scaled as src/io/dataset.c."""
    with h5py.File(os.path.join(data, "index.h5"), "r") as ix:
        files = [f.decode() for f in ix[split + "/files"][()]]
        tokens = int(ix.attrs.get("tokens", 0))
    xs, ys, n = [], [], 0
    for fn in files:
        with h5py.File(os.path.join(data, fn), "r") as f:
            k = f["labels"].shape[0] if limit is None else min(limit - n, f["labels"].shape[0])
            im = f["images"][:k]
            x = im.reshape(k, -1).astype(np.float32)
            if im.dtype == np.uint8 and not tokens:
                x = x * np.float32(1.0 / 255.0)  # paratrain multiplies by the float 1/255
            xs.append(x), ys.append(f["labels"][:k].astype(np.int32))
            n += k
        if limit is not None and n >= limit:
            break
    return np.concatenate(xs), np.concatenate(ys)


def main(a):
    cmd = a[0]
    if cmd == "inputs":
        x, y = read_split(a[1], a[2], int(a[3]))
        with h5py.File(a[4], "w") as f:
            f["x"], f["y"] = x, y
    elif cmd == "logits":
        m = load_model(a[1])
        with h5py.File(a[2], "r") as f:
            x = torch.from_numpy(f["x"][()])
        with torch.no_grad():
            lg = m(x).reshape(x.shape[0], -1).numpy()
        with h5py.File(a[3], "w") as f:
            f["logits"] = lg
    elif cmd == "compare":
        with h5py.File(a[1], "r") as fa, h5py.File(a[2], "r") as fb:
            x, y = fa["logits"][()].astype(np.float64), fb["logits"][()].astype(np.float64)
        if x.shape != y.shape:
            print("logits of shapes %s and %s" % (x.shape, y.shape))
            return 1
        d = np.abs(x - y).max()
        rel = d / max(np.abs(y).max(), 1e-30)
        print("max|a-b| %.3e  max|b| %.3e  relative %.3e  (tolerance %s)" %
              (d, np.abs(y).max(), rel, a[3]))
        return 0 if rel <= float(a[3]) else 1
    elif cmd == "evalloss":
        m = load_model(a[1])
        x, y = read_split(a[2], a[3])
        tot, cor, n = 0.0, 0, 0
        with torch.no_grad():
            for i in range(0, x.shape[0], 256):
                xb, yb = torch.from_numpy(x[i:i + 256]), torch.from_numpy(y[i:i + 256])
                l, c = torch_models.loss_and_correct(m, xb, yb)
                tot, cor, n = tot + l, cor + c, n + xb.shape[0]
        per = m.T if m.kind == "gpt" else 1
        print("%.6f %.6f" % (tot / n, cor / (n * per)))
    elif cmd == "random":
        kind, k = torch_models.parse_spec(a[1])
        B, g = int(a[2]), torch.Generator().manual_seed(5)
        if kind == "gpt":
            x = torch.randint(0, k["vocab"], (B, k["ctx"] + 1), generator=g).float()
        elif kind == "textcnn":
            x = torch.randint(0, k["vocab"], (B, k["len"]), generator=g).float()
        else:
            x = torch.rand(B, k["dims"][0] if kind == "mlp" else k["size"] ** 2, generator=g)
        with h5py.File(a[3], "w") as f:
            f["x"], f["y"] = x.numpy(), np.zeros(B, np.int32)
    elif cmd == "init":
        torch.manual_seed(int(a[3]))
        m = torch_models.build(a[1], a[2])
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.data.uniform_(0.5, 1.5), mod.bias.data.uniform_(-0.5, 0.5)
                mod.running_mean.uniform_(-0.2, 0.2), mod.running_var.uniform_(0.5, 2.0)
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.data.uniform_(0.5, 1.5), mod.bias.data.uniform_(-0.3, 0.3)
        torch.save(m.state_dict(), a[4])
        with open(a[4] + ".json", "w") as f:
            json.dump({"model": a[1], "activation": a[2]}, f)
    else:
        sys.exit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
