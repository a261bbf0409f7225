"""Safe checkpoint intake: format detection, the architecture registry, hostile-file checks.

``load_checkpoint`` turns an untrusted file into a classifier the audit can run; ``inspect_checkpoint``
is the cheap upload-time check (format detection and every safety scan, no model built).
"""

from worker.loading import registry
from worker.loading.intake import DEFAULT_MAX_BYTES, inspect_checkpoint
from worker.loading.loader import load_checkpoint
from worker.loading.types import CheckpointError, LoadedModel, ModelSpec

__all__ = [
    "DEFAULT_MAX_BYTES",
    "CheckpointError",
    "LoadedModel",
    "ModelSpec",
    "inspect_checkpoint",
    "load_checkpoint",
    "registry",
]
