#!/usr/bin/env python3
"""Writes small models with PyTorch's tensor names and a float64 numpy forward of each.

numpy only (no torch): the layouts are PyTorch's (nn.Linear weight [out, in];
nn.MultiheadAttention packed in_proj_weight [3d, d] in q|k|v order, batch_first=True;
nn.TransformerEncoderLayer's self_attn/linear1/linear2/norm1/norm2, post-norm and norm_first),
and the forward below follows PyTorch's definitions, written independently of mtinfer.

usage: make_compat_models.py OUTDIR
writes for NAME in mlp, transformer:
  NAME.safetensors        weights + config in __metadata__["mtinfer.config"]
  NAME-plain.safetensors  the same weights without metadata (a plain state_dict export)
  NAME.json               the config alone (for --config / config_path)
  NAME.input.f32          input, raw float32   ([batch, features] or [batch, seq, d_model])
  NAME.expected.f64       numpy float64 forward, raw float64
  NAME.shape              "batch seq" (seq 0 for feature models)
"""
import json
import math
import os
import struct
import sys

import numpy as np


def write_safetensors(path, tensors, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    blobs = []
    for name, arr in tensors:
        a = np.ascontiguousarray(arr, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


class Builder:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.tensors = []
        self.w = {}

    def add(self, name, shape, scale, offset=0.0):
        a = (offset + scale * self.rng.uniform(-1, 1, size=shape)).astype(np.float32)
        self.tensors.append((name, a))
        self.w[name] = a.astype(np.float64)

    def linear(self, p, i, o, bias=True):
        self.add(p + ".weight", (o, i), 1 / math.sqrt(i))
        if bias:
            self.add(p + ".bias", (o,), 1 / math.sqrt(i))

    def norm(self, p, d):
        self.add(p + ".weight", (d,), 0.2, 1.0)
        self.add(p + ".bias", (d,), 0.2)

    def mha(self, p, d):
        self.add(p + "in_proj_weight", (3 * d, d), 1 / math.sqrt(d))
        self.add(p + "in_proj_bias", (3 * d,), 0.1)
        self.linear(p + "out_proj", d, d)


# ---- float64 forward (PyTorch semantics) --------------------------------------------------------

def gelu(x, tanh=False):
    if tanh:
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def layer_norm(x, g, b, eps=1e-5):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * g + b


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def linear(w, p, x, bias=True):
    y = x @ w[p + ".weight"].T
    return y + w[p + ".bias"] if bias else y


def mha(w, p, x, heads):
    """nn.MultiheadAttention(d, heads, batch_first=True)(x, x, x)[0]"""
    b, L, d = x.shape
    dh = d // heads
    qkv = x @ w[p + "in_proj_weight"].T + w[p + "in_proj_bias"]
    q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
    split = lambda t: t.reshape(b, L, heads, dh).transpose(0, 2, 1, 3)
    q, k, v = split(q), split(k), split(v)
    att = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh)) @ v
    att = att.transpose(0, 2, 1, 3).reshape(b, L, d)
    return linear(w, p + "out_proj", att)


def encoder_layer(w, p, x, heads, norm_first, act):
    """nn.TransformerEncoderLayer(d, heads, ff, dropout=0, activation=act, batch_first=True,
    norm_first=norm_first)"""
    f = (lambda t: np.maximum(t, 0)) if act == "relu" else gelu
    ff = lambda t: linear(w, p + ".linear2", f(linear(w, p + ".linear1", t)))
    n1 = lambda t: layer_norm(t, w[p + ".norm1.weight"], w[p + ".norm1.bias"])
    n2 = lambda t: layer_norm(t, w[p + ".norm2.weight"], w[p + ".norm2.bias"])
    sa = lambda t: mha(w, p + ".self_attn.", t, heads)
    if norm_first:
        x = x + sa(n1(x))
        return x + ff(n2(x))
    x = n1(x + sa(x))
    return n2(x + ff(x))


# ---- the two models -----------------------------------------------------------------------------

def mlp_model():
    b = Builder(1)
    config = {"input": {"features": 24}, "layers": [
        {"type": "linear", "in": 24, "out": 32},
        {"type": "gelu"},
        {"type": "layernorm", "dim": 32},
        {"type": "residual", "layers": [
            {"type": "linear", "in": 32, "out": 32},
            {"type": "relu"},
            {"type": "linear", "in": 32, "out": 32, "bias": False}]},
        {"type": "linear", "in": 32, "out": 16},
        {"type": "gelu", "approximate": "tanh"},
        {"type": "softmax"}]}
    b.linear("0", 24, 32)
    b.norm("2", 32)
    b.linear("3.0", 32, 32)
    b.linear("3.2", 32, 32, bias=False)
    b.linear("4", 32, 16)
    batch = 5
    x = b.rng.uniform(-1, 1, size=(batch, 24)).astype(np.float32)
    w = b.w
    h = gelu(linear(w, "0", x.astype(np.float64)))
    h = layer_norm(h, w["2.weight"], w["2.bias"])
    h = h + linear(w, "3.2", np.maximum(linear(w, "3.0", h), 0), bias=False)
    y = softmax(gelu(linear(w, "4", h), tanh=True))
    return b, config, x, y, batch, 0


def transformer_model():
    b = Builder(2)
    d = 32
    config = {"input": {"d_model": d}, "layers": [
        {"type": "transformer_encoder_layer", "name": "layers.0", "d_model": d, "heads": 4,
         "ff": 64},
        {"type": "transformer_encoder_layer", "name": "layers.1", "d_model": d, "heads": 2,
         "ff": 48, "norm_first": True, "activation": "gelu"},
        {"type": "mha", "name": "attn", "d_model": d, "heads": 4},
        {"type": "layernorm", "name": "norm", "dim": d},
        {"type": "linear", "name": "head", "in": d, "out": 8}]}
    for i, ff in ((0, 64), (1, 48)):
        p = "layers.%d" % i
        b.mha(p + ".self_attn.", d)
        b.linear(p + ".linear1", d, ff)
        b.linear(p + ".linear2", ff, d)
        b.norm(p + ".norm1", d)
        b.norm(p + ".norm2", d)
    b.mha("attn.", d)
    b.norm("norm", d)
    b.linear("head", d, 8)
    batch, seq = 3, 7
    x = b.rng.uniform(-1, 1, size=(batch, seq, d)).astype(np.float32)
    w = b.w
    h = encoder_layer(w, "layers.0", x.astype(np.float64), 4, False, "relu")
    h = encoder_layer(w, "layers.1", h, 2, True, "gelu")
    h = mha(w, "attn.", h, 4)
    h = layer_norm(h, w["norm.weight"], w["norm.bias"])
    y = linear(w, "head", h)
    return b, config, x, y, batch, seq


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    for name, make in (("mlp", mlp_model), ("transformer", transformer_model)):
        b, config, x, y, batch, seq = make()
        cj = json.dumps(config)
        base = os.path.join(out, name)
        write_safetensors(base + ".safetensors", b.tensors, {"mtinfer.config": cj})
        write_safetensors(base + "-plain.safetensors", b.tensors)
        with open(base + ".json", "w") as f:
            f.write(cj)
        x.astype("<f4").tofile(base + ".input.f32")
        np.asarray(y, dtype="<f8").tofile(base + ".expected.f64")
        with open(base + ".shape", "w") as f:
            f.write("%d %d\n" % (batch, seq))


if __name__ == "__main__":
    main()
