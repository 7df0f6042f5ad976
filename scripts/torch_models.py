"""Plain PyTorch definitions of paratrain's models (src/nn/models.c), for checkpoint export.

build(spec, activation="relu") returns an nn.Module that computes what paratrain computes in
evaluation mode (no dropout; batch norm from its running statistics), from a model spec as
paratrain writes it into a checkpoint's `model` attribute ("gpt:layers=2,d=32", keys left out take
paratrain's defaults).

The modules keep PyTorch's own layouts (Conv2d.weight (cout, cin, k, k), Conv1d.weight
(F, E, K)); to_torch_name / from_torch_name and to_torch_layout / from_torch_layout map between a
paratrain checkpoint's tensors and a state_dict (docs/CHECKPOINT_FORMAT.md, "PyTorch"). Where
paratrain's activations are channels-last, the module reproduces it: cnn's fc1 reads the pooled
map in (h, w, c) order, so its weight is paratrain's unchanged and the module permutes the
activation (NCHW -> NHWC) before flattening.

Inputs are what paratrain's model reads per sample: x (B, input_size) float32; images flattened
(H*W, one channel, scaled to [0, 1]), or byte tokens as float values (textcnn: len tokens; gpt:
ctx + 1 tokens, of which the first ctx are the input and the last ctx the targets).
"""
import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

# Each key=value model's keys and defaults, in paratrain's table order (src/nn/models.c).
DEFAULTS = {
    "cnn": [("c1", 32), ("c2", 64), ("hidden", 512), ("classes", 10), ("size", 28)],
    "resnet": [("width", 16), ("blocks", 2), ("classes", 10), ("size", 28)],
    "textcnn": [("len", 128), ("emb", 64), ("filters", 100), ("widths", (3, 4, 5)), ("classes", 6),
                ("vocab", 256)],
    "gpt": [("layers", 4), ("heads", 4), ("d", 256), ("ctx", 128), ("vocab", 256)],
}


def parse_spec(spec):
    """("mlp", {"dims": [...]}) or (kind, {key: value}) with defaults filled in."""
    kind, _, args = spec.partition(":")
    if kind == "mlp":
        return kind, {"dims": [int(v) for v in args.split("-")]}
    if kind not in DEFAULTS:
        raise ValueError("unknown model spec '%s'" % spec)
    k = dict(DEFAULTS[kind])
    for field in filter(None, args.split(",")):
        key, _, val = field.partition("=")
        if key not in k:
            raise ValueError("bad model spec '%s': unknown key '%s'" % (spec, key))
        k[key] = tuple(int(v) for v in val.split("/")) if key == "widths" else int(val)
    return kind, k


ACTS = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}  # gelu: the erf form, as paratrain


class MLP(nn.Module):
    def __init__(s, dims, activation="relu"):
        super().__init__()
        s.n, s.act = len(dims) - 1, ACTS[activation]
        for i in range(1, len(dims)):
            setattr(s, "fc%d" % i, nn.Linear(dims[i - 1], dims[i]))

    def forward(s, x):
        for i in range(1, s.n + 1):
            x = getattr(s, "fc%d" % i)(x)
            if i < s.n:
                x = s.act(x)
        return x


