"""Safety checks for ``torch.export`` archives (``.pt2``), and the module they load into.

``torch.export.load`` is not a safe loader, although the format is mostly JSON. Read in torch 2.14:
pickled weights and constants go through ``torch.load(weights_only=False)`` and ``pickle.loads``; sample
inputs fall back to ``weights_only=False``; node targets are resolved by ``getattr`` chains from the
``torch`` module (``torch.os.system`` resolves); symbolic shape strings go through ``sympy.sympify``,
which evaluates Python; ``guards_code`` strings are ``exec``-ed when the module first runs; and a
``data/aotinductor`` folder holds native code. (The sympify and guards_code payloads were seen to run
under plain torch.export.load; the tests keep both refused.) So an archive is accepted only when
every one of those paths is closed: nested pickles pass the pickle scan, constants are plain tensors,
node targets are aten or ``operator`` functions, shape strings use a tiny arithmetic grammar, guards
are empty and no native code is present.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from worker.loading.archive import ZIP_MAGIC, Archive, is_zip, open_archive
from worker.loading.finalize import check_weights_stored
from worker.loading.limits import checked_input_shape
from worker.loading.torch_zip import scan_state_dict_zip
from worker.loading.types import CheckpointError

MAX_PROGRAM_JSON_BYTES = 256 * 2**20
_TOP_LEVEL = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_DATA_FOLDERS = ("data/weights/", "data/constants/", "data/sample_inputs/")
_NATIVE_FOLDERS = ("data/aotinductor/", "data/executorch/", "data/mtia", "xl_model_weights/")
_PICKLED_OBJECT_PREFIXES = ("custom_obj_", "opaque_obj_")

_OPERATOR_FUNCTIONS = {
    "getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "neg", "pow",
    "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "not_", "abs",
}  # fmt: skip
_ATEN_TARGET = re.compile(r"^torch\.ops\.aten\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EXPR_TOKEN = re.compile(
    r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|'([A-Za-z0-9_]*)'|(\d+(?:\.\d+)?(?:e-?\d+)?)|([-+*/%(),<>=!&|~^]))"
)
_SYMBOL = re.compile(r"^[a-z]{1,2}\d+$")  # s0, u3, ps12: shape symbols torch writes
_SYMPY_NAMES = {
    "Mod", "FloorDiv", "CleanDiv", "CeilDiv", "Max", "Min", "Abs", "floor", "ceiling", "PythonMod",
    "TruncToInt", "IntTrueDiv", "FloatTrueDiv", "ToFloat", "PowByNatural", "FloatPow", "Eq", "Ne",
    "Ge", "Gt", "Le", "Lt", "And", "Or", "Not", "oo", "True", "False", "sqrt",
    # torch writes sympy's srepr, e.g. "Symbol('s77', positive=True, integer=True)"
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "positive", "negative", "nonnegative",
    "integer", "real", "finite", "nonzero", "zero", "even", "odd",
}  # fmt: skip


def is_export_archive(archive: Archive) -> bool:
    return "archive_format" in archive.members or any(name.startswith("models/") for name in archive.members)


def scan_export(archive: Archive, *, max_total: int) -> None:
    """Refuse the archive unless every path by which torch.export.load could run code is closed."""
    configs: dict[str, dict[str, Any]] = {}
    for name in archive.names():
        if name.startswith(_NATIVE_FOLDERS):
            raise CheckpointError(
                f"{archive.where} contains compiled native code (`{name}`); only the portable exported "
                "program is accepted. Save it with `torch.export.save(exported_program, path)`."
            )
        if name in _TOP_LEVEL or name.startswith("extra/"):
            continue
        if name.startswith("models/") and name.endswith(".json"):
            _check_program(archive, name)
        elif name.startswith(_DATA_FOLDERS) and name.endswith("_config.json"):
            configs[name] = _read_json(archive, name)
        elif name.startswith(_DATA_FOLDERS):
            _check_payload(archive, name, max_total)
        else:
            raise CheckpointError(
                f"{archive.where} has an unexpected member `{name}` for a torch.export archive; refused."
            )
    for config_name, config in configs.items():
        _check_payload_config(archive, config_name, config)


def _read_json(archive: Archive, name: str) -> dict[str, Any]:
    if archive.size(name) > MAX_PROGRAM_JSON_BYTES:
        raise CheckpointError(f"{archive.where}: `{name}` is larger than {MAX_PROGRAM_JSON_BYTES} bytes.")
    try:
        value = json.loads(archive.read(name))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{archive.where}: `{name}` is not valid JSON ({exc}).") from exc
    if not isinstance(value, dict):
        raise CheckpointError(f"{archive.where}: `{name}` is not a JSON object.")
    return value


def _check_payload(archive: Archive, name: str, max_total: int) -> None:
    """Weights and sample inputs are raw tensor bytes or nested torch.save zips; scan the zips."""
    if is_zip(archive.head(name, len(ZIP_MAGIC))):
        nested = open_archive(archive.read(name), where=f"{archive.where} (member `{name}`)", max_total=max_total)
        scan_state_dict_zip(nested)
    elif name.startswith("data/sample_inputs/"):
        raise CheckpointError(f"{archive.where}: sample inputs `{name}` are not a torch.save archive; refused.")


def _check_payload_config(archive: Archive, config_name: str, config: dict[str, Any]) -> None:
    folder = config_name.rsplit("/", 1)[0] + "/"
    entries = config.get("config")
    if not isinstance(entries, dict):
        raise CheckpointError(f"{archive.where}: `{config_name}` has no `config` mapping.")
    for fqn, entry in entries.items():
        path_name = entry.get("path_name") if isinstance(entry, dict) else None
        if not isinstance(path_name, str) or f"{folder}{path_name}" not in archive.members:
            raise CheckpointError(f"{archive.where}: `{config_name}` lists `{fqn}` without a stored payload.")
        if path_name.startswith(_PICKLED_OBJECT_PREFIXES):
            raise CheckpointError(
                f"{archive.where}: constant `{fqn}` is a pickled Python or TorchBind object, which torch "
                "would unpickle without restriction; only tensor constants are accepted."
            )
        if entry.get("use_pickle") and not is_zip(archive.head(f"{folder}{path_name}", len(ZIP_MAGIC))):
            raise CheckpointError(
                f"{archive.where}: `{fqn}` is a raw pickle, which torch would load without restriction; refused."
            )


def _check_program(archive: Archive, name: str) -> None:
    program = _read_json(archive, name)
    if program.get("guards_code"):
        raise CheckpointError(
            f"{archive.where}: the program carries Python guard code (`guards_code`), which "
            "torch.export would execute; refused. Export with static shapes, or upload TorchScript/ONNX."
        )
    for key, value in _walk(program):
        if key in ("target", "as_operator") and isinstance(value, str):
            _check_target(archive, value)
        elif key == "expr_str":
            _check_expression(archive, value)
        elif key == "name" and isinstance(value, str) and not _IDENTIFIER.match(value):
            raise CheckpointError(f"{archive.where}: graph name {value!r} is not an identifier; refused.")


def _walk(value: object, key: str = "") -> Iterator[tuple[str, object]]:
    stack: list[tuple[str, object]] = [(key, value)]
    while stack:
        key, value = stack.pop()
        yield key, value
        if isinstance(value, dict):
            stack.extend((str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((key, item) for item in value)


def _check_target(archive: Archive, target: str) -> None:
    module, _, function = target.partition(".")
    allowed = (_ATEN_TARGET.match(target) and "file" not in target) or (
        module == "_operator" and function in _OPERATOR_FUNCTIONS
    )
    if not allowed:
        raise CheckpointError(
            f"{archive.where}: the program calls `{target}`; only aten operators and basic arithmetic are "
            "accepted in exported programs, so it was refused."
        )


def _check_expression(archive: Archive, expr: object) -> None:
    """Shape expressions reach sympy.sympify (an eval); accept only names, numbers and arithmetic."""
    if not isinstance(expr, str) or len(expr) > 10_000:
        raise CheckpointError(f"{archive.where}: a symbolic shape expression is malformed; refused.")
    position = 0
    while position < len(expr.rstrip()):
        match = _EXPR_TOKEN.match(expr, position)
        if match is None or match.end() == position:
            raise CheckpointError(f"{archive.where}: symbolic shape expression {expr[:80]!r} is not arithmetic.")
        word, quoted = match.group(1), match.group(2)
        if quoted is not None and not _SYMBOL.match(quoted):
            raise CheckpointError(f"{archive.where}: symbolic shape expression {expr[:80]!r} quotes {quoted!r}.")
        if word is not None and not (_SYMBOL.match(word) or word in _SYMPY_NAMES):
            raise CheckpointError(f"{archive.where}: symbolic shape expression {expr[:80]!r} names `{word}`; refused.")
        position = match.end()


class ExportedClassifier(nn.Module):
    """An exported program's module, made usable by the audit.

    Exported graphs fix train/eval at export time and refuse ``.train()``/``.eval()``, so this wrapper
    keeps its own flag and never forwards mode changes. Programs exported with a static batch of one
    are run per sample through ``torch.vmap``, which keeps the whole batch differentiable.
    """

    def __init__(self, program_module: nn.Module, per_sample: bool) -> None:
        super().__init__()
        self.program = program_module
        self.per_sample = per_sample

    def train(self, mode: bool = True) -> ExportedClassifier:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.per_sample:
            return self.program(x)
        return torch.vmap(lambda sample: self.program(sample.unsqueeze(0)).squeeze(0))(x)


def load_export(data: bytes, device: torch.device) -> tuple[ExportedClassifier, tuple[int, int, int] | None]:
    """Load a scanned archive; return the module and the input shape its example inputs record."""
    program = torch.export.load(io.BytesIO(data))
    args: tuple[Any, ...] = program.example_inputs[0] if program.example_inputs else ()
    shape: tuple[int, int, int] | None = None
    if len(args) == 1 and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
        # bounded before the batch-of-two trial below allocates an input of this shape (a zero-stride
        # example input records any shape in a few bytes)
        shape = checked_input_shape(
            args[0].shape[1:],
            "the input shape the program's example input records",
            "Refused before running the program; export it with an example input of the size it was trained on.",
        )
    module = program.module()
    check_weights_stored(module)  # before the trial below computes with them
    module = module.to(device)
    per_sample = False
    if shape is not None:
        try:
            with torch.no_grad():
                module(torch.zeros((2, *shape), device=device))
        except Exception:  # a guard on the batch size: run sample by sample instead
            per_sample = True
    return ExportedClassifier(module, per_sample), shape
