"""Static inspection of pickles: which globals they import and which objects they would build.

A pickle is a program; unpickling it runs that program, and any importable callable can be reached
through GLOBAL/STACK_GLOBAL/INST and called through REDUCE/OBJ/NEWOBJ. So nothing here unpickles:
``pickletools.genops`` only decodes opcodes, and a small symbolic stack follows the values well enough
to know every global (including STACK_GLOBAL's computed module and name) and every torch storage the
pickle would ask for. A global outside the caller's allowlist is refused by name. A value the stack
cannot prove to be a string or a global, where one is needed, is refused rather than guessed.
"""

from __future__ import annotations

import io
import pickletools
from dataclasses import dataclass, field

from worker.loading.types import CheckpointError

_STORAGE_TYPES = {
    "FloatStorage": 4,
    "DoubleStorage": 8,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
}
STORAGE_ITEMSIZE: dict[str, int] = {f"torch.{name}": size for name, size in _STORAGE_TYPES.items()}

_DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")

# What torch.save writes for tensors, state_dicts and plain training checkpoints (dicts, lists, numbers).
TENSOR_GLOBALS: frozenset[str] = frozenset(
    {
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch.Size",
        *STORAGE_ITEMSIZE,
        *(f"torch.{dtype}" for dtype in _DTYPES),
    }
)

# TorchScript archives also name their own compiled classes (``__torch__.*``, resolved by the C++
# unpickler against the archive's TorchScript code, never imported from Python) and list builders.
TORCHSCRIPT_GLOBALS: frozenset[str] = TENSOR_GLOBALS | {
    "torch.jit._pickle.build_intlist",
    "torch.jit._pickle.build_floatlist",
    "torch.jit._pickle.build_boollist",
    "torch.jit._pickle.build_tensorlist",
    "torch.jit._pickle.build_doublelist",
    "torch.jit._pickle.restore_type_tag",
}
TORCHSCRIPT_CLASS_PREFIX = "__torch__."

_MAX_OPCODES = 5_000_000  # a ResNet-152 state_dict pickle has ~10^4; this only stops pathological files

_STRING_OPS = {
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
}  # fmt: skip
_INT_OPS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
_TUPLE_SIZES = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3, "EMPTY_TUPLE": 0}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}


class _Mark:
    """The MARK sentinel on the symbolic stack."""


class _Unknown:
    """A value the scan does not follow (a dict, a list, the result of a call...)."""


@dataclass(frozen=True)
class _Global:
    name: str  # "module.qualname"


_MARK = _Mark()
_UNKNOWN = _Unknown()


@dataclass(frozen=True)
class StorageRef:
    """A torch storage the pickle refers to by persistent id: ('storage', type, key, location, numel)."""

    storage_type: str
    key: str
    numel: int

    @property
    def nbytes(self) -> int:
        return self.numel * STORAGE_ITEMSIZE[self.storage_type]


@dataclass
class PickleReport:
    """What one pickle would import and which storages it would read."""

    globals: set[str] = field(default_factory=set)
    calls: set[str] = field(default_factory=set)  # globals actually called (REDUCE, NEWOBJ, OBJ, INST)
    storages: list[StorageRef] = field(default_factory=list)
    end: int = 0  # offset just past the STOP opcode
    value: object = None  # what the pickle returns where the scan follows it (a number, a string), else unknown


def _as_int(arg: object) -> int:
    if not isinstance(arg, int | str):
        raise CheckpointError("a pickle opcode carries a non-integer argument; the file is corrupt")
    return int(arg)


def _allowed(name: str, allowed: frozenset[str], allowed_prefixes: tuple[str, ...]) -> bool:
    return name in allowed or name.startswith(allowed_prefixes)


def _refuse_global(name: str, where: str) -> CheckpointError:
    return CheckpointError(
        f"{where} imports `{name}`, which a checkpoint has no reason to need and which could run code "
        "when loaded; it was refused without being loaded. Only tensors, state_dicts and plain "
        "containers are accepted: re-save with `torch.save(model.state_dict(), path)` or, better, "
        "`safetensors.torch.save_file(model.state_dict(), path)`."
    )


def _storage_ref(pid: object, where: str) -> StorageRef | None:
    """Decode torch's ('storage', storage_type, key, location, numel[, view_metadata]) persistent id.

    The zip format writes five fields; the legacy format adds a sixth, and its loader allocates
    ``numel`` elements before reading any byte, so the claim has to be checked first.
    """
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
        return None
    _, storage_type, key, _location, numel = pid[:5]
    if not (isinstance(storage_type, _Global) and isinstance(key, str) and isinstance(numel, int)):
        raise CheckpointError(f"{where} has a malformed tensor storage reference; the file is corrupt.")
    if storage_type.name not in STORAGE_ITEMSIZE:
        raise CheckpointError(
            f"{where} stores a tensor as `{storage_type.name}`; supported storages are "
            f"{', '.join(sorted(STORAGE_ITEMSIZE))}."
        )
    if numel < 0:
        raise CheckpointError(f"{where} claims a tensor storage of negative size; the file is corrupt.")
    return StorageRef(storage_type.name, key, numel)


