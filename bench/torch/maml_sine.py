#!/usr/bin/env python3
"""The README's main job (MAML on sinusoid regression) in PyTorch, to time against Higher.

    /usr/bin/python3 bench/torch/maml_sine.py [iterations] [threads]

Same configuration as `higher-samples maml-sine`: MLP 1-40-40-1 ReLU, meta-batch 25, K = 10 support
and 10 query points, one inner SGD step of lr 0.01 kept on the graph (create_graph=True), meta Adam
lr 1e-3, float32, two threads by default. The `higher` package is not installed here (Debian ships only
python3-torch), so the inner loop is written as higher's DifferentiableSGD computes it: a
functional forward on a parameter list and p - lr * torch.autograd.grad(loss, p, create_graph=True).
That is the work higher does, without its monkey-patching overhead: a lower bound on higher's time.
"""
import math
import sys
import time

import torch

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
torch.manual_seed(1)
iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 1000


def init(fan_in, fan_out):
    bound = 1 / math.sqrt(fan_in)
    w = torch.empty(fan_out, fan_in).uniform_(-bound, bound).requires_grad_()
    b = torch.empty(fan_out).uniform_(-bound, bound).requires_grad_()
    return [w, b]


params = init(1, 40) + init(40, 40) + init(40, 1)


def forward(x, p):
    h = torch.relu(torch.nn.functional.linear(x, p[0], p[1]))
    h = torch.relu(torch.nn.functional.linear(h, p[2], p[3]))
    return torch.nn.functional.linear(h, p[4], p[5])


def draw(a, phase, k):
    x = torch.rand(k, 1) * 10 - 5
    return x, a * torch.sin(x - phase)


meta = torch.optim.Adam(params, lr=1e-3)
start = time.perf_counter()
for it in range(iterations):
    meta.zero_grad()
    total = 0.0
    for _ in range(25):
        a, phase = 0.1 + 4.9 * torch.rand(()).item(), math.pi * torch.rand(()).item()
        xs, ys = draw(a, phase, 10)
        xq, yq = draw(a, phase, 10)
        grads = torch.autograd.grad(torch.nn.functional.mse_loss(forward(xs, params), ys), params, create_graph=True)
        fast = [p - 0.01 * g for p, g in zip(params, grads)]
        loss = torch.nn.functional.mse_loss(forward(xq, fast), yq) / 25
        loss.backward()
        total += loss.item()
    meta.step()
elapsed = time.perf_counter() - start
print(f"torch {torch.__version__}: {iterations} meta-iterations in {elapsed:.1f} s ({1000 * elapsed / iterations:.2f} ms per meta-iteration), last meta-batch loss {total:.3f}")
