"""The ONNX converter on hand-built graphs: ops the legacy exporter folds away, and dynamic shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from worker.loading import ModelSpec, load_checkpoint
from worker.loading.onnx_module import _OPS

ATOL = 1e-5


def _initializer(name: str, tensor: torch.Tensor) -> TensorProto:
    return numpy_helper.from_array(tensor.numpy(), name)


def _graph_model(batch_dim: int | str) -> tuple[bytes, dict[str, torch.Tensor]]:
    """Conv -> BatchNorm -> LeakyRelu -> GlobalAveragePool -> Shape/Gather/Concat/Reshape -> Gemm(transB)."""
    g = torch.Generator().manual_seed(0)
    w = {
        "conv_w": torch.randn(4, 3, 3, 3, generator=g),
        "conv_b": torch.randn(4, generator=g),
        "bn_scale": torch.rand(4, generator=g) + 0.5,
        "bn_bias": torch.randn(4, generator=g),
        "bn_mean": torch.randn(4, generator=g),
        "bn_var": torch.rand(4, generator=g) + 0.5,
        "fc_w": torch.randn(5, 4, generator=g),
        "fc_b": torch.randn(5, generator=g),
    }
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["b"], epsilon=1e-3),
        helper.make_node("LeakyRelu", ["b"], ["r"], alpha=0.2),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Shape", ["p"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus_one"], ["shape"], axis=0),
        helper.make_node("Reshape", ["p", "shape"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], transB=1),
    ]
    constants = [
        helper.make_tensor("zero", TensorProto.INT64, [], [0]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [0]),
        helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1]),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch_dim, 5])],
        initializer=[_initializer(k, v) for k, v in w.items()] + constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString(), w


def _reference(x: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
    c = F.conv2d(x, w["conv_w"], w["conv_b"], stride=2, padding=1)
    b = F.batch_norm(c, w["bn_mean"], w["bn_var"], w["bn_scale"], w["bn_bias"], training=False, eps=1e-3)
    p = F.leaky_relu(b, 0.2).mean(dim=(2, 3))
    return p @ w["fc_w"].t() + w["fc_b"]


def test_hand_built_graph_matches_torch_and_records_its_input_shape(tmp_path: Path) -> None:
    data, weights = _graph_model(1)
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    loaded = load_checkpoint(path)
    x = torch.rand(3, 3, 16, 16)
    assert loaded.format == "onnx" and loaded.input_shape == (3, 16, 16) and loaded.num_classes == 5
    assert torch.allclose(loaded.module(x), _reference(x, weights), atol=ATOL)


def test_dynamic_batch_graph_is_differentiable_in_the_input(tmp_path: Path) -> None:
    data, weights = _graph_model("batch")
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    loaded = load_checkpoint(path, ModelSpec(mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2)))
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    loaded.module(x)[:, 1].sum().backward()
    reference = x.detach().clone().requires_grad_(True)
    _reference((reference - 0.5) / 0.2, weights)[:, 1].sum().backward()
    assert x.grad is not None and torch.allclose(x.grad, reference.grad, atol=ATOL)  # type: ignore[arg-type]
    assert all(not p.requires_grad for p in loaded.module.parameters())


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_shape_op_puts_the_shape_on_its_input_s_device(device: str) -> None:
    # a CPU shape tensor next to CUDA activations breaks the ops that consume it; no GPU here, and the
    # meta device shows the placement follows the input all the same
    shape = _OPS["Shape"]([torch.empty(2, 3, 4, device=device)], {})
    assert shape.device.type == device and shape.dtype == torch.int64 and shape.shape == (3,)
    if device == "cpu":
        assert shape.tolist() == [2, 3, 4]
