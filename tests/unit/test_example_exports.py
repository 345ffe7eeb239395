"""Exported runs of the examples, recorded by tests/fixtures/exports/make.py, replayed
against today's code with durable.testing.replay (no database): a change to an example
that would block its runs already in production fails here first."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from durable.testing import replay

ROOT = Path(__file__).resolve().parents[2]
EXPORTS = sorted((ROOT / "tests" / "fixtures" / "exports").glob("*.json"))


@pytest.mark.parametrize("path", EXPORTS, ids=lambda p: p.stem)
def test_recorded_runs_of_the_examples_still_replay(path: Path) -> None:
    module_name = path.stem.split("_", 1)[0]
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        module = importlib.import_module(module_name)
    finally:
        sys.path.remove(str(ROOT / "examples"))
    document = json.loads(path.read_text())
    assert document["run"]["status"] == "completed"
    replay(module.app, path)


def test_there_are_recorded_runs() -> None:
    assert len(EXPORTS) >= 2