class _SymbolicStack:
    """The pickle machine's stack and memo, holding only what the scan can know about each value."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.items: list[object] = []
        self.memo: dict[int, object] = {}

    def push(self, value: object) -> None:
        self.items.append(value)

    def top(self) -> object:
        return self.items[-1] if self.items else _UNKNOWN

    def pop(self, count: int) -> list[object]:
        if count > len(self.items):
            raise CheckpointError(f"{self.where} is not a valid pickle (stack underflow); the file is corrupt")
        taken = self.items[len(self.items) - count :]
        del self.items[len(self.items) - count :]
        return taken

    def pop_to_mark(self) -> list[object]:
        for index in range(len(self.items) - 1, -1, -1):
            if self.items[index] is _MARK:
                taken = self.items[index + 1 :]
                del self.items[index:]
                return taken
        raise CheckpointError(f"{self.where} is not a valid pickle (missing MARK); the file is corrupt.")

    def apply_generic(self, opcode: pickletools.OpcodeInfo) -> None:
        """An opcode's documented stack effect, with unknown results (dicts, lists, floats, bytes...)."""
        before = opcode.stack_before
        if pickletools.markobject in before:
            self.pop_to_mark()
            self.pop(before.index(pickletools.markobject))
        else:
            self.pop(len(before))
        self.items.extend(_UNKNOWN for item in opcode.stack_after if item is not pickletools.markobject)


def scan_pickle(
    data: bytes,
    *,
    where: str,
    allowed: frozenset[str],
    allowed_prefixes: tuple[str, ...] = (),
    start: int = 0,
) -> PickleReport:
    """Decode the pickle in ``data`` at ``start`` without running it; refuse any disallowed global.

    ``where`` names the pickle in error messages (e.g. "the pickle `archive/data.pkl`").
    """
    report = PickleReport()
    stack = _SymbolicStack(where)
    stream = io.BytesIO(data)
    stream.seek(start)

    def add_global(name: str) -> _Global:
        if not _allowed(name, allowed, allowed_prefixes):
            raise _refuse_global(name, where)
        report.globals.add(name)
        return _Global(name)

    def call(value: object, opcode: str) -> None:
        if not isinstance(value, _Global):
            raise CheckpointError(
                f"{where} calls an object it computed itself ({opcode} on a non-global); this is how "
                "malicious pickles hide what they run, so it was refused."
            )
        report.calls.add(value.name)
        stack.push(_UNKNOWN)

    try:
        for count, (opcode, arg, pos) in enumerate(pickletools.genops(stream)):
            if count >= _MAX_OPCODES:
                raise CheckpointError(f"{where} has more than {_MAX_OPCODES} pickle opcodes; refused as too big")
            name = opcode.name
            if name in _STRING_OPS:
                stack.push(arg)
            elif name in _INT_OPS:
                stack.push(_as_int(arg))
            elif name == "NONE":
                stack.push(None)
            elif name in ("NEWTRUE", "NEWFALSE"):
                stack.push(name == "NEWTRUE")
            elif name in _TUPLE_SIZES:
                stack.push(tuple(stack.pop(_TUPLE_SIZES[name])))
            elif name == "TUPLE":
                stack.push(tuple(stack.pop_to_mark()))
            elif name == "MARK":
                stack.push(_MARK)
            elif name in _PUT_OPS:
                stack.memo[_as_int(arg)] = stack.top()
            elif name == "MEMOIZE":
                stack.memo[len(stack.memo)] = stack.top()
            elif name in _GET_OPS:
                stack.push(stack.memo.get(_as_int(arg), _UNKNOWN))
            elif name == "DUP":
                stack.push(stack.top())
            elif name in ("GLOBAL", "INST"):
                module, _, qualname = str(arg).partition(" ")
                target = add_global(f"{module}.{qualname}")
                if name == "GLOBAL":
                    stack.push(target)
                else:
                    stack.pop_to_mark()
                    call(target, name)
            elif name == "STACK_GLOBAL":
                module_value, qualname_value = stack.pop(2)
                if not (isinstance(module_value, str) and isinstance(qualname_value, str)):
                    raise CheckpointError(
                        f"{where} builds a global name at load time (STACK_GLOBAL on computed values); "
                        "refused because its target cannot be checked."
                    )
                stack.push(add_global(f"{module_value}.{qualname_value}"))
            elif name == "OBJ":
                items = stack.pop_to_mark()
                call(items[0] if items else None, name)
            elif name in ("REDUCE", "NEWOBJ"):
                call(stack.pop(2)[0], name)
            elif name == "NEWOBJ_EX":
                call(stack.pop(3)[0], name)
            elif name in ("EXT1", "EXT2", "EXT4"):
                raise CheckpointError(
                    f"{where} imports a global through the copyreg extension registry ({name}); refused "
                    "because its target cannot be checked."
                )
            elif name == "BINPERSID":
                ref = _storage_ref(stack.pop(1)[0], where)
                if ref is not None:
                    report.storages.append(ref)
                stack.push(_UNKNOWN)
            elif name == "STOP":
                report.value = stack.pop(1)[0]
                report.end = (pos or 0) + 1
                break
            else:
                stack.apply_generic(opcode)
    except CheckpointError:
        raise
    except Exception as exc:  # genops raises ValueError/struct errors on corrupt input
        raise CheckpointError(f"{where} is not a valid pickle ({exc}); the file is corrupt or truncated") from exc
    if report.end == 0:
        raise CheckpointError(f"{where} is not a valid pickle (it ends before STOP); the file is truncated.")
    return report


def scan_pickle_sequence(
    data: bytes, *, what: str, names: tuple[str, ...], allowed: frozenset[str]
) -> list[PickleReport]:
    """Scan the pickles written back to back from the start of ``data``: one per entry of ``names`` (what
    each holds, for error messages; ``what`` names the file), or fewer where the data ends first.

    The count comes from the caller's format, not from the bytes: a pickle need not start with PROTO
    (protocols 0 and 1 never do), so no byte tells where the pickles end and other data begins.
    """
    reports: list[PickleReport] = []
    start = 0
    for name in names:
        if start >= len(data):
            break
        reports.append(scan_pickle(data, where=f"the {what}'s {name} pickle", allowed=allowed, start=start))
        start = reports[-1].end
    return reports
