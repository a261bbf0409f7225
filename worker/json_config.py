"""A frozen-dataclass mixin for settings that users send as JSON (torch-free)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, ClassVar, Self


class JsonConfig:
    """``to_dict``/``from_dict`` for a dataclass; ``from_dict`` refuses unknown keys, so a typo is an
    error that names the known keys rather than a silently ignored setting."""

    label: ClassVar[str]  # "saliency", "scoring": names the section in error messages

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown {cls.label} config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return cls(**data)
