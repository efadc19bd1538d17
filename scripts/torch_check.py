#!/usr/bin/env python3
"""Checks mtinfer against PyTorch itself on files written by `mtinfer model create`.

Needs torch (and numpy); exits 0 with a notice when torch is missing. For each case it
creates the model with the CLI, loads the file's weights into the PyTorch module with
load_state_dict(strict=True) (so every name and shape must match PyTorch's exactly), runs
`mtinfer run --input --output` on the same input, and prints ||out-ref||/||ref|| and
max|out-ref|/max|ref| against PyTorch in float64. Exit 1 when an error exceeds --tol.

usage: torch_check.py [--cli build/bin/mtinfer] [--backend cuda] [--tol 1e-4]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "peers"))
from torch_peer import read_safetensors  # noqa: E402  (one reader for the peer and this check)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default="build/bin/mtinfer")
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    try:
        import torch
        from torch import nn
    except ImportError:
        print("torch_check: torch is not installed; skipped")
        return 0
    cases = [
        ("mlp", ["mlp", "--dims", "512,1024,1024,512"], 64, 0, None),
        ("mlp-gelu", ["mlp", "--dims", "256,512,128", "--act", "gelu"], 8, 0, None),
        ("transformer", ["transformer", "--d-model", "256", "--heads", "4", "--ff", "1024",
                         "--layers", "2"], 4, 32, (False, "relu")),
        ("transformer-norm-first", ["transformer", "--d-model", "128", "--heads", "8", "--ff",
                                    "256", "--layers", "2", "--norm-first", "--act", "gelu"],
         3, 17, (True, "gelu")),
    ]
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, create, batch, seq, tr in cases:
            path = os.path.join(tmp, name + ".safetensors")
            subprocess.run([args.cli, "model", "create", *create, "--seed", "7", "-o", path],
                           check=True, stdout=subprocess.DEVNULL)
            sd = {k: torch.from_numpy(v).double() for k, v in read_safetensors(path)[1].items()}
            if tr is None:
                dims = [int(d) for d in create[create.index("--dims") + 1].split(",")]
                act = nn.GELU() if "gelu" in create else nn.ReLU()
                mods = []
                for i in range(len(dims) - 1):
                    mods.append(nn.Linear(dims[i], dims[i + 1]))
                    if i + 2 < len(dims):
                        mods.append(act)
                model = nn.Sequential(*mods)
                shape = (batch, dims[0])
            else:
                g = lambda k: int(create[create.index(k) + 1])
                layer = nn.TransformerEncoderLayer(g("--d-model"), g("--heads"), g("--ff"),
                                                   dropout=0.0, activation=tr[1],
                                                   batch_first=True, norm_first=tr[0])
                model = nn.TransformerEncoder(layer, g("--layers"), enable_nested_tensor=False)
                shape = (batch, seq, g("--d-model"))
            model = model.double().eval()
            model.load_state_dict(sd, strict=True)
            x = np.random.default_rng(1).uniform(-1, 1, size=shape).astype(np.float32)
            xin = os.path.join(tmp, name + ".in")
            yout = os.path.join(tmp, name + ".out")
            x.tofile(xin)
            cmd = [args.cli, "run", path, "--backend", args.backend, "--batch", str(batch),
                   "--input", xin, "--output", yout, "--repeat", "3"]
            if seq:
                cmd += ["--seq", str(seq)]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            y = np.fromfile(yout, dtype="<f4").astype(np.float64)
            with torch.no_grad():
                ref = model(torch.from_numpy(x).double()).numpy().reshape(-1)
            rel = np.linalg.norm(y - ref) / np.linalg.norm(ref)
            mx = np.abs(y - ref).max() / np.abs(ref).max()
            ok = rel <= args.tol and mx <= args.tol
            failed += not ok
            print("%-24s %-8s ||out-ref||/||ref|| = %.3e  max|out-ref|/max|ref| = %.3e  %s"
                  % (name, args.backend, rel, mx, "ok" if ok else "FAILED"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
