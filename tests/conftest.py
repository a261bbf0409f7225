"""Session-wide fixtures: real Fashion-MNIST models trained by the suite itself, once per run.

The BadNets example (3x3 white patch, bottom-right, 10% poisoned, target class 3) and its clean twin
come from ``worker.examples`` and are cached on disk under ``.cache/test-models``
(``BACKDOOR_AUDIT_TEST_CACHE``), keyed by their recipe; CI starts from a fresh clone and trains them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from worker.examples import ExampleModel, example_model

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("BACKDOOR_AUDIT_TEST_CACHE", REPO / ".cache" / "test-models"))

# cheap audit settings for tests that exercise plumbing rather than detection quality
FAST_AUDIT_CONFIG: dict[str, Any] = {
    "saliency": {"iterations": 20, "refine_iterations": 5, "restarts": 1, "seeds_per_step": 8, "fidelity_seeds": 16}
}


@pytest.fixture(scope="session")
def badnets_checkpoint() -> ExampleModel:
    """Fashion-MNIST SmallCNN with a 3x3 white BadNets patch to class 3 (attack success >= 0.9 asserted)."""
    checkpoint = example_model(CACHE, backdoored=True)
    assert checkpoint.attack_success is not None and checkpoint.attack_success >= 0.9, checkpoint
    return checkpoint


@pytest.fixture(scope="session")
def clean_checkpoint() -> ExampleModel:
    """The BadNets model's clean twin: same architecture, data, seed and schedule, no poison."""
    return example_model(CACHE, backdoored=False)
