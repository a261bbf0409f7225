"""ONNX models as differentiable torch modules, for the small op set image classifiers use.

The audit needs gradients with respect to the input, which no ONNX runtime gives, so the graph is
re-executed with torch operations, node by node, with the initializers as (frozen) parameters. Only
the ops below are supported; any other op, a custom domain, a subgraph or external data (which would
make the loader read other files) is refused before a single tensor is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from worker.loading.types import CheckpointError

MAX_ELEMENTS = 2**31  # per initializer; the file-size bound already limits the sum
_ITEMSIZE = {1: 4, 10: 2, 11: 8, 6: 4, 7: 8}  # float, float16, double, int32, int64

Op = Callable[[list[Any], dict[str, Any]], Any]


def looks_like_onnx(data: bytes) -> bool:
    """ModelProto's first field is ir_version (field 1, varint): tag byte 0x08."""
    return data[:1] == b"\x08"


def parse(data: bytes) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"the file looks like ONNX but does not parse ({exc}); it is corrupt.") from exc
    if not model.graph.node:
        raise CheckpointError("the file is not a checkpoint format this service reads (an empty ONNX graph).")
    return model


def check(model: Any) -> None:
    """Refuse what the converter cannot run faithfully or what would make the loader touch other files."""
    unsupported = sorted({node.op_type for node in model.graph.node if node.op_type not in _OPS})
    custom = sorted({node.domain for node in model.graph.node if node.domain not in ("", "ai.onnx")})
    if custom:
        raise CheckpointError(f"the ONNX model uses custom operator domains ({', '.join(custom)}); refused.")
    if unsupported:
        raise CheckpointError(
            f"the ONNX model uses operators this service cannot turn into a differentiable module: "
            f"{', '.join(unsupported)}. Supported: {', '.join(sorted(_OPS))}. Upload the model as "
            "TorchScript, torch.export or a state_dict with --arch instead."
        )
    if model.functions:
        raise CheckpointError("the ONNX model defines local functions, which are not supported.")
    for tensor in list(model.graph.initializer) + [
        attr.t for node in model.graph.node for attr in node.attribute if attr.type == attr.TENSOR
    ]:
        _check_tensor(tensor)
    if len(_graph_inputs(model)) != 1 or len(model.graph.output) != 1:
        raise CheckpointError("the ONNX model must take exactly one image input and return one logits output.")


def _check_tensor(tensor: Any) -> None:
    if tensor.data_location == tensor.EXTERNAL or tensor.external_data:
        raise CheckpointError(
            f"ONNX tensor `{tensor.name}` is stored in an external file; upload a single self-contained .onnx "
            "file (onnx.save_model(model, path, save_as_external_data=False))."
        )
    if tensor.data_type not in _ITEMSIZE:
        raise CheckpointError(f"ONNX tensor `{tensor.name}` has unsupported data type {tensor.data_type}.")
    if any(d < 0 for d in tensor.dims) or math.prod(tensor.dims) > MAX_ELEMENTS:
        raise CheckpointError(f"ONNX tensor `{tensor.name}` claims an invalid or huge shape {list(tensor.dims)}.")
    if tensor.raw_data and len(tensor.raw_data) != math.prod(tensor.dims) * _ITEMSIZE[tensor.data_type]:
        raise CheckpointError(
            f"ONNX tensor `{tensor.name}` claims shape {list(tensor.dims)} but stores {len(tensor.raw_data)} "
            "bytes; the file is corrupt or tampered."
        )


def _graph_inputs(model: Any) -> list[Any]:
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def recorded_input_shape(model: Any) -> tuple[int, int, int] | None:
    """(C, H, W) when the graph input declares all three as fixed numbers."""
    dims = _graph_inputs(model)[0].type.tensor_type.shape.dim
    values = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    if len(values) == 4 and all(v > 0 for v in values[1:]):
        return (values[1], values[2], values[3])
    return None


def _to_tensor(proto: Any) -> torch.Tensor:
    from onnx import numpy_helper

    return torch.from_numpy(numpy_helper.to_array(proto).copy())


