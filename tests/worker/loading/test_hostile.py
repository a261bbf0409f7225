"""The hostile corpus: every file is refused with a specific message, and its payload never runs.

Payloads are written here as raw pickle opcodes (protocols 0-4) so that each calling opcode is
exercised on purpose; each tries to create the ``canary`` file, and ``test_payloads_are_live`` proves
they would, if unpickled.
"""

from __future__ import annotations

import io
import json
import pickle
import random
import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.worker.loading.conftest import ClaimingTensor, StorageStandIn, add_member, replace_member, torch_zip_bytes
from worker.loading import CheckpointError, ModelSpec, inspect_checkpoint, load_checkpoint


def _u(text: str) -> bytes:
    """SHORT_BINUNICODE (protocol 4) for short strings."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def payloads(canary: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (pickle bytes, the global the refusal must name)."""
    cmd = f"touch {canary}".encode()
    path = str(canary).encode()
    return {
        "os.system via GLOBAL+REDUCE (protocol 0)": (b"cos\nsystem\n(V" + cmd + b"\ntR.", "os.system"),
        "builtins.eval via GLOBAL+REDUCE (protocol 0)": (
            b"cbuiltins\neval\n(V__import__('os').system('" + cmd + b"')\ntR.",
            "builtins.eval",
        ),
        "subprocess.Popen via GLOBAL+REDUCE (protocol 0)": (
            b"csubprocess\nPopen\n((lVtouch\naV" + path + b"\natR.",
            "subprocess.Popen",
        ),
        "subprocess.call via BINUNICODE+REDUCE (protocol 1)": (
            b"csubprocess\ncall\n(]q\x00(X\x05\x00\x00\x00touchX"
            + struct.pack("<I", len(path))
            + path
            + b"etR.",
            "subprocess.call",
        ),
        "os.system via INST (protocol 0)": (b"(V" + cmd + b"\nios\nsystem\n.", "os.system"),
        "os.system via OBJ (protocol 1)": (b"(cos\nsystem\nV" + cmd + b"\no.", "os.system"),
        "subprocess.Popen via NEWOBJ (protocol 2)": (
            b"\x80\x02csubprocess\nPopen\n]q\x00(X\x05\x00\x00\x00touchX"
            + struct.pack("<I", len(path))
            + path
            + b"e\x85\x81.",
            "subprocess.Popen",
        ),
        "builtins.exec via STACK_GLOBAL+REDUCE (protocol 4)": (
            b"\x80\x04" + _u("builtins") + b"\x94" + _u("exec") + b"\x94\x93\x94"
            + _u(f"import os; os.system('touch {canary}')") + b"\x85R.",
            "builtins.exec",
        ),
        "os.system via STACK_GLOBAL from memo (protocol 4)": (
            b"\x80\x04" + _u("os") + b"\x94" + _u("system") + b"\x94\x68\x00\x68\x01\x93"
            + _u(f"touch {canary}") + b"\x85R.",
            "os.system",
        ),
        "posix.system via GLOBAL (protocol 3)": (
            b"\x80\x03cposix\nsystem\nX" + struct.pack("<I", len(cmd)) + cmd + b"\x85R.",
            "posix.system",
        ),
    }  # fmt: skip


PAYLOAD_NAMES = list(payloads(Path("/x")))
LIVE = [name for name in PAYLOAD_NAMES if "NEWOBJ" not in name]  # NEWOBJ only allocates: no side effect


