"""PyTorch baseline for `robustify bench`: the same DnCNN-shaped stacks, 2 CPU threads.

Usage: python3 scripts/bench_torch.py QUICK(0|1) — prints one JSON object
{case name: images per second}. `robustify bench` runs it when `import torch` works.
"""
import json
import sys
import time

import torch

torch.set_num_threads(2)
quick = len(sys.argv) > 1 and sys.argv[1] == "1"


def stack():
    chans = [3] + [64] * 16 + [3]
    layers = []
    for i, (cin, cout) in enumerate(zip(chans, chans[1:])):
        layers.append(torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False))
        if i + 2 < len(chans):
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def timed(reps, images, f):
    """Images per second: the best of `reps` runs after one warm-up, as `robustify bench`
    times its own."""
    f()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return images / best


out = {}
net = stack()
for b, hw, reps in ([(16, 32, 3), (1, 224, 2)] if quick else [(64, 32, 3), (4, 224, 2)]):
    x = torch.randn(b, 3, hw, hw)
    name = f"dncnn17x64-{hw}x{hw}-b{b}"
    with torch.no_grad():
        out[f"{name} forward"] = timed(reps, b, lambda: net(x))

    def step():
        net.zero_grad()
        net(x).pow(2).mean().backward()

    out[f"{name} train step"] = timed(reps, b, step)
print(json.dumps(out))
