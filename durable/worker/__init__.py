"""The worker: claims runs, replays them, executes their steps, records the results."""

from __future__ import annotations

from ._worker import Worker, WorkerHost

__all__ = ["Worker", "WorkerHost"]
