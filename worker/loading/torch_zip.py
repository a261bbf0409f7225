"""Safety checks for torch's own archives: ``torch.save`` zips, legacy pickles and TorchScript.

Each check looks at the same bytes torch will read, before torch reads them: every pickle member is
scanned for disallowed globals (pickle_scan), every tensor storage a pickle names must exist and hold
the bytes it claims, and TorchScript code is read for the few builtin ops that touch files.
"""

from __future__ import annotations

import io
import tokenize

from worker.loading.archive import Archive
from worker.loading.pickle_scan import (
    TENSOR_GLOBALS,
    TORCHSCRIPT_CLASS_PREFIX,
    TORCHSCRIPT_GLOBALS,
    PickleReport,
    scan_pickle,
    scan_pickle_sequence,
)
from worker.loading.types import CheckpointError

MAX_PICKLE_BYTES = 256 * 2**20  # a pickle describes tensors; their bytes live in separate members
MAX_CODE_BYTES = 64 * 2**20
# torch/serialization.py, _legacy_save and _legacy_load: these five pickles, then the raw storages
_LEGACY_PICKLES = ("magic number", "protocol version", "system info", "object", "storage keys")
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

# TorchScript code runs in the TorchScript interpreter, which has no Python builtins or imports; what it
# can reach is the registered operator set. These builtins read or write files, so code naming them is
# refused; operators from namespaces other than aten/prim come from extension libraries. The code is
# read as Python tokens, not searched as text: TorchScript's parser accepts `torch. from_file(...)`
# and line continuations, which a pattern over the text would have to foresee (an earlier one did not).
# Of the registered aten/prim schemas, aten::from_file and aten::save take a file name (a test keeps
# this list in step with the installed torch).
_FILE_OPS = frozenset({"from_file", "save", "load", "_load_for_mobile", "_pickle_save", "_pickle_load_obj"})
_ALLOWED_OP_NAMESPACES = {"aten", "prim"}
_TORCHSCRIPT_STORAGE_FOLDERS = {"data.pkl": "data/", "constants.pkl": "constants/"}


def is_torchscript(archive: Archive) -> bool:
    return "data.pkl" in archive.members and any(name.startswith("code/") for name in archive.members)


def scan_state_dict_zip(archive: Archive) -> PickleReport:
    """A ``torch.save`` zip: ``data.pkl`` plus one raw member per storage under ``data/``."""
    if "data.pkl" not in archive.members:
        raise CheckpointError(
            f"{archive.where} is a zip archive without `data.pkl`, so it is not a torch.save checkpoint."
        )
    report = _scan_member(archive, "data.pkl", TENSOR_GLOBALS, ())
    _check_storages(archive, report, "data/")
    return report


def scan_torchscript(archive: Archive) -> None:
    """A TorchScript archive: pickles (module state, constants, debug info) plus TorchScript code."""
    for name in archive.names():
        if name.endswith("pkl"):
            report = _scan_member(archive, name, TORCHSCRIPT_GLOBALS, (TORCHSCRIPT_CLASS_PREFIX,))
            if name in _TORCHSCRIPT_STORAGE_FOLDERS:  # traced_inputs.pkl names empty records; jit.load skips it
                _check_storages(archive, report, _TORCHSCRIPT_STORAGE_FOLDERS[name])
        elif name.startswith("code/") and name.endswith(".py"):
            _scan_code(archive, name)


