#!/usr/bin/env python3
"""The PyTorch twin of bench/BatchedMaml: one sinusoid MAML meta-step (MLP 1-40-40-1 ReLU, T tasks x
K inner SGD steps of lr 0.01 kept on the graph, K = 10 points, meta Adam lr 1e-3, float32), two ways:

  unroll: task by task, fast = p - lr * torch.autograd.grad(loss, p, create_graph=True) (what higher does,
          without its monkey-patching);
  vmap:   functorch's vmap over the tasks of grad of the query loss after the unrolled inner loop
          (functorch.grad inside, so the inner gradients are differentiable).

Prints one line per implementation: name<TAB>ms per meta-step<TAB>CPU ms per meta-step.

    /usr/bin/python3 bench/BatchedMaml/maml_sine_batched_torch.py [--tasks 25] [--steps 5] [--iterations 50] [--warmup 5] [--threads 2]
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F
from functorch import grad, vmap

LR = 0.01
K = 10


def init(fan_in, fan_out):
    bound = 1 / math.sqrt(fan_in)
    w = torch.empty(fan_out, fan_in).uniform_(-bound, bound).requires_grad_()
    b = torch.empty(fan_out).uniform_(-bound, bound).requires_grad_()
    return [w, b]


def forward(x, p):
    h = torch.relu(F.linear(x, p[0], p[1]))
    h = torch.relu(F.linear(h, p[2], p[3]))
    return F.linear(h, p[4], p[5])


def draw(tasks):
    amp = 0.1 + 4.9 * torch.rand(tasks, 1, 1)
    phase = math.pi * torch.rand(tasks, 1, 1)
    xs = torch.rand(tasks, K, 1) * 10 - 5
    xq = torch.rand(tasks, K, 1) * 10 - 5
    return xs, amp * torch.sin(xs - phase), xq, amp * torch.sin(xq - phase)


def unroll_step(params, steps, xs, ys, xq, yq):
    tasks = xs.shape[0]
    for t in range(tasks):
        fast = params
        for _ in range(steps):
            grads = torch.autograd.grad(F.mse_loss(forward(xs[t], fast), ys[t]), fast, create_graph=True)
            fast = [p - LR * g for p, g in zip(fast, grads)]
        (F.mse_loss(forward(xq[t], fast), yq[t]) / tasks).backward()


def vmap_step(params, steps, xs, ys, xq, yq):
    def inner_loss(fast, x, y):
        return F.mse_loss(forward(x, fast), y)

    def query_loss(p, x_s, y_s, x_q, y_q):
        fast = p
        for _ in range(steps):
            grads = grad(inner_loss)(fast, x_s, y_s)
            fast = [w - LR * g for w, g in zip(fast, grads)]
        return F.mse_loss(forward(x_q, fast), y_q)

    detached = [p.detach() for p in params]
    meta_grads = vmap(grad(query_loss), in_dims=(None, 0, 0, 0, 0))(detached, xs, ys, xq, yq)
    for p, g in zip(params, meta_grads):
        p.grad = g.mean(0)


def time_it(step, tasks, steps, iterations, warmup):
    torch.manual_seed(1)
    params = init(1, 40) + init(40, 40) + init(40, 1)
    meta = torch.optim.Adam(params, lr=1e-3)
    start = cpu = None
    for it in range(warmup + iterations):
        if it == warmup:
            start, cpu = time.perf_counter(), time.process_time()
        xs, ys, xq, yq = draw(tasks)
        meta.zero_grad()
        step(params, steps, xs, ys, xq, yq)
        meta.step()
    return (time.perf_counter() - start) * 1000 / iterations, (time.process_time() - cpu) * 1000 / iterations


def check_same(tasks, steps):
    """Both PyTorch forms compute the same meta-gradient (so the rows time the same work)."""
    torch.manual_seed(2)
    params = init(1, 40) + init(40, 40) + init(40, 1)
    data = draw(tasks)
    unroll_step(params, steps, *data)
    a = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    vmap_step(params, steps, *data)
    err = max(float((x - p.grad).abs().max() / x.abs().max()) for x, p in zip(a, params))
    if err > 1e-4:
        raise SystemExit(f"unroll and vmap meta-gradients differ: {err}")


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--tasks", type=int, default=25)
    a.add_argument("--steps", type=int, default=5)
    a.add_argument("--iterations", type=int, default=50)
    a.add_argument("--warmup", type=int, default=5)
    a.add_argument("--threads", type=int, default=2)
    o = a.parse_args()
    torch.set_num_threads(o.threads)
    check_same(o.tasks, o.steps)
    for name, step in [("unroll", unroll_step), ("vmap", vmap_step)]:
        ms, cpu = time_it(step, o.tasks, o.steps, o.iterations, o.warmup)
        label = {"unroll": f"PyTorch {torch.__version__}, task by task (autograd.grad create_graph=True)",
                 "vmap": f"PyTorch {torch.__version__}, functorch vmap + grad"}[name]
        print(f"{label}\t{ms:.3f}\t{cpu:.3f}", flush=True)


if __name__ == "__main__":
    main()