@pytest.mark.parametrize("name", LIVE)
def test_payloads_are_live(name: str, tmp_path: Path) -> None:
    """Control: unpickling really creates the canary, so its absence elsewhere means something."""
    canary = tmp_path / "canary"
    result = pickle.loads(payloads(canary)[name][0])  # the point of this control
    if hasattr(result, "wait"):
        result.wait()
    assert canary.exists()


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_raw_pickle_is_refused_naming_the_global(name: str, canary: Path, tmp_path: Path) -> None:
    data, target = payloads(canary)[name]
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=rf"imports `{target}`"):
        load_checkpoint(path, ModelSpec(arch="small_cnn"))


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_pickle_inside_a_torch_zip_is_refused(name: str, canary: Path, tmp_path: Path) -> None:
    data, target = payloads(canary)[name]
    path = tmp_path / "model.pt"
    path.write_bytes(replace_member(torch_zip_bytes({"w": torch.zeros(3)}), "/data.pkl", data))
    with pytest.raises(CheckpointError, match=rf"pickle `model/data.pkl` imports `{target}`|imports `{target}`"):
        load_checkpoint(path, ModelSpec(arch="small_cnn"))


def test_computed_stack_global_is_refused(canary: Path, tmp_path: Path) -> None:
    # the module name comes out of a call's result, so a static scan cannot know it
    data = b"\x80\x04" + _u("collections") + _u("OrderedDict") + b"\x93)R" + _u("system") + b"\x93."
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match="STACK_GLOBAL on computed values"):
        inspect_checkpoint(path)


def test_torchscript_with_a_tampered_pickle_is_refused(
    tiny_model: torch.nn.Module, canary: Path, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(tiny_model), buffer)
    data, _ = payloads(canary)["os.system via GLOBAL+REDUCE (protocol 0)"]
    path = tmp_path / "model.pt"
    path.write_bytes(replace_member(buffer.getvalue(), "/constants.pkl", data))
    with pytest.raises(CheckpointError, match=r"constants\.pkl` imports `os\.system`"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("call", "refusal"),
    [
        ("torch.from_file('/etc/passwd')", "calls `from_file`"),
        # TorchScript's parser accepts these spellings too, and runs the operator (checked by hand)
        ("torch. from_file('/etc/passwd')", "calls `from_file`"),
        ("torch.\\\n    from_file('/etc/passwd')", "calls `from_file`"),
        ("torch.ops . myext . leak(x)", "torch.ops.myext"),
        ("ops.myext.leak(x)", "torch.ops.myext"),  # how serialized code spells operator calls
    ],
)
def test_torchscript_code_that_touches_files_or_extensions_is_refused(
    call: str, refusal: str, tiny_model: torch.nn.Module, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(tiny_model), buffer)
    archive = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    code_name = next(n for n in archive.namelist() if n.endswith(".py"))
    code = archive.read(code_name) + f"\ndef leak(x: Tensor) -> Tensor:\n  return {call}\n".encode()
    path = tmp_path / "model.pt"
    path.write_bytes(replace_member(buffer.getvalue(), code_name, code))
    with pytest.raises(CheckpointError, match=re.escape(refusal)):
        inspect_checkpoint(path)


def _export_bytes(model: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 28, 28),)), buffer)
    return buffer.getvalue()


def _edit_program(archive: bytes, edit: Callable[[dict[str, Any]], object]) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(archive))
    name = next(n for n in source.namelist() if n.endswith("models/model.json"))
    program = json.loads(source.read(name))
    edit(program)
    return replace_member(archive, "models/model.json", json.dumps(program).encode())


def test_export_guard_code_is_refused(tiny_model: torch.nn.Module, canary: Path, tmp_path: Path) -> None:
    hostile = _edit_program(
        _export_bytes(tiny_model),
        lambda p: p.update(guards_code=[f"__import__('os').system('touch {canary}')"]),
    )
    path = tmp_path / "model.pt2"
    path.write_bytes(hostile)
    with pytest.raises(CheckpointError, match="guards_code"):
        load_checkpoint(path)


