"""The engine's public names, and its promise to stay pure."""

from __future__ import annotations

import ast
from pathlib import Path

import durable.replay as replay

REPLAY_DIR = Path(replay.__file__).resolve().parent

# Pure standard library only: no I/O, no clock, no psycopg, nothing of durable or store.
ALLOWED_IMPORTS = {
    "__future__",
    "collections.abc",
    "contextlib",
    "dataclasses",
    "datetime",
    "enum",
    "logging",
    "os.path",
    "random",
    "reprlib",
    "sys",
    "threading",
    "types",
    "typing",
    "uuid",
}


def test_public_names_are_exported_and_resolve() -> None:
    expected = {
        "Engine",
        "Context",
        "current_context",
        "HistoryEvent",
        "Command",
        "StepCall",
        "Sleep",
        "WaitSignal",
        "WaitEvent",
        "ChildCall",
        "All",
        "AnyOf",
        "ContinueAsNew",
        "PendingStep",
        "PendingTimer",
        "PendingWait",
        "PendingChild",
        "Completed",
        "Failed",
        "CancelledOutcome",
        "ContinuedAsNew",
        "Blocked",
        "TimedOut",
        "DurableError",
        "Cancelled",
        "StepFailed",
        "WaitTimeout",
        "ChildFailed",
        "NonDeterminismError",
        "UnyieldedCommandError",
        "RUN_STARTED",
        "STEP_COMPLETED",
        "TERMINAL_EVENT_TYPES",
    }
    assert expected <= set(replay.__all__)
    for name in replay.__all__:
        assert getattr(replay, name) is not None, name


def test_event_type_constants_are_the_documented_names() -> None:
    assert replay.RUN_STARTED == "run_started"
    assert replay.STEP_ATTEMPT_FAILED == "step_attempt_failed"
    assert replay.EVENT_TYPES >= replay.TERMINAL_EVENT_TYPES
    assert len(replay.EVENT_TYPES) == 25


def test_the_engine_imports_only_pure_standard_library_modules() -> None:
    for path in REPLAY_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name in ALLOWED_IMPORTS, f"{path.name} imports {name}"
