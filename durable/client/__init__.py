"""The client side of pgdurable: starting runs, talking to them, reading them back, from
sync code (:class:`Client`) and from async code (:class:`AsyncClient`), both running the
same operations (``_ops``)."""

from __future__ import annotations

from ._async import AsyncClient, AsyncRunHandle
from ._client import Client
from ._create import RunCreator, child_run_id
from ._handle import RunHandle

__all__ = ["AsyncClient", "AsyncRunHandle", "Client", "RunCreator", "RunHandle", "child_run_id"]
