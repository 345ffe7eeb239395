"""The App: registry of workflows and steps, and every client-side operation."""

from __future__ import annotations

import collections.abc
import functools
import inspect
import logging
import threading
import time
import typing
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ._codec import Codec, make_codec, type_hints
from ._embedded import resolve_dsn
from ._handle import RunHandle, StepDef, WorkflowDef, new_seed, utcnow
from ._models import Event, RetryPolicy, RunInfo, RunPage, seconds
from ._operations import OperationsMixin
from ._waiter import ResultWaiter
from .replay import StepCall, current_context
from .replay.errors import (
    RunCancelled,
    RunFailed,
    RunStateError,
    RunTimedOut,
    WorkflowNotFound,
)
from .store import NewEvent, Store
from .store._store import TERMINAL

if TYPE_CHECKING:
    from ._worker import Worker

__all__ = ["App", "RunHandle", "StepDef", "WorkflowDef"]

log = logging.getLogger("durable")

F = TypeVar("F", bound=Callable[..., Any])

_DEFAULT_RETRY = RetryPolicy()


class App(OperationsMixin):
    """A pgdurable application: workflows, steps, and the database they run on.

    ``dsn``: the argument, else ``$DURABLE_DSN``, else an embedded PostgreSQL server in
    ``$DURABLE_HOME`` (default ``./.durable``) started on first use. ``schema`` holds every
    table. ``codec`` is ``"json"`` (default) or ``"pickle"`` (only for databases that only
    trusted code writes).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str = "durable",
        codec: str | Codec = "json",
        pool_size: int = 20,
    ) -> None:
        self._dsn_arg = dsn
        self.schema = schema
        self.codec = make_codec(codec)
        self._pool_size = pool_size
        self._store: Store | None = None
        self._waiter: ResultWaiter | None = None
        self._store_lock = threading.Lock()
        self.workflows: dict[str, WorkflowDef] = {}
        self.steps: dict[str, StepDef] = {}

    # -- lifecycle -----------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The store, opened (and the schema migrated) on first use."""
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    dsn = resolve_dsn(self._dsn_arg)
                    self._store = Store(dsn, schema=self.schema, max_size=self._pool_size).open()
        return self._store

    @property
    def dsn(self) -> str:
        """The resolved DSN (starts the embedded server if that is the choice)."""
        return self.store.dsn

    def close(self) -> None:
        """Release every database connection."""
        with self._store_lock:
            if self._waiter is not None:
                self._waiter.close()
                self._waiter = None
            if self._store is not None:
                self._store.close()
                self._store = None

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- decorators ----------------------------------------------------------------

    def step(
        self,
        name: str | None = None,
        *,
        retry: RetryPolicy | None = _DEFAULT_RETRY,
        timeout: float | timedelta | None = None,
    ) -> Callable[[F], F]:
        """Register a step: any function with side effects. Called outside a workflow it
        simply runs; inside a running workflow it returns a command to ``yield``."""
        if callable(name) and not isinstance(name, str):
            raise TypeError("use @app.step() with parentheses")
        timeout_s = seconds(timeout, "step timeout")

        def decorate(fn: F) -> F:
            if not callable(fn) or inspect.isgeneratorfunction(fn):
                raise TypeError(
                    f"@app.step needs an ordinary function; {fn!r} is a generator function "
                    "(workflows use @app.workflow)"
                )
            step_name = name or fn.__qualname__
            hints = type_hints(fn)
            definition = StepDef(
                name=step_name,
                fn=fn,
                retry=retry if retry is not None else RetryPolicy(max_attempts=1),
                timeout=timeout_s,
                result_annotation=hints.get("return", inspect.Parameter.empty),
            )
            self.steps[step_name] = definition

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                ctx = current_context()
                if ctx is None:
                    return fn(*args, **kwargs)
                command = StepCall(step_name, args, kwargs, definition)
                ctx._created(command)
                return command

            wrapper.durable_step = definition  # type: ignore[attr-defined]
            wrapper.durable_name = step_name  # type: ignore[attr-defined]
            return wrapper  # type: ignore[return-value]

        return decorate

    def workflow(
        self, name: str | None = None, *, timeout: float | timedelta | None = None
    ) -> Callable[[F], F]:
        """Register a workflow: a generator function whose first parameter is the
        :class:`durable.Context`. Its name (default: the qualified name) is what the log
        records, so pass the old ``name=`` when renaming the function."""
        if callable(name) and not isinstance(name, str):
            raise TypeError("use @app.workflow() with parentheses")
        timeout_s = seconds(timeout, "workflow timeout")

        def decorate(fn: F) -> F:
            if not inspect.isgeneratorfunction(fn):
                raise TypeError(
                    f"@app.workflow needs a generator function (one that yields commands) "
                    f"whose first parameter is the durable.Context; {fn!r} is not one"
                )
            params = list(inspect.signature(fn).parameters.values())
            if not params or params[0].kind not in (
                inspect.Parameter.POSITIONAL_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
            ):
                raise TypeError(
                    f"workflow {fn.__qualname__} must take the durable.Context as its "
                    "first positional parameter"
                )
            wf_name = name or fn.__qualname__
            hints = type_hints(fn)
            annotations = tuple(
                hints.get(p.name, inspect.Parameter.empty)
                for p in params[1:]
                if p.kind
                in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            )
            self.workflows[wf_name] = WorkflowDef(
                name=wf_name,
                fn=fn,
                timeout=timeout_s,
                param_annotations=annotations,
                result_annotation=_generator_return(hints.get("return", inspect.Parameter.empty)),
            )
            fn.durable_name = wf_name  # type: ignore[attr-defined]
            fn.durable_app = self  # type: ignore[attr-defined]
            return fn

        return decorate

    def _workflow_def(self, workflow: Any) -> WorkflowDef:
        """The registered workflow for a decorated function or a name."""
        name = workflow if isinstance(workflow, str) else getattr(workflow, "durable_name", None)
        if name is None:
            raise TypeError(
                f"{workflow!r} is not a workflow; decorate it with @app.workflow() "
                "or pass its registered name"
            )
        try:
            return self.workflows[name]
        except KeyError:
            known = ", ".join(sorted(self.workflows)) or "none"
            raise WorkflowNotFound(
                f"unknown workflow {name!r} (registered: {known}); register it with "
                "@app.workflow() in the code this App runs",
                workflow=name,
            ) from None

    # -- decoding ------------------------------------------------------------------

    def _decode_args(self, workflow: str, raw: list[Any]) -> tuple[Any, ...]:
        """Workflow arguments from the log, typed by the workflow's annotations."""
        wf = self.workflows.get(workflow)
        annotations: tuple[Any, ...] = wf.param_annotations if wf else ()
        out = []
        for i, value in enumerate(raw):
            ann = annotations[i] if i < len(annotations) else inspect.Parameter.empty
            out.append(self.codec.decode(value, ann))
        return tuple(out)

    def _decode_value(self, kind: str, name: str, raw: Any) -> Any:
        """The engine's decode hook (see docs/internals.md)."""
        if kind == "args":
            return self._decode_args(name, raw)
        if kind == "step":
            step = self.steps.get(name)
            return self.codec.decode(
                raw, step.result_annotation if step else inspect.Parameter.empty
            )
        if kind == "child":
            wf = self.workflows.get(name)
            return self.codec.decode(raw, wf.result_annotation if wf else inspect.Parameter.empty)
        return self.codec.decode(raw)

    # -- starting runs -------------------------------------------------------------

    def start(
        self,
        workflow: Any,
        *args: Any,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        start_at: datetime | None = None,
        delay: float | timedelta | None = None,
    ) -> RunHandle:
        """Start a run of ``workflow`` (the decorated function or its name) with positional
        ``args``. A ``run_id`` or ``idempotency_key`` (per workflow) that exists starts
        nothing and returns the existing run's handle. ``start_at`` (aware datetime) or
        ``delay`` (seconds or timedelta) defer the start."""
        wf = self._workflow_def(workflow)
        if start_at is not None and delay is not None:
            raise ValueError("pass start_at or delay, not both")
        if start_at is not None and (
            not isinstance(start_at, datetime) or start_at.utcoffset() is None
        ):
            raise ValueError("start_at must be an aware datetime (with a timezone)")
        delay_s = seconds(delay, "delay")
        encoded = self.codec.encode_args(args)
        now = utcnow()
        begin = start_at.astimezone(UTC) if start_at is not None else now
        if delay_s:
            begin = now + timedelta(seconds=delay_s)
        rid = run_id or str(uuid.uuid4())
        deadline = begin + timedelta(seconds=wf.timeout) if wf.timeout else None
        started = NewEvent(
            1, "run_started", {"workflow": wf.name, "args": encoded, "seed": new_seed()}, now
        )
        actual, _created = self.store.create_run(
            run_id=rid,
            workflow=wf.name,
            events=[started],
            now=now,
            wake_at=begin,
            idempotency_key=idempotency_key,
            deadline=deadline,
            notify=begin <= now,
        )
        return RunHandle(self, actual)

    def handle(self, run_id: str) -> RunHandle:
        """A handle on an existing run (no database access)."""
        return RunHandle(self, run_id)

    # -- talking to runs -----------------------------------------------------------

    def signal(self, run_id: str, name: str, payload: Any = None) -> None:
        """Send a durable signal: FIFO per name, buffered until the run waits for it,
        delivered exactly once. Raises RunNotActive for an ended run, RunNotFound for an
        unknown one."""
        encoded = self.codec.encode(payload)
        self.store.send_signal(run_id, name, encoded)

    def emit_event(self, key: str, payload: Any = None) -> bool:
        """Emit a latched event: the first emission of ``key`` wins (True); later ones
        return False and change nothing. Every ``wait_event(key)`` receives the payload."""
        encoded = self.codec.encode(payload)
        return self.store.emit_event(key, encoded)

    def pause(self, run_id: str) -> None:
        """Stop the run at its next yield (status ``paused``) until :meth:`resume`."""
        self._control(run_id, "pause", {})

    def resume(self, run_id: str) -> None:
        """Let a paused run continue."""
        self._control(run_id, "resume", {})

    def cancel(self, run_id: str, reason: str | None = None) -> None:
        """Raise ``durable.Cancelled`` inside the workflow at its current yield; if it
        propagates, the run ends ``cancelled``. Unfinished children are cancelled too."""
        self._control(run_id, "cancel", {"reason": reason})

    # -- results -------------------------------------------------------------------

    def _wait_result(self, run_id: str, timeout: float | None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        store = self.store
        waiter = self._result_waiter()
        event = waiter.register(run_id)
        try:
            status = store.watch(run_id)  # after register: no end can slip between
            while status not in TERMINAL:
                wait = 2.0  # the safety-net poll; the notification usually comes first
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(
                            f"run {run_id!r} did not finish within {timeout:g}s "
                            f"(status {status}); is a worker running?"
                        )
                    wait = min(wait, left)
                event.wait(wait)
                event.clear()
                status = store.status(run_id)
        finally:
            waiter.unregister(run_id, event)
        return self._outcome(run_id)

    def _result_waiter(self) -> ResultWaiter:
        store = self.store  # opens the store first (it takes the same lock)
        with self._store_lock:
            if self._waiter is None:
                self._waiter = ResultWaiter(
                    store.connect_listener, lambda conn: store.listen(conn, store.done_channel)
                )
            return self._waiter

    def _outcome(self, run_id: str) -> Any:
        row = self.store.get_run(run_id)
        status = row["status"]
        end = row["end_data"] or {}
        if status == "completed":
            return self._decode_value("child", row["workflow"], end.get("result"))
        if status == "failed":
            raise RunFailed(run_id, end.get("error_type", "unknown"), end.get("message", ""))
        if status == "cancelled":
            raise RunCancelled(run_id, end.get("reason"))
        if status == "timed_out":
            raise RunTimedOut(run_id)
        raise RunStateError(f"run {run_id!r} has not ended (status {status})")  # pragma: no cover

    # -- inspecting ----------------------------------------------------------------

    def get_run(self, run_id: str) -> RunInfo:
        """Everything known about a run: status, arguments, result or error, times,
        lineage."""
        row = self.store.get_run(run_id)
        return self._info(row)

    def _info(self, row: dict[str, Any]) -> RunInfo:
        start = row.get("start_data") or {}
        end = row.get("end_data") or {}
        args = None
        if "args" in start:
            try:
                args = list(self._decode_args(row["workflow"], start["args"]))
            except Exception:
                args = list(start["args"])
        result = None
        if row["status"] == "completed":
            result = self._decode_value("child", row["workflow"], end.get("result"))
        return RunInfo(
            run_id=row["run_id"],
            workflow=row["workflow"],
            status=row["status"],
            args=args,
            result=result,
            error=row.get("error"),
            custom_status=self.codec.decode(row.get("custom_status")),
            created_at=row["created_at"],
            started_at=row.get("started_at"),
            finished_at=row.get("finished_at"),
            parent_run_id=row.get("parent_run_id"),
            source_run_id=row.get("source_run_id"),
            idempotency_key=row.get("idempotency_key"),
        )

    def history(self, run_id: str) -> list[Event]:
        """The run's log in order."""
        return [
            Event(seq=e.seq, type=e.type, created_at=e.created_at, data=e.data)
            for e in self.store.history(run_id)
        ]

    def list_runs(
        self,
        workflow: str | None = None,
        status: str | None = None,
        search: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> RunPage:
        """Runs, newest first, filtered by workflow, status and a search over run id,
        idempotency key and workflow name."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        rows, total = self.store.list_runs(
            workflow=workflow, status=status, search=search, limit=limit, offset=offset
        )
        return RunPage(runs=[self._info(r) for r in rows], total=total)

    def stats(self) -> dict[str, Any]:
        """Run counts: ``{"total", "by_status", "by_workflow": {workflow: {status: n}}}``."""
        by_status: dict[str, int] = {}
        by_workflow: dict[str, dict[str, int]] = {}
        total = 0
        for workflow, status, count in self.store.stats():
            total += count
            by_status[status] = by_status.get(status, 0) + count
            by_workflow.setdefault(workflow, {})[status] = count
        return {"total": total, "by_status": by_status, "by_workflow": by_workflow}

    # -- workers -------------------------------------------------------------------

    def worker(self, *, concurrency: int = 16, **options: Any) -> Worker:
        """A worker running in a background thread; use it as a context manager."""
        from ._worker import Worker

        return Worker(self, concurrency=concurrency, **options)

    def run_worker(self, *, concurrency: int = 16, **options: Any) -> None:
        """Run a worker in this thread until SIGINT/SIGTERM: no new work is claimed,
        running steps finish and are recorded, leases are released."""
        from ._worker import Worker

        Worker(self, concurrency=concurrency, **options).run(install_signal_handlers=True)


def _generator_return(annotation: Any) -> Any:
    """The result type of a workflow: ``R`` of ``Generator[Y, S, R]``, else as written."""
    origin = typing.get_origin(annotation)
    if origin in (collections.abc.Generator, typing.Generator):
        args = typing.get_args(annotation)
        return args[2] if len(args) == 3 else inspect.Parameter.empty
    if origin in (collections.abc.Iterator, collections.abc.Iterable):
        return inspect.Parameter.empty
    return annotation
