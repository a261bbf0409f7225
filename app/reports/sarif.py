"""SARIF 2.1.0 export, so code-scanning dashboards (GitHub, GitLab, Defect Dojo) can ingest an audit.

SARIF is built for source findings; here the scanned artifact is a model checkpoint and each finding is a
suspected backdoor target class. The class is the logical location, the checkpoint (by sha256, and by
path when the caller knows one) the physical one, and the evidence numbers travel in property bags.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.reports.view import build_report_view

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
RULE_ID = "BA001"

# the verdict sets the level of every finding: it is the model-level decision, the class only says where
_LEVELS = {"backdoored": "error", "suspicious": "warning", "clean": "note"}

_RULE: dict[str, Any] = {
    "id": RULE_ID,
    "name": "BackdoorTargetClass",
    "shortDescription": {"text": "Suspected backdoor (trojan) target class"},
    "fullDescription": {
        "text": "The input-agnostic saliency map of this class concentrates on a small, stable region that "
        "drives arbitrary inputs to the class, the signature of a trigger planted by data poisoning."
    },
    "help": {
        "text": "Do not deploy the model until it is explained. Inspect the trigger estimate in the HTML "
        "report, retrain from trusted data, or test the model with the trigger stamped on clean images."
    },
    "defaultConfiguration": {"level": "warning"},
    "properties": {"tags": ["security", "machine-learning", "backdoor"], "security-severity": "8.0"},
}


def report_to_sarif(report: Mapping[str, Any], *, artifact_uri: str | None = None) -> dict[str, Any]:
    """One SARIF run with one result per suspected class, ranked as in the report.

    ``artifact_uri`` is the checkpoint's path as the consumer knows it (e.g. relative to a repository
    root); without it the findings carry only logical locations and the checkpoint's sha256.
    """
    view = build_report_view(report, lambda _name: None)
    tool = view.tool
    sha256 = view.model.get("sha256")
    level = _LEVELS.get(view.verdict, "warning")

    artifact: dict[str, Any] = {"roles": ["analysisTarget"]}
    if artifact_uri:
        artifact["location"] = {"uri": artifact_uri}
    if isinstance(sha256, str) and sha256:
        artifact["hashes"] = {"sha-256": sha256}

    results = []
    for rank, entry in enumerate(view.suspected, start=1):
        location: dict[str, Any] = {
            "logicalLocations": [
                {
                    "name": entry.label,
                    "fullyQualifiedName": f"model/classes/{entry.class_index}",
                    "kind": "resource",
                }
            ]
        }
        if artifact_uri:
            location["physicalLocation"] = {"artifactLocation": {"uri": artifact_uri, "index": 0}}
        anomaly = "n/a" if entry.anomaly_index is None else f"{entry.anomaly_index:.2f}"
        threshold = view.thresholds.get("anomaly_index", "n/a")
        probability = "n/a" if view.probability is None else f"{view.probability:.2f}"
        results.append(
            {
                "ruleId": RULE_ID,
                "ruleIndex": 0,
                "level": level,
                "kind": "fail",
                "rank": float(max(0.0, 100.0 - (rank - 1) * 10.0)),
                "message": {
                    "text": f"{entry.label} is a suspected backdoor target (rank {rank}): anomaly index "
                    f"{anomaly} (MAD reference line {threshold}); P(backdoored) = {probability}, "
                    f"verdict {view.verdict}."
                },
                "locations": [location],
                "partialFingerprints": {"modelClass/v1": f"{sha256}:{entry.class_index}"},
                "properties": {
                    "class_index": entry.class_index,
                    "suspect_rank": rank,
                    "score": entry.score,
                    "anomaly_index": entry.anomaly_index,
                    "success_rate": entry.success_rate,
                    "stability": entry.stability,
                    "trigger_bbox": list(entry.trigger_bbox) if entry.trigger_bbox else None,
                    "features": entry.features,
                },
            }
        )

    invocation: dict[str, Any] = {
        "executionSuccessful": True,
        "properties": {"seconds": view.seconds, "device": view.device, "config": view.config},
    }
    if view.created_at:
        invocation["endTimeUtc"] = view.created_at
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": str(tool.get("name", "backdoor-audit")),
                        "version": str(tool.get("version", "")) or "unknown",
                        "rules": [_RULE],
                    }
                },
                "artifacts": [artifact],
                "invocations": [invocation],
                "results": results,
                "properties": {
                    "verdict": view.verdict,
                    "probability": view.probability,
                    "suspected_classes": [c.class_index for c in view.suspected],
                    "thresholds": view.thresholds,
                    "model": view.model,
                },
            }
        ],
    }
