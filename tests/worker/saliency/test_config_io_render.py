from __future__ import annotations

import pytest
import torch

from worker.config import AuditConfig
from worker.saliency.config import SaliencyConfig
from worker.saliency.engine import ClassMap
from worker.saliency.io import load_class_map, save_class_map
from worker.saliency.render import heatmap, png_bytes, signed_visualisation


def test_audit_config_round_trips_and_refuses_typos() -> None:
    config = AuditConfig.from_dict({"saliency": {"iterations": 7}, "scoring": {"window": 0.2}})
    assert config.saliency.iterations == 7 and config.scoring.window == 0.2
    assert AuditConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown saliency config keys: iteration"):
        AuditConfig.from_dict({"saliency": {"iteration": 7}})
    with pytest.raises(ValueError, match="unknown audit config keys"):
        AuditConfig.from_dict({"salience": {}})
    with pytest.raises(ValueError, match="iterations"):
        AuditConfig.from_dict({"saliency": {"iterations": 0}})
    with pytest.raises(ValueError, match="step_rule"):
        SaliencyConfig(step_rule="sgd")  # type: ignore[arg-type]


def test_class_map_round_trips_through_safetensors(tmp_path) -> None:
    original = ClassMap(
        class_index=4,
        raw=torch.randn(1, 5, 5),
        restarts=torch.randn(2, 1, 5, 5),
        success_rate=0.75,
        stability=0.5,
        trace=[0.1, 0.2],
    )
    path = tmp_path / "maps" / "class_4.safetensors"
    save_class_map(path, original)
    loaded = load_class_map(path)
    assert loaded.class_index == 4 and loaded.trace == [0.1, 0.2]
    assert loaded.success_rate == 0.75 and loaded.stability == 0.5
    assert torch.equal(loaded.raw, original.raw) and torch.equal(loaded.restarts, original.restarts)
    assert not list(tmp_path.glob("maps/*.tmp")), "no temp file may be left behind"


def test_visualisations_are_in_range_and_encode_as_png() -> None:
    raw = torch.zeros(3, 4, 4)
    raw[0, 1, 1] = 2.0
    raw[1, 2, 2] = -1.0
    vis = signed_visualisation(raw)
    assert vis.min() >= 0 and vis.max() <= 1 and vis[0, 1, 1] == 1.0 and vis[2, 0, 0] == 0.5
    heat = heatmap(raw)
    assert heat[1, 1] == 1.0 and heat[0, 0] == 0.0 and heat[2, 2] == pytest.approx(0.5)
    assert png_bytes(vis, scale=4).startswith(b"\x89PNG")
    assert png_bytes(heat, colour_map=True).startswith(b"\x89PNG")
