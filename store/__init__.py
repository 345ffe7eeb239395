"""The only code that talks to PostgreSQL: migrations, the event store, leases."""

from __future__ import annotations

from ._migrate import migrate
from ._store import ACTIVE, TERMINAL, AppendResult, Claim, NewEvent, Store, StoredEvent

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "AppendResult",
    "Claim",
    "NewEvent",
    "Store",
    "StoredEvent",
    "migrate",
]