def test_export_node_calling_python_is_refused(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    def retarget(program: dict[str, Any]) -> None:
        program["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"

    path = tmp_path / "model.pt2"
    path.write_bytes(_edit_program(_export_bytes(tiny_model), retarget))
    with pytest.raises(CheckpointError, match=r"calls `torch\.os\.system`"):
        load_checkpoint(path)


def test_export_with_hostile_sample_inputs_is_refused(
    tiny_model: torch.nn.Module, canary: Path, tmp_path: Path
) -> None:
    data, _ = payloads(canary)["builtins.exec via STACK_GLOBAL+REDUCE (protocol 4)"]
    nested = replace_member(torch_zip_bytes((torch.zeros(1, 1, 28, 28),)), "/data.pkl", data)
    path = tmp_path / "model.pt2"
    path.write_bytes(replace_member(_export_bytes(tiny_model), "sample_inputs/model.pt", nested))
    with pytest.raises(CheckpointError, match=r"imports `builtins\.exec`"):
        load_checkpoint(path)


def test_export_with_native_code_is_refused(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "model.pt2"
    path.write_bytes(add_member(_export_bytes(tiny_model), "data/aotinductor/model/model.so", b"\x7fELF"))
    with pytest.raises(CheckpointError, match="compiled native code"):
        inspect_checkpoint(path)


def test_zip_bomb_is_refused_before_decompression(tmp_path: Path) -> None:
    out = io.BytesIO(torch_zip_bytes({"w": torch.zeros(3)}))
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model/data/9", bytes(64 * 2**20))  # 64 MiB of zeros deflate ~1000:1
    path = tmp_path / "bomb.pt"
    path.write_bytes(out.getvalue())
    assert path.stat().st_size < 2**20
    with pytest.raises(CheckpointError, match="zip bomb"):
        inspect_checkpoint(path)


def test_archive_larger_than_the_bound_is_refused(tmp_path: Path) -> None:
    out = io.BytesIO(torch_zip_bytes({"w": torch.zeros(3)}))
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as archive:  # ~6:1, not a bomb, just too big
        archive.writestr("model/data/9", bytes(random.Random(0).choices(b"ab", k=3 * 2**20)))
    path = tmp_path / "model.pt"
    path.write_bytes(out.getvalue())
    with pytest.raises(CheckpointError, match="would unpack to more than"):
        inspect_checkpoint(path, max_bytes=2**20)


def test_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(torch_zip_bytes({"w": torch.zeros(1000)}))
    with pytest.raises(CheckpointError, match="the limit is"):
        inspect_checkpoint(path, max_bytes=1000)


def test_truncated_archive_is_refused(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    data = torch_zip_bytes(tiny_model.state_dict())
    path = tmp_path / "model.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path, ModelSpec(arch="small_cnn"))


def _claiming_zip(size: tuple[int, ...], numel: int) -> bytes:
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return ("storage", torch.FloatStorage, "0", "cpu", numel) if isinstance(obj, StorageStandIn) else None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"w": ClaimingTensor(size)})
    return replace_member(torch_zip_bytes({"w": torch.zeros(4)}), "/data.pkl", buffer.getvalue())


def test_storage_claiming_a_huge_tensor_is_refused_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(_claiming_zip((10**6, 10**6), 10**12))
    with pytest.raises(CheckpointError, match=r"claims 1000000000000 elements .* but holds 16 bytes"):
        load_checkpoint(path, ModelSpec(arch="small_cnn"))


def test_tensor_view_beyond_its_storage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(_claiming_zip((10**6, 10**6), 4))
    with pytest.raises(CheckpointError, match="failed to load"):
        load_checkpoint(path, ModelSpec(arch="small_cnn"))


def _safetensors(header: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def test_safetensors_header_with_lying_offsets_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(_safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)))
    with pytest.raises(CheckpointError, match="lies about its offsets"):
        load_checkpoint(path, ModelSpec(arch="small_cnn"))


def test_safetensors_claiming_a_huge_tensor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    header = {"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 16]}}
    path.write_bytes(_safetensors(header, bytes(16)))
    with pytest.raises(CheckpointError, match=r"claims shape \[1000000, 1000000\]"):
        load_checkpoint(path, ModelSpec(arch="small_cnn"))


def test_overlapping_safetensors_are_refused(tmp_path: Path) -> None:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    }
    path = tmp_path / "model.safetensors"
    path.write_bytes(_safetensors(header, bytes(12)))
    with pytest.raises(CheckpointError, match="overlap"):
        inspect_checkpoint(path)


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x00" + random.Random(0).randbytes(4096))
    with pytest.raises(CheckpointError, match="not a checkpoint format this service reads"):
        load_checkpoint(path)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(path)


def test_nan_weights_are_refused_naming_the_tensor(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    state = tiny_model.state_dict()
    state["classifier.3.weight"][0, 0] = float("nan")
    path = tmp_path / "model.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"NaN or infinite values \(classifier.3.weight\)"):
        load_checkpoint(path, ModelSpec(arch="small_cnn"))


def test_onnx_with_external_data_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 10])
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        initializer=[weight],
    )
    path = tmp_path / "model.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(CheckpointError, match="external file"):
        load_checkpoint(path)


