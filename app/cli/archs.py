"""``backdoor-audit archs``: the architecture names a state_dict or safetensors upload may declare."""

from __future__ import annotations

import argparse
import json

ACCEPTED_FORMATS = """accepted checkpoint formats (detected from the file's bytes, not its name):
  safetensors          weights + --arch NAME (or an "arch" entry in the file's metadata)
  .pt/.pth/.bin        torch.save state_dict, loaded with weights_only=True after a pickle scan;
                       {"state_dict": ...}/{"model": ...} wrappers and module. prefixes are undone
  TorchScript          torch.jit.save archives (pickles scanned, file-touching ops refused)
  torch.export (.pt2)  torch.export.save archives (static shapes, aten ops only, no native code)
  ONNX                 a self-contained graph of Conv/Gemm/MatMul/pooling/BatchNorm/activations"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "archs",
        help="list the architectures --arch accepts",
        description="List the registered architectures (built with fresh weights; nothing is downloaded).",
        epilog=ACCEPTED_FORMATS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list of {name, family}")
    parser.add_argument("--family", help="only this family (project, torchvision, timm)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from worker.loading import registry

    entries = [registry.describe(name) for name in registry.available()]
    if args.family:
        entries = [entry for entry in entries if entry.family == args.family]
    if args.json:
        print(json.dumps([{"name": e.name, "family": e.family} for e in entries], indent=2))
        return 0
    width = max((len(e.name) for e in entries), default=0)
    for entry in sorted(entries, key=lambda e: (e.family != "project", e.family, e.name)):
        print(f"{entry.name:<{width}}  {entry.family}")
    return 0
