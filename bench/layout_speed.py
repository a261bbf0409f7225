"""Per-input time of a forward and backward pass in the NCHW and the channels-last memory layouts.

The detectors spend their time in forward passes and input gradients of the user's model; the loader
runs a conv net channels-last on the CPU when its input is at most ``CHANNELS_LAST_MAX_SIDE`` pixels
on a side (``worker/loading/finalize.py``). This measures what that rule rests on: registered
architectures with fresh seeded weights, a batch of random inputs, the input's gradient, the best of
``--repeats`` timings per layout. Prints one row per architecture and input size.
Usage: python bench/layout_speed.py [--cases small_cnn:1x28,resnet18:3x32,resnet18:3x64] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from worker.loading import registry  # noqa: E402
from worker.loading.finalize import CHANNELS_LAST_MAX_SIDE  # noqa: E402

DEFAULT_CASES = (
    "small_cnn:1x28,lenet5:1x28,small_resnet:1x28,resnet18:3x32,shufflenet_v2_x0_5:3x32,mobilenet_v3_small:3x32,"
    "vgg11_bn:3x32,resnet18:3x64,resnet18:3x128,mobilenet_v3_small:3x128"
)


def parse_case(case: str) -> tuple[str, int, int]:
    """``arch:CxS`` (channels x side) -> (arch, channels, side)."""
    arch, _, size = case.partition(":")
    channels, _, side = size.partition("x")
    return arch, int(channels), int(side)


def seconds_per_input(net: nn.Module, inputs: torch.Tensor, repeats: int) -> float:
    """Best time over ``repeats`` of one forward pass and the input's gradient, per input."""
    best = float("inf")
    for _ in range(repeats):
        x = inputs.clone().requires_grad_(True)
        started = time.perf_counter()
        torch.autograd.grad(net(x).sum(), x)
        best = min(best, time.perf_counter() - started)
    return best / len(inputs)


def batch_for(side: int) -> int:
    """The batch a detector runs at about this input size (160 seeds at 32 px), scaled to a similar memory."""
    return max(8, 160 * 32 * 32 // (side * side))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated arch:CxS (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: one audit per core)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| architecture | input | batch | NCHW ms/input | channels-last ms/input | speed-up | loader's layout |")
    print("|---|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        arch, channels, side = parse_case(case)
        torch.manual_seed(0)
        net = registry.build(arch, num_classes=10, in_channels=channels).eval()
        for parameter in net.parameters():
            parameter.requires_grad_(False)
        inputs = torch.rand(batch_for(side), channels, side, side, generator=torch.Generator().manual_seed(0))
        times = {}
        for layout in (torch.contiguous_format, torch.channels_last):
            net.to(memory_format=layout)
            times[layout] = seconds_per_input(net, inputs, args.repeats) * 1000
        speedup = times[torch.contiguous_format] / times[torch.channels_last]
        chosen = "channels-last" if side <= CHANNELS_LAST_MAX_SIDE else "NCHW"
        print(
            f"| {arch} | {channels}x{side}x{side} | {len(inputs)} | {times[torch.contiguous_format]:.2f} | "
            f"{times[torch.channels_last]:.2f} | {speedup:.2f} | {chosen} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
