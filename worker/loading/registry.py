"""The architecture registry: build a classifier by name, with fresh weights, never downloading any.

A state_dict holds weights only, so the user names the architecture (``--arch resnet18``) and the
registry builds it. Three families: the project's own small nets (what the zoo trains),
torchvision's classification models, and timm's models (under ``timm/<name>``) when timm is installed.
The library families are registered on first use, because importing them costs about a second.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from worker import nets
from worker.loading.types import CheckpointError

Factory = Callable[[int, int], nn.Module]  # (num_classes, in_channels) -> module with fresh weights


@dataclass(frozen=True)
class Architecture:
    name: str
    family: str  # "project" | "torchvision" | "timm" | whatever a plugin registers
    factory: Factory
    default_size: int | None  # the H = W it was designed for; None: 28 for 1 channel, 32 otherwise


_ARCHITECTURES: dict[str, Architecture] = {}
_LOADED_FAMILIES: set[str] = set()
_LOADING = threading.Lock()  # the API validates uploads from a thread pool


def register(name: str, *, family: str = "project", default_size: int | None = None) -> Callable[[Factory], Factory]:
    """Decorator registering ``factory(num_classes, in_channels)`` under ``name``; names are unique."""

    def decorate(factory: Factory) -> Factory:
        if name in _ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered ({_ARCHITECTURES[name].family})")
        _ARCHITECTURES[name] = Architecture(name, family, factory, default_size)
        return factory

    return decorate


def available() -> list[str]:
    """Every registered name, sorted."""
    _load_library_families()
    return sorted(_ARCHITECTURES)


def describe(name: str) -> Architecture:
    """The registry entry for ``name``; an unknown name raises CheckpointError naming close matches."""
    _load_library_families()
    if name not in _ARCHITECTURES:
        close = difflib.get_close_matches(name, list(_ARCHITECTURES), n=5, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise CheckpointError(
            f"unknown architecture {name!r}.{hint} Run `backdoor-audit archs` to list the {len(_ARCHITECTURES)} "
            "accepted names."
        )
    return _ARCHITECTURES[name]


def build(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """A fresh (randomly initialised) instance of architecture ``name``."""
    if num_classes < 1 or in_channels < 1:
        raise CheckpointError(f"num_classes and in_channels must be positive, got {num_classes}, {in_channels}.")
    return describe(name).factory(num_classes, in_channels)


def _project_net(net: Callable[..., nn.Module]) -> Factory:
    return lambda num_classes, in_channels: net(num_classes=num_classes, in_channels=in_channels)


for _name, _net in (
    ("small_cnn", nets.SmallCNN),
    ("lenet5", nets.LeNet5),
    ("small_resnet", nets.SmallResNet),
    ("preact_resnet18", nets.PreActResNet18),
):
    register(_name)(_project_net(_net))


def _load_library_families() -> None:
    with _LOADING:
        for family, register_family in (("torchvision", _register_torchvision), ("timm", _register_timm)):
            if family not in _LOADED_FAMILIES:
                register_family()
                _LOADED_FAMILIES.add(family)


def _register_torchvision() -> None:
    import torchvision

    for model_name in torchvision.models.list_models(module=torchvision.models):
        size = 299 if model_name == "inception_v3" else 224
        register(model_name, family="torchvision", default_size=size)(_torchvision_factory(model_name))


def _torchvision_factory(model_name: str) -> Factory:
    def factory(num_classes: int, in_channels: int) -> nn.Module:
        import torchvision

        model = torchvision.models.get_model(model_name, weights=None, num_classes=num_classes)
        return model if in_channels == 3 else _adapt_stem(model, model_name, in_channels)

    return factory


def _adapt_stem(model: nn.Module, model_name: str, in_channels: int) -> nn.Module:
    """Swap the first convolution for one taking ``in_channels``.

    torchvision registers every model's stem first, so the first Conv2d in module order is the layer
    that sees the pixels; models whose first conv does not take 3 channels are refused instead.
    """
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels != 3 or child.groups != 1:
                    break
                setattr(parent, child_name, _conv_like(child, in_channels))
                return model
    raise CheckpointError(
        f"architecture {model_name!r} cannot be adapted to {in_channels} input channels; upload a "
        "TorchScript, torch.export or ONNX file of the model instead."
    )


def _conv_like(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )


def _register_timm() -> None:
    try:
        import timm
    except ImportError:
        return
    for model_name in timm.list_models():
        register(f"timm/{model_name}", family="timm")(_timm_factory(model_name))


def _timm_factory(model_name: str) -> Factory:
    def factory(num_classes: int, in_channels: int) -> nn.Module:
        import timm

        return timm.create_model(model_name, pretrained=False, num_classes=num_classes, in_chans=in_channels)

    return factory
