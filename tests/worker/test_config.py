"""Audit configs as the API and ``scan --config`` receive them (JSON): a wrong type, a non-finite number
or a size past its bound is refused with the key, the value and what is expected."""

from __future__ import annotations

import json

import pytest

from worker.config import AuditConfig
from worker.saliency.config import (
    MAX_CLASS_BATCH,
    MAX_FIDELITY_SEEDS,
    MAX_ITERATIONS,
    MAX_REFINE_ITERATIONS,
    MAX_RESTARTS,
    MAX_SEED,
    MAX_SEEDS_PER_STEP,
    SaliencyConfig,
)
from worker.scoring.config import MAX_PROBES_PER_CLASS, ScoringConfig


def refused(text: str) -> str:
    """The error of an audit config written as JSON."""
    with pytest.raises(ValueError) as error:
        AuditConfig.from_dict(json.loads(text))
    return str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"saliency": {"iterations": 1e2}}', "iterations must be a whole number from 1 to 2000, got 100.0"),
        ('{"saliency": {"iterations": true}}', "iterations must be a whole number from 1 to 2000, got true"),
        ('{"saliency": {"iterations": "40"}}', 'iterations must be a whole number from 1 to 2000, got "40"'),
        ('{"saliency": {"restarts": 2.0}}', "restarts must be a whole number from 1 to 32, got 2.0"),
        ('{"saliency": {"seed": 0.5}}', "seed must be a whole number from 0 to 4294967295, got 0.5"),
        ('{"saliency": {"step_size": Infinity}}', "step_size must be a finite number in (0, 1], got Infinity"),
        ('{"saliency": {"radius": NaN}}', "radius must be a finite number in (0, 1], got NaN"),
        ('{"scoring": {"probes_per_class": 16.0}}', "probes_per_class must be a whole number from 1 to 256, got 16.0"),
        ('{"scoring": {"window": true}}', "window must be a finite number in (0, 1], got true"),
        ('{"scoring": {"suspicious_at": NaN}}', "suspicious_at must be a finite number in (0, 1], got NaN"),
        ('{"scoring": {"patch_probe_brightness": -Infinity}}', "patch_probe_brightness must be a finite number"),
        ('{"scoring": {"seed": false}}', "seed must be a whole number from 0 to 4294967295, got false"),
    ],
)
def test_wrong_types_and_non_finite_numbers_are_refused_naming_key_value_and_range(text: str, message: str) -> None:
    assert message in refused(text)


def test_every_problem_is_named_at_once_under_its_section() -> None:
    error = refused('{"saliency": {"iterations": 0, "restarts": 1.5}}')
    assert error.startswith("invalid saliency config: iterations must be a whole number from 1 to 2000, got 0")
    assert "; restarts must be a whole number from 1 to 32, got 1.5" in error


@pytest.mark.parametrize(
    ("section", "key", "bound"),
    [
        ("saliency", "iterations", MAX_ITERATIONS),
        ("saliency", "refine_iterations", MAX_REFINE_ITERATIONS),
        ("saliency", "quality_steps", MAX_ITERATIONS),
        ("saliency", "seeds_per_step", MAX_SEEDS_PER_STEP),
        ("saliency", "restarts", MAX_RESTARTS),
        ("saliency", "fidelity_seeds", MAX_FIDELITY_SEEDS),
        ("saliency", "class_batch", MAX_CLASS_BATCH),
        ("saliency", "seed", MAX_SEED),
        ("scoring", "probes_per_class", MAX_PROBES_PER_CLASS),
        ("scoring", "seed", MAX_SEED),
    ],
)
def test_every_size_and_count_has_an_upper_bound_well_above_its_default(section: str, key: str, bound: int) -> None:
    default = (SaliencyConfig() if section == "saliency" else ScoringConfig()).to_dict()[key]
    assert default == 0 or bound >= 10 * default
    config = AuditConfig.from_dict({section: {key: bound}})
    assert getattr(getattr(config, section), key) == bound
    assert f"{key} must be a whole number from" in refused(json.dumps({section: {key: bound + 1}}))


def test_defaults_whole_numbers_for_fractions_and_round_trips_are_accepted() -> None:
    assert AuditConfig.from_dict(AuditConfig().to_dict()) == AuditConfig()
    config = AuditConfig.from_dict(json.loads('{"scoring": {"window_weight": 0, "backdoored_at": 1}}'))
    assert config.scoring.window_weight == 0 and config.scoring.backdoored_at == 1
    above = refused('{"scoring": {"suspicious_at": 0.95}}')
    assert "suspicious_at (0.95) must not be above backdoored_at (0.9)" in above
