#!/usr/bin/env python3
"""The PyTorch rows of `ConvMaml --batched`: the conv MAML workload of conv_maml_torch.py at a given
meta-batch, either task by task (torch.autograd.grad(create_graph=True) through functional_call) or
all tasks at once with functorch's vmap over grad of the unrolled inner loop. Batch norm under vmap
uses batch statistics only (functorch.experimental.replace_all_batch_norm_modules_), which is what a
training-mode forward computes anyway. Prints one JSON line {"Name", "MsPerTask", "PeakRssMiB", "CpuMsPerTask"}.

    /usr/bin/python3 bench/ConvMaml/conv_maml_batched_torch.py --mode unroll|vmap [--meta-batch 4] [--iterations 1] [--warmup 1] [--threads 2]
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from functorch import grad, make_functional, vmap
from functorch.experimental import replace_all_batch_norm_modules_

try:
    from torch.func import functional_call
except ImportError:
    from torch.nn.utils.stateless import functional_call

WAYS, SHOTS, QUERIES, STEPS, CHANNELS = 5, 5, 15, 5, 64
INNER_LR, META_LR = 0.1, 1e-3


def net():
    layers = []
    for i in range(3):
        layers += [nn.Conv2d(1 if i == 0 else CHANNELS, CHANNELS, 3), nn.BatchNorm2d(CHANNELS, momentum=1, affine=True),
                   nn.ReLU(), nn.MaxPool2d(2, 2)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(CHANNELS, WAYS))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["unroll", "vmap"], default="unroll")
    p.add_argument("--meta-batch", type=int, default=4)
    p.add_argument("--iterations", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    model = net()
    model.train()
    y_s = torch.arange(WAYS).repeat_interleave(SHOTS)
    y_q = torch.arange(WAYS).repeat_interleave(QUERIES)
    if a.mode == "vmap":
        replace_all_batch_norm_modules_(model)
        fmodel, _ = make_functional(model)
    names = [n for n, _ in model.named_parameters()]
    params = list(model.parameters())
    meta = torch.optim.Adam(params, lr=META_LR)

    def query_loss(w, x_s, x_q):
        fast = w
        for _ in range(STEPS):
            g = grad(lambda f: F.cross_entropy(fmodel(f, x_s), y_s))(fast)
            fast = [v - INNER_LR * d for v, d in zip(fast, g)]
        return F.cross_entropy(fmodel(fast, x_q), y_q)

    start = cpu_start = None
    for it in range(a.warmup + a.iterations):
        if it == a.warmup:
            start, cpu_start = time.perf_counter(), time.process_time()
        meta.zero_grad()
        x_s = torch.rand(a.meta_batch, WAYS * SHOTS, 1, 28, 28)
        x_q = torch.rand(a.meta_batch, WAYS * QUERIES, 1, 28, 28)
        if a.mode == "vmap":
            grads = vmap(grad(query_loss), in_dims=(None, 0, 0))([w.detach() for w in params], x_s, x_q)
            for w, g in zip(params, grads):
                w.grad = g.mean(0)
        else:
            for t in range(a.meta_batch):
                fast = params
                for _ in range(STEPS):
                    loss = F.cross_entropy(functional_call(model, dict(zip(names, fast)), (x_s[t],)), y_s)
                    g = torch.autograd.grad(loss, fast, create_graph=True)
                    fast = [w - INNER_LR * d for w, d in zip(fast, g)]
                (F.cross_entropy(functional_call(model, dict(zip(names, fast)), (x_q[t],)), y_q) / a.meta_batch).backward()
        meta.step()
    tasks = a.iterations * a.meta_batch
    ms = (time.perf_counter() - start) * 1000 / tasks
    cpu_ms = (time.process_time() - cpu_start) * 1000 / tasks
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    name = f"PyTorch {torch.__version__}, " + ("task by task (autograd.grad)" if a.mode == "unroll" else "functorch vmap + grad")
    print(json.dumps({"Name": name, "MsPerTask": ms, "PeakRssMiB": rss, "CpuMsPerTask": cpu_ms}))


if __name__ == "__main__":
    main()
