"""Validation of a safetensors header before the safetensors library sees the file.

Layout: 8 bytes little-endian header length N, N bytes of JSON ``{name: {dtype, shape, data_offsets}}``
(plus an optional ``__metadata__`` of strings), then the tensor bytes. A hostile header can claim a
tensor of 10^12 elements or offsets outside the file; everything is checked here with Python integers,
so nothing is allocated from a number the file made up.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
from dataclasses import dataclass

from worker.loading.types import CheckpointError

MAX_HEADER_BYTES = 16 * 2**20  # a header lists names and shapes; 16 MiB covers ~10^5 tensors
MAX_DIMS = 8
DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip


@dataclass(frozen=True)
class SafetensorsHeader:
    metadata: dict[str, str]  # the header's `__metadata__` (may name the architecture)


def looks_like_safetensors(data: bytes) -> bool:
    """True when the first bytes are a plausible header length followed by a JSON object."""
    if len(data) < 10:
        return False
    (length,) = struct.unpack("<Q", data[:8])
    return 2 <= length <= len(data) - 8 and data[8:9] == b"{"


def parse_header(data: bytes) -> SafetensorsHeader:
    """Check the header of the safetensors file ``data`` against its own bytes; refuse any lie."""
    (length,) = struct.unpack("<Q", data[:8])
    if length > MAX_HEADER_BYTES:
        raise CheckpointError(f"the safetensors header claims {length} bytes; at most {MAX_HEADER_BYTES} are accepted.")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"the safetensors header is not valid JSON ({exc}); the file is corrupt.") from exc
    if not isinstance(header, dict):
        raise CheckpointError("the safetensors header is not a JSON object; the file is corrupt.")
    data_size = len(data) - 8 - length
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CheckpointError("the safetensors `__metadata__` must map strings to strings.")
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        dtype, shape, begin, end = _entry(name, entry)
        nbytes = math.prod(shape) * DTYPE_SIZES[dtype]
        if not 0 <= begin <= end <= data_size:
            raise CheckpointError(
                f"safetensors tensor `{name}` claims bytes {begin}..{end}, but the file holds only {data_size} "
                "bytes of tensor data; the header lies about its offsets (truncated or tampered file)."
            )
        if end - begin != nbytes:
            raise CheckpointError(
                f"safetensors tensor `{name}` claims shape {list(shape)} of {dtype} ({nbytes} bytes) but its "
                f"offsets span {end - begin} bytes; the header is inconsistent (tampered file)."
            )
        spans.append((begin, end, name))
    spans.sort()
    for (_, end, first), (begin, _, second) in itertools.pairwise(spans):
        if begin < end:
            raise CheckpointError(f"safetensors tensors `{first}` and `{second}` overlap; the header is tampered.")
    return SafetensorsHeader(metadata=metadata)


def _entry(name: str, entry: object) -> tuple[str, tuple[int, ...], int, int]:
    if not isinstance(entry, dict):
        raise CheckpointError(f"safetensors entry `{name}` is not an object; the header is corrupt.")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_SIZES:
        raise CheckpointError(f"safetensors tensor `{name}` has dtype {dtype!r}; supported: {', '.join(DTYPE_SIZES)}.")
    if not (
        isinstance(shape, list)
        and len(shape) <= MAX_DIMS
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise CheckpointError(f"safetensors tensor `{name}` has an invalid shape {shape!r}.")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) and o >= 0 for o in offsets)):
        raise CheckpointError(f"safetensors tensor `{name}` has invalid data_offsets {offsets!r}.")
    return str(dtype), tuple(shape), offsets[0], offsets[1]
