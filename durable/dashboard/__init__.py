"""pgdurable's web dashboard: every run, queue, schedule and worker, live, in a browser.

Install it with ``pip install 'pgdurable[dashboard]'``; serve it with ``durable dashboard
APP`` or mount :func:`asgi` in your own ASGI application. It reads and acts through the
App's public calls (no SQL of its own), binds to 127.0.0.1 unless told otherwise, and
escapes every value it shows. See docs/dashboard.md.
"""

from __future__ import annotations

import os
from typing import Any

from .._app import App

__all__ = ["asgi", "serve"]

_MISSING = (
    "the dashboard needs its extra: pip install 'pgdurable[dashboard]' (Starlette, Jinja2, uvicorn)"
)


def asgi(
    app: App,
    *,
    read_only: bool = False,
    token: str | None = None,
    allowed_hosts: tuple[str, ...] = (),
) -> Any:
    """The dashboard of ``app`` as an ASGI application (mount it in FastAPI or
    Starlette). ``token`` (else ``$DURABLE_DASHBOARD_TOKEN``): every request needs it;
    ``read_only``: every action answers 403. Without a token it answers only to
    loopback host names and ``allowed_hosts`` (against DNS rebinding)."""
    try:
        from ._server import build
    except ImportError as exc:  # pragma: no cover - the extra is in dev
        raise ImportError(f"{_MISSING} ({exc})") from exc
    token = token if token is not None else os.environ.get("DURABLE_DASHBOARD_TOKEN") or None
    return build(app, read_only=read_only, token=token, allowed_hosts=allowed_hosts)


def serve(
    app: App,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    read_only: bool = False,
    token: str | None = None,
) -> None:
    """Serve the dashboard with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - the extra is in dev
        raise ImportError(f"{_MISSING} ({exc})") from exc
    uvicorn.run(
        asgi(app, read_only=read_only, token=token), host=host, port=port, log_level="warning"
    )
