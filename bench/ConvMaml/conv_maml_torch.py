#!/usr/bin/env python3
"""The PyTorch twin of bench/ConvMaml: the same MAML workload, unrolled with
torch.autograd.grad(create_graph=True) and torch.func/stateless functional_call, as higher does it.
Prints one JSON line {"Name", "MsPerTask", "PeakRssMiB", "CpuMsPerTask"} with --json (read by Program.cs)."""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    from torch.func import functional_call
except ImportError:
    from torch.nn.utils.stateless import functional_call

WAYS, SHOTS, QUERIES, STEPS, META_BATCH, CHANNELS = 5, 5, 15, 5, 2, 64
INNER_LR, META_LR = 0.1, 1e-3


def net():
    layers = []
    for i in range(3):
        layers += [nn.Conv2d(1 if i == 0 else CHANNELS, CHANNELS, 3), nn.BatchNorm2d(CHANNELS, momentum=1, affine=True),
                   nn.ReLU(inplace=True), nn.MaxPool2d(2, 2)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(CHANNELS, WAYS))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iterations", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    model = net()
    model.train()
    names = [n for n, _ in model.named_parameters()]
    meta = torch.optim.Adam(model.parameters(), lr=META_LR)
    y_s = torch.arange(WAYS).repeat_interleave(SHOTS)
    y_q = torch.arange(WAYS).repeat_interleave(QUERIES)
    start = cpu_start = None
    for it in range(a.warmup + a.iterations):
        if it == a.warmup:
            start = time.perf_counter()
            cpu_start = time.process_time()
        meta.zero_grad()
        for _ in range(META_BATCH):
            x_s = torch.rand(WAYS * SHOTS, 1, 28, 28)
            x_q = torch.rand(WAYS * QUERIES, 1, 28, 28)
            fast = list(model.parameters())
            for _ in range(STEPS):
                loss = F.cross_entropy(functional_call(model, dict(zip(names, fast)), (x_s,)), y_s)
                grads = torch.autograd.grad(loss, fast, create_graph=True)
                fast = [w - INNER_LR * g for w, g in zip(fast, grads)]
            query_loss = F.cross_entropy(functional_call(model, dict(zip(names, fast)), (x_q,)), y_q)
            (query_loss / META_BATCH).backward()
        meta.step()
    ms = (time.perf_counter() - start) * 1000 / (a.iterations * META_BATCH)
    cpu_ms = (time.process_time() - cpu_start) * 1000 / (a.iterations * META_BATCH)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    name = f"PyTorch {torch.__version__} + autograd.grad(create_graph=True)"
    if a.json:
        print(json.dumps({"Name": name, "MsPerTask": ms, "PeakRssMiB": rss, "CpuMsPerTask": cpu_ms}))
    else:
        print(f"{name}: {ms:.1f} ms per task ({cpu_ms:.1f} ms CPU), peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