def scan_legacy_pickle(data: bytes) -> None:
    """torch.save's pre-1.6 format: five pickles back to back, then raw storage bytes.

    Its loader allocates every storage at the size the object pickle claims before reading any byte of
    it, so the claims together must fit in the bytes after the pickles. All five pickles are scanned
    whatever their protocol, and a file that does not open with torch's magic number and protocol
    version is refused: torch.load would refuse it anyway, after unpickling.
    """
    reports = scan_pickle_sequence(data, what="legacy checkpoint", names=_LEGACY_PICKLES, allowed=TENSOR_GLOBALS)
    header = [_LEGACY_MAGIC_NUMBER, _LEGACY_PROTOCOL_VERSION][: len(reports)]
    if not reports or [report.value for report in reports[:2]] != header:
        raise CheckpointError(
            "the file is a pickle but not a torch.save checkpoint (it lacks torch's magic number and protocol "
            "version). Save the weights with `torch.save(model.state_dict(), path)` or safetensors."
        )
    if len(reports) < len(_LEGACY_PICKLES):
        raise CheckpointError(
            f"the legacy checkpoint ends after {len(reports)} of its {len(_LEGACY_PICKLES)} pickles "
            f"({', '.join(_LEGACY_PICKLES)}); the file is truncated."
        )
    claimed: dict[str, int] = {}
    for ref in (ref for report in reports for ref in report.storages):
        # torch allocates a key's storage where it first appears; the largest claim bounds whichever that is
        claimed[ref.key] = max(claimed.get(ref.key, 0), ref.nbytes)
    stored = len(data) - reports[-1].end
    if sum(claimed.values()) > stored:
        raise CheckpointError(
            f"the checkpoint's tensors claim {sum(claimed.values())} bytes but the file holds {stored} bytes of "
            "tensor data; refused before allocating (truncated or tampered file)."
        )


def _scan_member(
    archive: Archive, name: str, allowed: frozenset[str], allowed_prefixes: tuple[str, ...]
) -> PickleReport:
    if archive.size(name) > MAX_PICKLE_BYTES:
        raise CheckpointError(
            f"{archive.where}: the pickle `{name}` is {archive.size(name)} bytes; at most {MAX_PICKLE_BYTES} "
            "are accepted."
        )
    return scan_pickle(
        archive.read(name),
        where=f"the pickle `{archive.prefix}{name}`",
        allowed=allowed,
        allowed_prefixes=allowed_prefixes,
    )


def _check_storages(archive: Archive, report: PickleReport, folder: str) -> None:
    """Every storage a pickle names must exist and hold at least the bytes it claims."""
    for ref in report.storages:
        member = f"{folder}{ref.key}"
        if member not in archive.members:
            raise CheckpointError(
                f"{archive.where}: a tensor refers to storage `{member}`, which the archive does not contain; "
                "the file is truncated or tampered."
            )
        if archive.size(member) < ref.nbytes:
            raise CheckpointError(
                f"{archive.where}: storage `{member}` claims {ref.numel} elements of {ref.storage_type} "
                f"({ref.nbytes} bytes) but holds {archive.size(member)} bytes; refused before allocating "
                "(tampered file)."
            )


def _scan_code(archive: Archive, name: str) -> None:
    if archive.size(name) > MAX_CODE_BYTES:
        raise CheckpointError(f"{archive.where}: TorchScript code `{name}` is larger than {MAX_CODE_BYTES} bytes.")
    try:
        code = archive.read(name).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{archive.where}: TorchScript code `{name}` is not UTF-8 text.") from exc
    names = _names(code, f"{archive.where}: TorchScript code `{name}`")
    if touching := next((n for n in names if n in _FILE_OPS), None):
        raise CheckpointError(
            f"{archive.where}: TorchScript code `{name}` calls `{touching}`, an operator that reads or "
            "writes files; a classifier has no need for it, so the archive is refused."
        )
    for i in range(len(names) - 2):
        # an operator call reads `ops.<namespace>.<op>` or `torch.ops...`; in `torchvision.ops.misc.X`,
        # `ops` is a package in a class name
        attribute_of = names[i - 2] if i >= 2 and names[i - 1] == "." else None
        is_operator = names[i] == "ops" and names[i + 1] == "." and attribute_of in (None, "torch")
        if is_operator and names[i + 2] not in _ALLOWED_OP_NAMESPACES:
            raise CheckpointError(
                f"{archive.where}: TorchScript code `{name}` calls operators from `torch.ops.{names[i + 2]}`, "
                "which need a native extension library; only built-in aten/prim operators are accepted."
            )


def _names(code: str, where: str) -> list[str]:
    """The code's names and dots, in order, whatever the spacing, comments and line continuations."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise CheckpointError(f"{where} is not valid TorchScript source ({exc}); refused.") from exc
    return [t.string for t in tokens if t.type == tokenize.NAME or t.string == "."]
