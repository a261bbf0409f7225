"""Parsers for the checkpoint metadata options shared by ``scan`` and ``submit``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def input_shape(text: str) -> tuple[int, int, int]:
    try:
        channels, height, width = (int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 1,28,28 or 3,32,32, got {text!r}") from None
    if min(channels, height, width) < 1:
        raise argparse.ArgumentTypeError(f"C, H and W must be positive, got {text!r}")
    return channels, height, width


def float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.5,0.5,0.5, got {text!r}"
        ) from None


def json_object(text: str) -> dict[str, Any]:
    """A JSON object given inline or as the path of a file whose name ends in ``.json`` (inline JSON
    ends in ``}``, so the two never mix)."""
    from_file = text.endswith(".json")
    try:
        source = Path(text).read_text() if from_file else text
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: {exc.strerror}") from None
    try:
        value = json.loads(source)
    except json.JSONDecodeError as exc:
        hint = "" if from_file else "; give a JSON object inline or the path of a file ending in .json"
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({exc.msg} at position {exc.pos}): {text[:80]!r}{hint}"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('expected a JSON object such as \'{"saliency": {"iterations": 60}}\'')
    return value


def class_names(text: str) -> tuple[str, ...]:
    """A JSON list of names, inline or in a file, or a comma-separated list."""
    source = Path(text).read_text() if Path(text).is_file() else text
    try:
        value = json.loads(source)
    except json.JSONDecodeError:
        value = [name.strip() for name in source.split(",")]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise argparse.ArgumentTypeError("class names must be a JSON list of strings or a comma-separated list")
    return tuple(value)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-shape", type=input_shape, metavar="C,H,W", help="input shape, e.g. 1,28,28")
    parser.add_argument("--num-classes", type=int, metavar="N", help="number of classes (inferred where possible)")
    parser.add_argument("--arch", help="architecture name for state_dict/safetensors checkpoints (see `archs`)")
    parser.add_argument("--mean", type=float_list, help="per-channel input mean the model expects, e.g. 0.5,0.5,0.5")
    parser.add_argument("--std", type=float_list, help="per-channel input std; omit both when the model takes [0,1]")
    parser.add_argument("--class-names", type=class_names, help="JSON list, a .json file, or comma-separated")
