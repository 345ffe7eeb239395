"""The client side of pgdurable: starting runs, talking to them, reading them back."""

from __future__ import annotations

from ._client import Client
from ._create import RunCreator, child_run_id
from ._handle import RunHandle

__all__ = ["Client", "RunCreator", "RunHandle", "child_run_id"]
