"""The example app the command-line tests drive.

Subprocesses import it as ``cli_app:app`` (the tests put this directory on PYTHONPATH);
its App takes the database from ``$DURABLE_DSN``. The tests themselves call
:func:`build` with their own DSN to start runs and run workers in-process.

``$CLI_APP_VARIANT`` picks the code of the ``greet`` workflow: ``a`` (the default) yields
the step ``hello``, ``b`` yields ``shout`` instead, which is the kind of change
``durable replay`` must catch. ``old`` also registers a workflow the default variant does
not know (``legacy``), for the runs ``durable replay`` skips.

Workflows are annotated with their result type (``-> str``), the way docs/API.md writes
them; ``greet_typed`` uses the full ``Generator[Any, Any, str]`` form instead.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import durable


def build(dsn: str | None = None, variant: str | None = None) -> durable.App:
    """An App with the example workflows registered."""
    variant = variant or os.environ.get("CLI_APP_VARIANT", "a")
    app = durable.App(dsn)

    @app.step(name="hello")
    def hello(name: str) -> str:
        return f"hello {name}"

    @app.step(name="shout")
    def shout(name: str) -> str:
        return f"HELLO {name.upper()}"

    if variant == "b":

        @app.workflow(name="greet")
        def greet_b(ctx: durable.Context, name: str) -> str:
            return (yield shout(name))

    else:

        @app.workflow(name="greet")
        def greet(ctx: durable.Context, name: str) -> str:
            return (yield hello(name))

    @app.step(name="check_flag", retry=durable.RetryPolicy(max_attempts=1))
    def check_flag(path: str) -> str:
        """Fails while the flag file exists: the tests create it and remove it."""
        if Path(path).exists():
            raise RuntimeError(f"flag file {path} says fail")
        return "ok"

    @app.workflow(name="fragile")
    def fragile(ctx: durable.Context, path: str) -> str:
        return (yield check_flag(path))

    @app.workflow(name="approval")
    def approval(ctx: durable.Context) -> dict[str, Any]:
        ctx.set_status("waiting for approval")
        decision = yield ctx.wait_signal("approve")
        go = yield ctx.wait_event("go")
        return {"decision": decision, "go": go}

    @app.step(name="add_one")
    def add_one(n: int) -> int:
        return n + 1

    @app.workflow(name="chain")
    def chain(ctx: durable.Context, n: int) -> int:
        a = yield add_one(n)
        b = yield add_one(a)
        return b

    @app.workflow(name="greet_typed")
    def greet_typed(ctx: durable.Context, name: str) -> Generator[Any, Any, str]:
        """Annotated the way a type checker wants a generator annotated."""
        return (yield hello(name))

    if variant == "old":

        @app.workflow(name="legacy")
        def legacy(ctx: durable.Context) -> str:
            return (yield hello("legacy"))

    return app


app = build()
