"""How every detector holds a user's model while it audits it: in eval mode with its weights frozen,
and left exactly as found afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode and restore each one's own flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, was_training in flags:
            module.training = was_training


@contextmanager
def model_as_found(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen weights for the duration of a detection, restored afterwards.

    Detectors optimise inputs or masks, never weights: freezing them keeps gradients out of the
    caller's parameters (the loader freezes them already; a model passed in directly may not be).
    Restoring each submodule's own flags leaves the model as found.
    """
    grads = [(param, param.requires_grad) for param in model.parameters()]
    for param, _ in grads:
        param.requires_grad_(False)
    try:
        with eval_mode(model):
            yield model
    finally:
        for param, requires_grad in grads:
            param.requires_grad_(requires_grad)
