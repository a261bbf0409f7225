"""The whole audit's settings: the map engine's and the scoring's. Torch-free, so the API can validate
a user's config at request time (422 on a typo) without importing the science."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.saliency.config import SaliencyConfig
from worker.scoring.config import ScoringConfig


@dataclass(frozen=True)
class AuditConfig:
    saliency: SaliencyConfig = field(default_factory=SaliencyConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"saliency": self.saliency.to_dict(), "scoring": self.scoring.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AuditConfig:
        """Build from user JSON such as ``{"saliency": {"iterations": 50}}``; raises ValueError with the reason."""
        data = data or {}
        if not isinstance(data, dict):
            raise ValueError("audit config must be a JSON object with optional 'saliency' and 'scoring' objects")
        unknown = sorted(set(data) - {"saliency", "scoring"})
        if unknown:
            raise ValueError(f"unknown audit config keys: {', '.join(unknown)} (known: saliency, scoring)")
        parts = {name: data.get(name) or {} for name in ("saliency", "scoring")}
        for name, part in parts.items():
            if not isinstance(part, dict):
                raise ValueError(f"audit config '{name}' must be a JSON object")
        try:
            return cls(
                saliency=SaliencyConfig.from_dict(parts["saliency"]),
                scoring=ScoringConfig.from_dict(parts["scoring"]),
            )
        except TypeError as exc:  # wrong value types reach the dataclass constructors as TypeError
            raise ValueError(f"invalid audit config: {exc}") from exc