class CNN(nn.Module):
    def __init__(s, c1, c2, hidden, classes, size):
        super().__init__()
        s.S = size
        s.conv1, s.conv2 = nn.Conv2d(1, c1, 5, padding=2), nn.Conv2d(c1, c2, 5, padding=2)
        H = ((size - 2) // 2 + 1 - 2) // 2 + 1  # two 2x2 pools (floor, as paratrain)
        s.fc1, s.fc2 = nn.Linear(H * H * c2, hidden), nn.Linear(hidden, classes)

    def forward(s, x):
        x = F.max_pool2d(F.relu(s.conv1(x.view(-1, 1, s.S, s.S))), 2)
        x = F.max_pool2d(F.relu(s.conv2(x)), 2)
        x = x.permute(0, 2, 3, 1).flatten(1)  # paratrain's channels-last (h, w, c) order
        return s.fc2(F.relu(s.fc1(x)))


class BasicBlock(nn.Module):
    def __init__(s, cin, cout, stride):
        super().__init__()
        s.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        s.bn1 = nn.BatchNorm2d(cout)
        s.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        s.bn2 = nn.BatchNorm2d(cout)
        s.has_down = stride != 1 or cin != cout
        if s.has_down:
            s.down = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
            s.down_bn = nn.BatchNorm2d(cout)

    def forward(s, x):
        a = s.bn2(s.conv2(F.relu(s.bn1(s.conv1(x)))))
        return F.relu(a + (s.down_bn(s.down(x)) if s.has_down else x))


class Stem(nn.Module):
    def __init__(s, w):
        super().__init__()
        s.conv = nn.Conv2d(1, w, 3, 1, 1, bias=False)
        s.bn = nn.BatchNorm2d(w)

    def forward(s, x):
        return F.relu(s.bn(s.conv(x)))


class ResNet(nn.Module):
    def __init__(s, width, blocks, classes, size):
        super().__init__()
        s.S = size
        s.stem = Stem(width)
        C = width
        for st in range(3):
            cout = width << st
            bl = []
            for b in range(blocks):
                bl.append(BasicBlock(C, cout, 2 if st > 0 and b == 0 else 1))
                C = cout
            setattr(s, "stage%d" % (st + 1), nn.ModuleList(bl))
        s.fc = nn.Linear(C, classes)

    def forward(s, x):
        x = s.stem(x.view(-1, 1, s.S, s.S))
        for st in (s.stage1, s.stage2, s.stage3):
            for b in st:
                x = b(x)
        return s.fc(x.mean((2, 3)))  # global average pool


class TextCNN(nn.Module):
    def __init__(s, emb, filters, widths, classes, vocab, **k):  # k: len (any: max over time)
        super().__init__()
        s.widths = widths
        s.wte = nn.Embedding(vocab, emb)
        for k in widths:
            setattr(s, "conv%d" % k, nn.Conv1d(emb, filters, k))
        s.fc = nn.Linear(len(widths) * filters, classes)

    def forward(s, x):
        e = s.wte(x.long()).transpose(1, 2)  # (B, E, L)
        h = [F.relu(getattr(s, "conv%d" % k)(e)).max(2).values for k in s.widths]
        return s.fc(torch.cat(h, 1))


class GPTBlock(nn.Module):
    def __init__(s, D):
        super().__init__()
        s.ln1, s.attn_qkv, s.attn_proj = nn.LayerNorm(D), nn.Linear(D, 3 * D), nn.Linear(D, D)
        s.ln2, s.mlp_fc, s.mlp_proj = nn.LayerNorm(D), nn.Linear(D, 4 * D), nn.Linear(4 * D, D)


class GPT(nn.Module):
    """Pre-norm decoder; attn_qkv's rows are [q | k | v], head h in rows h*D/heads.. of each third;
    the output layer is tied to wte (no parameter of its own)."""

    def __init__(s, layers, heads, d, ctx, vocab):
        super().__init__()
        s.H, s.D, s.T = heads, d, ctx
        s.wte, s.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        s.h = nn.ModuleList([GPTBlock(d) for _ in range(layers)])
        s.ln_f = nn.LayerNorm(d)

    def forward(s, tok):
        T, D, H = s.T, s.D, s.H
        x = s.wte(tok[:, :T].long()) + s.wpe(torch.arange(T))
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        for b in s.h:
            q, k, v = b.attn_qkv(b.ln1(x)).split(D, 2)
            q, k, v = [t.view(-1, T, H, D // H).transpose(1, 2) for t in (q, k, v)]
            att = (q @ k.transpose(2, 3)) / math.sqrt(D // H)
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)
            x = x + b.attn_proj((att @ v).transpose(1, 2).reshape(-1, T, D))
            x = x + b.mlp_proj(F.gelu(b.mlp_fc(b.ln2(x))))
        return s.ln_f(x) @ s.wte.weight.T  # (B, T, vocab)

    def targets(s, tok):
        return tok[:, 1:s.T + 1].long()


def build(spec, activation="relu"):
    kind, k = parse_spec(spec)
    if kind == "mlp":
        m = MLP(k["dims"], activation)
    elif kind == "cnn":
        m = CNN(**k)
    elif kind == "resnet":
        m = ResNet(**k)
    elif kind == "textcnn":
        m = TextCNN(**k)
    else:
        m = GPT(**k)
    m.spec, m.kind = spec, kind
    return m


def loss_and_correct(model, x, y):
    """Summed per-sample loss (a language model's: the mean over its positions) and the count of
    correct targets, as paratrain's evaluation computes them."""
    logits = model(x)
    if model.kind == "gpt":
        t = model.targets(x)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t.reshape(-1), reduction="none")
        return ce.view(t.shape).mean(1).sum().item(), (logits.argmax(-1) == t).sum().item()
    ce = F.cross_entropy(logits, y.long(), reduction="sum")
    return ce.item(), (logits.argmax(-1) == y.long()).sum().item()


# ---------------------------------------------------------------- names and layouts

def to_torch_name(name):
    """paratrain "h0/attn_qkv/weight" -> state_dict "h.0.attn_qkv.weight"; "fc1/bias" ->
    "fc1.bias"; "stage2.0/bn1/running_mean" -> "stage2.0.bn1.running_mean"."""
    return re.sub(r"^h(\d+)/", r"h.\1/", name).replace("/", ".")


def from_torch_name(key):
    n = re.sub(r"^h\.(\d+)\.", r"h\1.", key)
    # the last two fields are the module and the tensor; the rest is the layer path
    parts = n.split(".")
    if n.startswith("stage"):  # "stage1.0.conv1.weight" -> "stage1.0/conv1/weight"
        return parts[0] + "." + parts[1] + "/" + "/".join(parts[2:])
    return "/".join(parts)


def _is_conv2d(kind, name, ndim):
    return kind in ("cnn", "resnet") and ndim == 4


def to_torch_layout(kind, name, a):
    """A paratrain tensor (numpy or torch) in the state_dict's layout."""
    t = torch.as_tensor(a)
    if _is_conv2d(kind, name, t.dim()):
        return t.permute(0, 3, 1, 2).contiguous()  # (cout, k, k, cin) -> (cout, cin, k, k)
    if kind == "textcnn" and t.dim() == 3:
        return t.permute(0, 2, 1).contiguous()  # (F, K, E) -> (F, E, K)
    return t.contiguous()


def from_torch_layout(kind, name, t):
    t = t.detach()
    if _is_conv2d(kind, name, t.dim()):
        return t.permute(0, 2, 3, 1).contiguous()
    if kind == "textcnn" and t.dim() == 3:
        return t.permute(0, 2, 1).contiguous()
    return t.contiguous()
