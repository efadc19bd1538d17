#!/usr/bin/env python3
"""PyTorch peer for `mtinfer bench`: the same workloads, from the same safetensors files, with
the same request definition (host input -> copy in -> forward -> copy out -> result ready),
printed as one JSON object on stdout. `mtinfer bench` runs it and puts its figures beside
mtinfer's. Python threads are what a PyTorch server would use; each thread gets its own CUDA
stream (and, in graph mode, its own CUDA graph of the whole request).

Prints {"available": false, "reason": ...} (exit 0) when torch is not installed.
"""
import argparse
import json
import struct
import sys
import threading
import time


def read_safetensors(path):
    import numpy as np
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        tensors[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(t["shape"]).copy()
    config = json.loads(header["__metadata__"]["mtinfer.config"])
    return config, tensors


def build_module(torch, config, tensors):
    """nn.Sequential (MLP) or nn.TransformerEncoder (story), with PyTorch's own names, loaded
    with strict=True so every tensor of the file must match."""
    nn = torch.nn
    layers = config["layers"]
    if all(l["type"] == "transformer_encoder_layer" for l in layers):
        l0 = layers[0]
        act = l0.get("activation", "relu")
        layer = nn.TransformerEncoderLayer(l0["d_model"], l0["heads"], l0["ff"], dropout=0.0,
                                           activation=act, batch_first=True,
                                           norm_first=l0.get("norm_first", False))
        module = nn.TransformerEncoder(layer, len(layers), enable_nested_tensor=False)
    else:
        mods = []
        for l in layers:
            t = l["type"]
            if t == "linear":
                mods.append(nn.Linear(l["in"], l["out"], bias=l.get("bias", True)))
            elif t == "relu":
                mods.append(nn.ReLU())
            elif t == "gelu":
                mods.append(nn.GELU(approximate=l.get("approximate", "none")))
            else:
                raise ValueError("peer: layer type %s not supported" % t)
        module = nn.Sequential(*mods)
    state = {k: torch.from_numpy(v) for k, v in tensors.items()}
    module.load_state_dict(state, strict=True)
    return module.eval()


class Request:
    """One thread's request state: pinned host input/output, device buffers, own stream."""

    def __init__(self, torch, module, shape, device, graph):
        self.torch, self.module, self.device = torch, module, device
        pin = device == "cuda"
        self.x_host = torch.randn(*shape).pin_memory() if pin else torch.randn(*shape)
        with torch.no_grad():
            out_shape = module(self.x_host.to(device)).shape
        self.y_host = torch.empty(*out_shape).pin_memory() if pin else torch.empty(*out_shape)
        self.stream = torch.cuda.Stream() if pin else None
        self.graph = None
        if pin:
            self.x_dev = torch.empty(*shape, device=device)
            if graph:
                self._capture()

    def _body(self):
        self.x_dev.copy_(self.x_host, non_blocking=True)
        y = self.module(self.x_dev)
        self.y_host.copy_(y, non_blocking=True)

    def _capture(self):
        torch = self.torch
        with torch.cuda.stream(self.stream), torch.no_grad():
            for _ in range(3):  # warm-up on the side stream before capture
                self._body()
            self.stream.synchronize()
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=self.stream):
                self._body()
        self.stream.synchronize()

    def run(self):
        torch = self.torch
        if self.device != "cuda":
            with torch.no_grad():
                self.y_host.copy_(self.module(self.x_host))
            return
        with torch.cuda.stream(self.stream):
            if self.graph is not None:
                self.graph.replay()
            else:
                with torch.no_grad():
                    self._body()
        self.stream.synchronize()


def measure(torch, module, shape, device, threads, graph, duration, trials):
    """Median wall-clock requests/s of `threads` persistent Python threads."""
    reqs = [Request(torch, module, shape, device, graph) for _ in range(threads)]
    for r in reqs:
        r.run()
    rates = []
    for _ in range(trials):
        stop = threading.Event()
        counts = [0] * threads
        barrier = threading.Barrier(threads + 1)

        def work(i):
            barrier.wait()
            n = 0
            while not stop.is_set():
                reqs[i].run()
                n += 1
            counts[i] = n

        ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        time.sleep(duration)
        stop.set()
        for t in ts:
            t.join()
        rates.append(sum(counts) / (time.perf_counter() - t0))
    rates.sort()
    return rates[len(rates) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--mlp", required=True)
    ap.add_argument("--story", required=True)
    ap.add_argument("--threads", default="1,2,4,8,16")
    ap.add_argument("--batches", default="1,8,64,256,1024,4096")
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--skip-all", action="store_true")
    args = ap.parse_args()
    try:
        import torch
    except ImportError as e:
        print(json.dumps({"available": False, "reason": "torch is not installed (%s)" % e}))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"available": False, "reason": "torch sees no GPU"}))
        return 0
    torch.set_num_threads(1)  # the same rule as mtinfer: our threads are the parallelism
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = args.device
    out = {"available": True, "torch": torch.__version__, "device": dev,
           "device_name": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
           "threads": {}, "batch": {}}
    if args.skip_all:
        print(json.dumps(out))
        return 0
    threads = [int(t) for t in args.threads.split(",") if int(t) <= 16]
    modes = ["eager", "graph"] if dev == "cuda" else ["eager"]
    mlp = build_module(torch, *read_safetensors(args.mlp)).to(dev)
    story = build_module(torch, *read_safetensors(args.story)).to(dev)
    for key, module, shape in (("mlp", mlp, (1, 512)), ("story", story, (4, 32, 256))):
        out["threads"][key] = {}
        for mode in modes:
            out["threads"][key][mode] = {}
            for n in threads:
                out["threads"][key][mode][str(n)] = measure(
                    torch, module, shape, dev, n, mode == "graph", args.duration, args.trials)
                print("peer: %s %s %d threads: %.0f req/s" % (
                    key, mode, n, out["threads"][key][mode][str(n)]), file=sys.stderr)
    out["batch"]["mlp"] = {"eager": {}}
    for b in [int(x) for x in args.batches.split(",")]:
        rps = measure(torch, mlp, (b, 512), dev, 1, False, args.duration, args.trials)
        out["batch"]["mlp"]["eager"][str(b)] = {"samples_per_s": rps * b}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
