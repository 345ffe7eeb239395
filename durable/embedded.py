"""The embedded PostgreSQL server that pgdurable uses when no DSN is configured.

Its data lives in ``$DURABLE_HOME`` (default ``./.durable``); see docs/embedded.md. These
are the operations behind ``durable db``.
"""

from __future__ import annotations

from ._embedded import (
    DEFAULT_HOME,
    durable_home,
    embedded_start,
    embedded_status,
    embedded_stop,
    embedded_url,
    resolve_dsn,
)

__all__ = [
    "DEFAULT_HOME",
    "durable_home",
    "embedded_start",
    "embedded_status",
    "embedded_stop",
    "embedded_url",
    "resolve_dsn",
]