class OnnxClassifier(nn.Module):
    """Runs a checked ONNX graph with torch ops; float initializers are parameters (NaN-checked later)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        from onnx import helper

        self.weights = nn.ParameterList()
        self._slots: dict[str, tuple[str, int]] = {}
        self._constants: list[torch.Tensor] = []
        for proto in model.graph.initializer:
            self._store(proto.name, _to_tensor(proto))
        self._nodes: list[tuple[str, list[str], list[str], dict[str, Any]]] = []
        for node in model.graph.node:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Constant":
                self._store(node.output[0], _to_tensor(attrs["value"]))
                continue
            self._nodes.append((node.op_type, list(node.input), list(node.output), attrs))
        self.input_name = _graph_inputs(model)[0].name
        self.output_name = model.graph.output[0].name
        for index, tensor in enumerate(self._constants):
            self.register_buffer(f"constant_{index}", tensor)

    def _store(self, name: str, tensor: torch.Tensor) -> None:
        if tensor.is_floating_point():
            self._slots[name] = ("weight", len(self.weights))
            self.weights.append(nn.Parameter(tensor, requires_grad=False))
        else:
            self._slots[name] = ("constant", len(self._constants))
            self._constants.append(tensor)

    def _value(self, name: str) -> torch.Tensor:
        kind, index = self._slots[name]
        return self.weights[index] if kind == "weight" else getattr(self, f"constant_{index}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, Any] = {self.input_name: x}
        for op_type, inputs, outputs, attrs in self._nodes:
            args = [None if not n else env[n] if n in env else self._value(n) for n in inputs]
            env[outputs[0]] = _OPS[op_type](args, attrs)
        return env[self.output_name]


def _pads(attrs: dict[str, Any], op: str) -> tuple[int, int]:
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
        raise CheckpointError(f"ONNX {op} with auto_pad={attrs['auto_pad']!r} is not supported.")
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4 or pads[:2] != pads[2:]:
        raise CheckpointError(f"ONNX {op} with asymmetric or non-2D padding {pads} is not supported.")
    return (pads[0], pads[1])


def _conv(args: list[Any], attrs: dict[str, Any]) -> torch.Tensor:
    x, weight, bias = ([*args, None])[:3]
    return F.conv2d(
        x,
        weight,
        bias,
        stride=tuple(attrs.get("strides", (1, 1))),
        padding=_pads(attrs, "Conv"),
        dilation=tuple(attrs.get("dilations", (1, 1))),
        groups=attrs.get("group", 1),
    )


def _max_pool(args: list[Any], attrs: dict[str, Any]) -> torch.Tensor:
    return F.max_pool2d(
        args[0],
        tuple(attrs["kernel_shape"]),
        stride=tuple(attrs.get("strides", (1, 1))),
        padding=_pads(attrs, "MaxPool"),
        dilation=tuple(attrs.get("dilations", (1, 1))),
        ceil_mode=bool(attrs.get("ceil_mode", 0)),
    )


def _avg_pool(args: list[Any], attrs: dict[str, Any]) -> torch.Tensor:
    return F.avg_pool2d(
        args[0],
        tuple(attrs["kernel_shape"]),
        stride=tuple(attrs.get("strides", (1, 1))),
        padding=_pads(attrs, "AveragePool"),
        ceil_mode=bool(attrs.get("ceil_mode", 0)),
        count_include_pad=bool(attrs.get("count_include_pad", 0)),
    )


def _gemm(args: list[Any], attrs: dict[str, Any]) -> torch.Tensor:
    a, b, c = ([*args, None])[:3]
    a = a.t() if attrs.get("transA", 0) else a
    b = b.t() if attrs.get("transB", 0) else b
    out = attrs.get("alpha", 1.0) * (a @ b)
    return out if c is None else out + attrs.get("beta", 1.0) * c


def _reshape(args: list[Any], attrs: dict[str, Any]) -> torch.Tensor:
    x, shape = args[0], [int(v) for v in args[1].tolist()]
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return x.reshape(shape)


def _axes(args: list[Any], attrs: dict[str, Any]) -> list[int]:
    return [int(v) for v in (args[1].tolist() if len(args) > 1 and args[1] is not None else attrs["axes"])]


def _unsqueeze(args: list[Any], attrs: dict[str, Any]) -> torch.Tensor:
    out = args[0]
    for axis in sorted(a % (out.dim() + len(_axes(args, attrs))) for a in _axes(args, attrs)):
        out = out.unsqueeze(axis)
    return out


def _squeeze(args: list[Any], attrs: dict[str, Any]) -> torch.Tensor:
    if len(args) < 2 and "axes" not in attrs:
        return args[0].squeeze()
    return args[0].squeeze(tuple(_axes(args, attrs)))


def _gather(args: list[Any], attrs: dict[str, Any]) -> torch.Tensor:
    data, indices = args[0], args[1].long()
    axis = attrs.get("axis", 0) % data.dim()
    picked = torch.index_select(data, axis, indices.reshape(-1) % data.shape[axis])
    return picked.reshape((*data.shape[:axis], *indices.shape, *data.shape[axis + 1 :]))


def _flatten(args: list[Any], attrs: dict[str, Any]) -> torch.Tensor:
    x, axis = args[0], attrs.get("axis", 1)
    return x.reshape(math.prod(x.shape[:axis]), -1)


def _batch_norm(args: list[Any], attrs: dict[str, Any]) -> torch.Tensor:
    x, scale, bias, mean, var = args[:5]
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=attrs.get("epsilon", 1e-5))


_OPS: dict[str, Op] = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": lambda a, _: torch.matmul(a[0], a[1]),
    "Relu": lambda a, _: torch.relu(a[0]),
    "LeakyRelu": lambda a, k: F.leaky_relu(a[0], k.get("alpha", 0.01)),
    "Sigmoid": lambda a, _: torch.sigmoid(a[0]),
    "Tanh": lambda a, _: torch.tanh(a[0]),
    "MaxPool": _max_pool,
    "AveragePool": _avg_pool,
    "GlobalAveragePool": lambda a, _: a[0].mean(dim=(2, 3), keepdim=True),
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Add": lambda a, _: a[0] + a[1],
    "Sub": lambda a, _: a[0] - a[1],
    "Mul": lambda a, _: a[0] * a[1],
    "Div": lambda a, _: a[0] / a[1],
    "BatchNormalization": _batch_norm,
    "Identity": lambda a, _: a[0],
    "Dropout": lambda a, _: a[0],
    "Concat": lambda a, k: torch.cat(a, dim=k["axis"]),
    "Transpose": lambda a, k: a[0].permute(*k["perm"]) if "perm" in k else a[0].permute(*reversed(range(a[0].dim()))),
    "Softmax": lambda a, k: torch.softmax(a[0], dim=k.get("axis", -1)),
    # on the input's device: the ops that consume a shape (Gather, Concat with constants) mix devices otherwise
    "Shape": lambda a, _: torch.tensor(a[0].shape, dtype=torch.int64, device=a[0].device),
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Constant": lambda a, _: None,  # folded into the module's constants at build time
}