def test_onnx_with_an_unsupported_op_names_it(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("TopK", ["f", "k"], ["y", "i"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[helper.make_tensor("k", TensorProto.INT64, [1], [2])],
    )
    path = tmp_path / "model.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(CheckpointError, match="cannot turn into a differentiable module: TopK"):
        inspect_checkpoint(path)


def _dynamic_export_bytes(model: torch.nn.Module) -> bytes:
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (torch.zeros(2, 1, 28, 28),), dynamic_shapes={"x": {0: batch}})
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def test_export_shape_expression_that_runs_python_is_refused(
    tiny_model: torch.nn.Module, canary: Path, tmp_path: Path
) -> None:
    archive = zipfile.ZipFile(io.BytesIO(data := _dynamic_export_bytes(tiny_model)))
    name = next(n for n in archive.namelist() if n.endswith("models/model.json"))
    text = archive.read(name).decode()
    symbol = "Symbol('s77', positive=True, integer=True)"
    assert symbol in text  # what torch writes today; the payload rides on it
    hostile = text.replace(symbol, f"__import__('os').system('touch {canary}') + {symbol}")
    path = tmp_path / "model.pt2"
    path.write_bytes(replace_member(data, "models/model.json", hostile.encode()))
    with pytest.raises(CheckpointError, match="names `__import__`"):
        load_checkpoint(path)


def test_scan_command_exits_2_on_a_hostile_checkpoint(
    canary: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    data, _ = payloads(canary)["os.system via GLOBAL+REDUCE (protocol 0)"]
    path = tmp_path / "model.pt"
    path.write_bytes(replace_member(torch_zip_bytes({"w": torch.zeros(3)}), "/data.pkl", data))
    assert main(["scan", str(path), "--arch", "small_cnn", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "imports `os.system`" in capsys.readouterr().err


def test_deeply_nested_safetensors_header_is_refused(tmp_path: Path) -> None:
    raw = b"{" + b'"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(CheckpointError, match="corrupt"):
        inspect_checkpoint(path)


def test_every_builtin_operator_taking_a_file_name_is_refused() -> None:
    """Against the installed torch's operator registry: an upgrade that adds a file operator fails here."""
    from worker.loading.torch_zip import _ALLOWED_OP_NAMESPACES, _FILE_OPS

    taking_files = {
        schema.name.split("::")[1]
        for schema in torch._C._jit_get_all_schemas()
        if schema.name.split("::")[0] in _ALLOWED_OP_NAMESPACES
        and any(argument.name in ("file", "filename", "filepath", "path_or_buffer") for argument in schema.arguments)
    }
    assert taking_files and taking_files <= _FILE_OPS, taking_files - _FILE_OPS


def test_torchvision_scripted_models_naming_torchvision_ops_classes_are_accepted(tmp_path: Path) -> None:
    """Their code names classes such as `torchvision.ops.misc.Conv2dNormActivation`: not operator calls
    (an earlier text pattern refused mobilenet, efficientnet and convnext archives for it)."""
    torchvision = pytest.importorskip("torchvision")
    path = tmp_path / "mobilenet.pt"
    torch.jit.save(torch.jit.script(torchvision.models.mobilenet_v3_small(num_classes=10).eval()), str(path))
    assert inspect_checkpoint(path) == "torchscript"
