"""The values the store reads and writes: events, claims, locks, and their encoding."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "AppendResult",
    "Claim",
    "NewEvent",
    "RunLock",
    "StoredEvent",
]

ACTIVE = ("pending", "running", "waiting", "paused", "blocked")
TERMINAL = ("completed", "failed", "cancelled", "timed_out")


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: its seq is assigned by the caller (expected_seq + 1, ...)."""

    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event read back from the log."""

    run_id: str
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Claim:
    """A run this worker now holds the lease of."""

    run_id: str
    workflow: str
    token: uuid.UUID
    last_seq: int
    history_start: int
    deadline: datetime | None
    nudged: bool
    parent_run_id: str | None
    parent_pos: int | None
    #: the run's log, when the claim already read it (runs never started); else None
    events: list[StoredEvent] | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append learned about the run's row."""

    nudged: bool
    wake_now: bool
    watched: bool


@dataclass(slots=True)
class RunLock:
    """A run row locked with FOR UPDATE inside a client transaction."""

    run_id: str
    workflow: str
    status: str
    leased: bool
    last_seq: int
    history_start: int
    started: bool
    parent_run_id: str | None
    parent_pos: int | None
    deadline: datetime | None


def _events_json(events: Sequence[NewEvent]) -> str:
    return json.dumps(
        [
            {"seq": e.seq, "type": e.type, "data": e.data, "created_at": e.created_at.isoformat()}
            for e in events
        ],
        separators=(",", ":"),
    )


def _jsonb(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
