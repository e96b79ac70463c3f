"""The shared vectors (tests/data/textops-vectors.json) hold collab.text.ops's answers; the
page's JavaScript is checked against the same file (tests/node/vectors.test.mjs)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from collab.text.ops import (
    apply,
    compose,
    diff,
    invert,
    normalize,
    transform,
    transform_position,
)
from collab.text.positions import cp_to_utf16, utf16_to_cp

PATH = Path(__file__).parent / "data" / "textops-vectors.json"
VECTORS: dict[str, list[dict[str, Any]]] = json.loads(PATH.read_text(encoding="utf-8"))


def cases(section: str) -> list[Any]:
    return [pytest.param(case, id=str(index)) for index, case in enumerate(VECTORS[section])]


def test_the_file_is_what_the_generator_writes() -> None:
    script = PATH.with_name("make_textops_vectors.py")
    spec = importlib.util.spec_from_file_location("make_textops_vectors", script)
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert PATH.read_text(encoding="utf-8") == generator.dumps(generator.build()), (
        "run: python -m tests.data.make_textops_vectors"
    )


def test_every_section_has_cases_with_hard_characters() -> None:
    text = PATH.read_text(encoding="utf-8")
    for piece in ["👨‍👩‍👧", "🇫🇷", "👍🏽", "中", "e\u0301", "\\r\\n"]:
        assert piece in text
    assert all(len(section) >= 60 for section in VECTORS.values())


@pytest.mark.parametrize("case", cases("apply"))
def test_apply(case: dict[str, Any]) -> None:
    assert apply(case["text"], case["op"]) == case["result"]


@pytest.mark.parametrize("case", cases("compose"))
def test_compose(case: dict[str, Any]) -> None:
    assert compose(case["a"], case["b"]) == case["result"]


@pytest.mark.parametrize("case", cases("transform"))
def test_transform(case: dict[str, Any]) -> None:
    assert list(transform(case["a"], case["b"], a_first=case["a_first"])) == case["result"]


@pytest.mark.parametrize("case", cases("transform_position"))
def test_transform_position(case: dict[str, Any]) -> None:
    assert transform_position(case["pos"], case["op"]) == case["result"]


@pytest.mark.parametrize("case", cases("normalize"))
def test_normalize(case: dict[str, Any]) -> None:
    assert normalize(case["op"]) == case["result"]


@pytest.mark.parametrize("case", cases("invert"))
def test_invert(case: dict[str, Any]) -> None:
    assert invert(case["op"], case["text"]) == case["result"]


@pytest.mark.parametrize("case", cases("diff"))
def test_diff(case: dict[str, Any]) -> None:
    assert diff(case["old"], case["new"], case["caret"]) == case["result"]


@pytest.mark.parametrize("case", cases("positions"))
def test_positions(case: dict[str, Any]) -> None:
    assert cp_to_utf16(case["text"], case["cp"]) == case["utf16"]
    assert utf16_to_cp(case["text"], case["utf16"]) == case["cp"]
