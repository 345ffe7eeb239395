"""The public surface of ``durable`` and the shape of the installed package."""

from __future__ import annotations

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
