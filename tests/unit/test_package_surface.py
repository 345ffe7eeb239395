"""The public surface of ``durable`` and the shape of the installed package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import durable
import durable.store

# Every name API.md promises, importable from ``durable``.
API_NAMES = {
    "App",
    "Context",
    "RetryPolicy",
    "RunHandle",
    "RunInfo",
    "Event",
    "RunPage",
    "PruneResult",
    "DurableError",
    "ConfigError",
    "SerializationError",
    "StepFailed",
    "WaitTimeout",
    "ChildFailed",
    "Cancelled",
    "NonDeterminismError",
    "RunFailed",
    "RunCancelled",
    "RunTimedOut",
    "RunNotActive",
    "RunNotFound",
}


def test_api_names_are_exported() -> None:
    assert set(durable.__all__) >= API_NAMES
    for name in durable.__all__:
        assert getattr(durable, name) is not None


def test_error_hierarchy_matches_the_contract() -> None:
    assert issubclass(durable.Cancelled, BaseException)
    assert not issubclass(durable.Cancelled, Exception)
    for name in durable.__all__:
        obj = getattr(durable, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, BaseException)
            and obj is not durable.Cancelled
        ):
            assert issubclass(obj, durable.DurableError), name


def test_replay_and_store_install_under_durable_only(tmp_path: Path) -> None:
    code = (
        "import importlib.util, durable.replay, durable.store, durable.sql\n"
        "assert importlib.util.find_spec('replay') is None\n"
        "assert importlib.util.find_spec('store') is None\n"
        "assert importlib.util.find_spec('sql') is None\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_store_uses_only_the_engines_errors() -> None:
    """The store never imports the engine's logic (only its error types)."""
    store_dir = Path(durable.store.__file__).resolve().parent
    for path in store_dir.glob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and "replay" in node.module:
                assert node.module.endswith("replay.errors"), f"{path.name}: {node.module}"
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module is None:
                raise AssertionError(f"{path.name} imports from the package root")
