"""Session-wide fixtures: real Fashion-MNIST models trained by the suite itself, once per run.

The BadNets example (3x3 white patch, bottom-right, 10% poisoned, target class 3) and its clean twin
come from ``worker.examples`` and are cached on disk under ``.cache/test-models``
(``BACKDOOR_AUDIT_TEST_CACHE``), keyed by their recipe; CI starts from a fresh clone and trains them.

Under CI (``CI=true``) a test skipped because Postgres or Redis is unreachable fails instead:
``scripts/services.sh`` starts both before the suite, so there they are part of what is tested.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

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


# the reasons the suite's tests give when they skip for want of a service
UNREACHABLE = re.compile(r"(Postgres|Redis) not reachable")


def under_ci() -> bool:
    """Whether this run is CI's (``CI=true``, as CI services set it), where the services must be up."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def service_unreachable(reason: str) -> NoReturn:
    """Skip the test for want of a service; under CI, fail it."""
    if under_ci():
        pytest.fail(f"{reason} (CI=true: scripts/services.sh starts it, so the test must run)", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI, a skip for an unreachable Postgres or Redis (``pytest.skip("Redis not reachable ...")``,
    wherever a test raises it) is reported as a failure."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and under_ci() and call.excinfo is not None and not hasattr(report, "wasxfail"):
        reason = str(call.excinfo.value)
        if UNREACHABLE.search(reason):
            report.outcome = "failed"
            report.longrepr = f"{reason} (CI=true: scripts/services.sh starts it, so the test must run)"
