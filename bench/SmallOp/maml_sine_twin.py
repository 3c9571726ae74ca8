#!/usr/bin/env python3
"""PyTorch twin of bench/SmallOp: sinusoid MAML meta-steps, timed the same way.

    /usr/bin/python3 bench/SmallOp/maml_sine_twin.py [--iterations 40] [--warmup 10] [--threads 1,2] [--steps 1,5] [--json]

MLP 1-40-40-1 ReLU, meta-batch 25, K = 10 support and 10 query points, inner SGD lr 0.01 kept on
the graph (second order), meta Adam lr 1e-3, float32. Two implementations:

- unroll: task by task, p - lr * torch.autograd.grad(loss, p, create_graph=True) for each inner step
  (what higher's DifferentiableSGD computes, without its monkey-patching), then the query loss's
  backward into the parameters' .grad;
- vmap: functorch's vmap over the 25 tasks of grad of the query loss after the unrolled inner
  steps (the inner gradients with functorch.grad, which keeps the higher-order graph), all tasks at once.

Prints one line per (kind, steps, threads): median and min ms per meta-step and the mean process CPU ms; with --json, one JSON
object per line for bench/SmallOp to read.
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--iterations", type=int, default=40)
parser.add_argument("--warmup", type=int, default=10)
parser.add_argument("--threads", default="1,2")
parser.add_argument("--steps", default="1,5")
parser.add_argument("--json", action="store_true")
args = parser.parse_args()

META_BATCH, K, INNER_LR, META_LR = 25, 10, 0.01, 1e-3


def init(fan_in, fan_out):
    bound = 1 / math.sqrt(fan_in)
    w = torch.empty(fan_out, fan_in).uniform_(-bound, bound).requires_grad_()
    b = torch.empty(fan_out).uniform_(-bound, bound).requires_grad_()
    return [w, b]


def forward(x, p):
    h = torch.relu(F.linear(x, p[0], p[1]))
    h = torch.relu(F.linear(h, p[2], p[3]))
    return F.linear(h, p[4], p[5])


def draw(a, phase, k):
    x = torch.rand(k, 1) * 10 - 5
    return x, a * torch.sin(x - phase)


def tasks():
    xs, ys, xq, yq = [], [], [], []
    for _ in range(META_BATCH):
        a, phase = 0.1 + 4.9 * torch.rand(()).item(), math.pi * torch.rand(()).item()
        x, y = draw(a, phase, K)
        xs.append(x)
        ys.append(y)
        x, y = draw(a, phase, K)
        xq.append(x)
        yq.append(y)
    return xs, ys, xq, yq


def unroll_step(params, meta, steps):
    meta.zero_grad()
    xs, ys, xq, yq = tasks()
    for t in range(META_BATCH):
        fast = params
        for _ in range(steps):
            grads = torch.autograd.grad(F.mse_loss(forward(xs[t], fast), ys[t]), fast, create_graph=True)
            fast = [p - INNER_LR * g for p, g in zip(fast, grads)]
        loss = F.mse_loss(forward(xq[t], fast), yq[t]) / META_BATCH
        loss.backward()
    meta.step()


def make_vmap_step(steps):
    import functorch

    def inner_loss(p, x, y):
        return F.mse_loss(forward(x, p), y)

    def query_loss(p, xs, ys, xq, yq):
        fast = p
        for _ in range(steps):
            grads = functorch.grad(inner_loss)(fast, xs, ys)
            fast = [w - INNER_LR * g for w, g in zip(fast, grads)]
        return F.mse_loss(forward(xq, fast), yq) / META_BATCH

    meta_grad = functorch.vmap(functorch.grad(query_loss), in_dims=(None, 0, 0, 0, 0))

    def step(params, meta):
        meta.zero_grad()
        xs, ys, xq, yq = (torch.stack(v) for v in tasks())
        detached = [p.detach() for p in params]
        per_task = meta_grad(detached, xs, ys, xq, yq)
        for p, g in zip(params, per_task):
            p.grad = g.sum(0)
        meta.step()

    return step


def timed(step, params, meta):
    for _ in range(args.warmup):
        step(params, meta)
    times = []
    cpu = time.process_time()
    for _ in range(args.iterations):
        start = time.perf_counter()
        step(params, meta)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times), min(times), 1000 * (time.process_time() - cpu) / args.iterations


def report(kind, steps, threads, median, low, cpu):
    if args.json:
        print(json.dumps({"Kind": kind, "Steps": steps, "Threads": threads, "MedianMs": median, "MinMs": low, "CpuMs": cpu}))
    else:
        print(f"{kind:6s} {steps} step(s) {threads} thread(s): {median:.2f} ms per meta-step (min {low:.2f}), {cpu:.2f} CPU ms")


print(f"torch {torch.__version__}")
for threads in (int(t) for t in args.threads.split(",")):
    torch.set_num_threads(threads)
    for steps in (int(s) for s in args.steps.split(",")):
        torch.manual_seed(1)
        params = init(1, 40) + init(40, 40) + init(40, 1)
        meta = torch.optim.Adam(params, lr=META_LR)
        report("unroll", steps, threads, *timed(lambda p, m: unroll_step(p, m, steps), params, meta))
        try:
            vmap_step = make_vmap_step(steps)
        except ImportError as e:
            print(f"functorch absent: {e}")
            continue
        torch.manual_seed(1)
        params = init(1, 40) + init(40, 40) + init(40, 1)
        meta = torch.optim.Adam(params, lr=META_LR)
        report("vmap", steps, threads, *timed(vmap_step, params, meta))
