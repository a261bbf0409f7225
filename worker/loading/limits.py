"""Upper bounds on the sizes the loader builds or allocates from, whoever states them.

A checkpoint can state a size at no cost to itself: a zero-width weight of shape (20_000_000, 0) or an
ONNX input of (1, 1, 40000, 40000) takes a few bytes, yet building that model or running it once takes
gigabytes. So a class count or an input shape, whether a user declared it, the file records it or the
weights imply it, must fit the bounds the API puts on declared values (``app/schemas.py``,
``CheckpointCreate``) before anything is built from it.
"""

from __future__ import annotations

from collections.abc import Sequence

from worker.loading.types import CheckpointError, ModelSpec

MAX_NUM_CLASSES = 100_000
MAX_INPUT_CHANNELS = 16
MAX_INPUT_SIDE = 4096
SHAPE_BOUNDS = f"(C, H, W) with 1 <= C <= {MAX_INPUT_CHANNELS} and 1 <= H, W <= {MAX_INPUT_SIDE}"


def num_classes_in_bounds(count: int) -> bool:
    return 1 <= count <= MAX_NUM_CLASSES


def in_channels_in_bounds(channels: int) -> bool:
    return 1 <= channels <= MAX_INPUT_CHANNELS


def check_declared(spec: ModelSpec) -> None:
    """The API bounds declarations already; this covers callers that skip it (the CLI)."""
    if spec.num_classes is not None and not num_classes_in_bounds(spec.num_classes):
        raise CheckpointError(f"declared num_classes={spec.num_classes}; between 1 and {MAX_NUM_CLASSES} are accepted.")
    if spec.input_shape is not None:
        checked_input_shape(spec.input_shape, "the declared input shape", "Declare the shape the model was trained on.")


def checked_input_shape(shape: Sequence[int], source: str, advice: str) -> tuple[int, int, int]:
    """``shape`` as (C, H, W), or a CheckpointError naming ``source`` ("the declared input shape"), the
    bounds and what to do (``advice``)."""
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise CheckpointError(f"{source} is {shape!r}, not a list of whole numbers. {advice}") from None
    if len(dims) != 3 or not in_channels_in_bounds(dims[0]) or not all(1 <= d <= MAX_INPUT_SIDE for d in dims[1:]):
        raise CheckpointError(f"{source} is {dims}, outside the accepted input shapes ({SHAPE_BOUNDS}). {advice}")
    return dims[0], dims[1], dims[2]
