"""``replay``: an exported run replayed against today's code (a check before deploy)."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from .._app import EXPORT_FORMAT, App
from .._replayer import Replayer
from ..replay import Blocked, HistoryEvent

__all__ = ["replay"]


def replay(app: App, source: dict[str, Any] | str | os.PathLike[str]) -> None:
    """Replay the run in ``source`` (what :meth:`durable.App.export` returns, or the path
    of a JSON file holding it) against the workflows ``app`` registers now, executing
    nothing. Raises :class:`durable.NonDeterminismError` with the message a worker would
    write if today's code does not reproduce the log; returns None if it does."""
    document = _load(source)
    run = document["run"]
    workflow = app.registry.workflow_def(run["workflow"]).name  # WorkflowNotFound if gone
    events = [
        HistoryEvent(
            int(e["seq"]), e["type"], e.get("data") or {}, datetime.fromisoformat(e["created_at"])
        )
        for e in document["events"]
    ]
    outcome = Replayer(app.registry).replay(workflow, run["run_id"], events)
    if isinstance(outcome, Blocked):
        raise outcome.error


def _load(source: dict[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    if isinstance(source, dict):
        document = source
    else:
        path = Path(source)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"replay: no exported run at {path}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"replay: {path} is not JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise ValueError(
            f"replay needs what app.export() returns (format {EXPORT_FORMAT!r}), got {found!r}"
        )
    return document
