"""Client input at the API boundary: JSON text from form fields, and numbers that must be finite."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.schemas import MAX_JSON_DEPTH, CheckpointCreate, ClientJsonError, check_client_json, parse_client_json

FORM = {"input_shape": "1,28,28", "num_classes": "10"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[NaN]", "NaN is not a JSON number"),
        ('{"a": [1, -Infinity]}', "-Infinity is not a JSON number"),
        ('{"a": {"b": 1e400}}', "^a.b is inf"),
        ("[" * 100_000, f"nested more than {MAX_JSON_DEPTH} levels deep"),  # json.loads alone: RecursionError
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "nested more than"),
        ("{not json", "not valid JSON"),
        ("[" + "1" * 5000 + "]", "not valid JSON"),  # longer than Python converts: a ValueError, not a decode error
    ],
)
def test_client_json_refuses_what_would_end_in_a_500(text: str, fragment: str) -> None:
    with pytest.raises(ClientJsonError, match=fragment.replace("[", r"\[")):
        parse_client_json(text)


def test_client_json_passes_ordinary_documents_unchanged() -> None:
    document = '{"saliency": {"iterations": 60, "radius": 0.1, "seeds": [0, 1, 2]}, "scoring": {}}'
    assert parse_client_json(document) == {
        "saliency": {"iterations": 60, "radius": 0.1, "seeds": [0, 1, 2]},
        "scoring": {},
    }
    nested: Any = []
    for _ in range(MAX_JSON_DEPTH - 1):
        nested = [nested]
    check_client_json(nested)  # exactly at the limit
    with pytest.raises(ClientJsonError, match=r"saliency\.seeds\[1\] is nan"):
        check_client_json({"saliency": {"seeds": [0, float("nan")]}})


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"mean": "nan"}, ("mean", 0)),
        ({"std": "inf"}, ("std", 0)),
        ({"std": "0.5,-inf"}, ("std", 1)),
        ({"mean": "1e400"}, ("mean", 0)),
        ({"mean": "[1e400]"}, ("mean",)),
        ({"std": "[Infinity]"}, ("std",)),
        ({"class_names": "[" * 100_000}, ("class_names",)),
    ],
)
def test_checkpoint_form_refuses_non_finite_numbers_and_deep_json(fields: dict[str, str], loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        CheckpointCreate.model_validate({**FORM, **fields})
    assert [error["loc"] for error in caught.value.errors()] == [loc]


def test_checkpoint_form_keeps_finite_normalisation() -> None:
    declared = CheckpointCreate.model_validate({**FORM, "mean": "0.5", "std": "[0.25]", "class_names": '["a", "b"]'})
    assert declared.mean == [0.5] and declared.std == [0.25] and declared.class_names == ["a", "b"]
