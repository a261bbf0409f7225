"""A frozen-dataclass mixin for settings that users send as JSON (torch-free)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from typing import Any, ClassVar, Self


class JsonConfig:
    """``to_dict``/``from_dict`` for a dataclass; ``from_dict`` refuses unknown keys, so a typo is an
    error that names the known keys rather than a silently ignored setting."""

    label: ClassVar[str]  # "saliency", "scoring": names the section in error messages
    # keys earlier versions had -> (the value they always held unless a user changed it, why they went).
    # Stored configs (the API stores each with every default filled in) carry them: one holding its old
    # value is dropped on reading, any other value is refused with the reason.
    retired_keys: ClassVar[Mapping[str, tuple[Any, str]]] = {}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        data = dict(data)
        for key, (old_value, why) in cls.retired_keys.items():
            value = data.pop(key, old_value)
            if value != old_value:
                raise ValueError(f"{cls.label} config key {key} was removed (got {value}): {why}; drop the key")
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown {cls.label} config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return cls(**data)

    def refuse(self, problems: Iterable[str | None]) -> None:
        """Raise one ValueError listing every problem (``integer_problem``, ``number_problem``), if any."""
        bad = [problem for problem in problems if problem]
        if bad:
            raise ValueError(f"invalid {self.label} config: {'; '.join(bad)}")


def shown(value: Any) -> str:
    """A value as the user wrote it in JSON (``true``, ``Infinity``, ``100.0``)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def integer_problem(name: str, value: Any, low: int, high: int) -> str | None:
    """What is wrong with ``value`` as the whole number ``name`` in [low, high], or None. A JSON ``true``
    or ``1e2`` is refused, not taken for 1 or 100: a bool or a float here is a mistake in the request."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return f"{name} must be a whole number from {low} to {high}, got {shown(value)}"
    return None


def number_problem(name: str, value: Any, low: float, high: float, *, above_low: bool = False) -> str | None:
    """What is wrong with ``value`` as the finite number ``name`` in [low, high] (in (low, high] with
    ``above_low``), or None. Booleans, strings, NaN and infinities are refused."""
    number = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if number and (low < value if above_low else low <= value) and value <= high:
        return None
    return f"{name} must be a finite number in {'(' if above_low else '['}{low}, {high}], got {shown(value)}"
