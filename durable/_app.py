"""The App: registry of workflows and steps, and every client-side operation."""

from __future__ import annotations

import collections.abc
import functools
import inspect
import logging
import secrets
import threading
import time
import typing
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from ._codec import Codec, make_codec, type_hints
from ._embedded import resolve_dsn
from ._models import Event, PruneResult, RetryPolicy, RunInfo, RunPage, seconds
from ._waiter import ResultWaiter
from .replay import StepCall, current_context
from .replay.errors import (
    RunCancelled,
    RunFailed,
    RunNotActive,
    RunStateError,
    RunTimedOut,
    WorkflowNotFound,
)
from .store import NewEvent, Store
from .store._store import TERMINAL, RunLock

if TYPE_CHECKING:
    from ._worker import Worker

__all__ = ["App", "RunHandle", "StepDef", "WorkflowDef"]

log = logging.getLogger("durable")

F = TypeVar("F", bound=Callable[..., Any])

_DEFAULT_RETRY = RetryPolicy()


def utcnow() -> datetime:
    """The current time, aware, UTC."""
    return datetime.now(UTC)


def new_seed() -> int:
    """A fresh seed for ``ctx.random()`` / ``ctx.uuid4()``, recorded in the log."""
    return secrets.randbits(63)


@dataclass(frozen=True)
class StepDef:
    """A registered step."""

    name: str
    fn: Callable[..., Any]
    retry: RetryPolicy
    timeout: float | None
    result_annotation: Any


@dataclass(frozen=True)
class WorkflowDef:
    """A registered workflow."""

    name: str
    fn: Callable[..., Any]
    timeout: float | None
    param_annotations: tuple[Any, ...]
    result_annotation: Any


class RunHandle:
    """A reference to one run: its id, status, information and result."""

    def __init__(self, app: App, run_id: str) -> None:
        self.app = app
        self.run_id = run_id

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r})"

    def status(self) -> str:
        """The run's current status."""
        return self.app.store.status(self.run_id)

    def info(self) -> RunInfo:
        """Everything known about the run (see :meth:`App.get_run`)."""
        return self.app.get_run(self.run_id)

    def result(self, timeout: float | None = None) -> Any:
        """Block until the run ends; return its result or raise RunFailed, RunCancelled,
        RunTimedOut, or TimeoutError when ``timeout`` seconds pass first."""
        return self.app._wait_result(self.run_id, timeout)


class App:
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

    def _control(self, run_id: str, kind: str, data: dict[str, Any]) -> None:
        def body(conn: psycopg.Connection[Any]) -> None:
            self._apply_control(conn, run_id, kind, data, utcnow(), raise_inactive=True)

        self.store.run_in_tx(body)

    def _apply_control(
        self,
        conn: psycopg.Connection[Any],
        run_id: str,
        kind: str,
        data: dict[str, Any],
        now: datetime,
        *,
        raise_inactive: bool,
    ) -> None:
        """Apply pause/resume/cancel to a run inside the caller's transaction: queued for
        the worker that holds its lease, else appended to its log directly."""
        store = self.store
        lock = store.lock_run(conn, run_id)
        if lock.status in TERMINAL:
            if raise_inactive:
                raise RunNotActive(run_id, lock.status)
            return
        if kind == "cancel":
            for child in store.active_children(conn, run_id):
                self._apply_control(
                    conn,
                    child,
                    "cancel",
                    {"reason": f"parent {run_id} cancelled"},
                    now,
                    raise_inactive=False,
                )
        if lock.leased:
            store.post_control(conn, run_id, kind, data)
            store.notify(conn, store.channel, run_id)
            return
        seq = lock.last_seq + 1
        if kind == "pause":
            if lock.status != "paused":
                store.direct_append(
                    conn,
                    lock,
                    [NewEvent(seq, "run_paused", {}, now)],
                    status="paused",
                    wake_at=None,
                )
        elif kind == "resume":
            if lock.status == "paused":
                store.direct_append(
                    conn,
                    lock,
                    [NewEvent(seq, "run_resumed", {}, now)],
                    status="waiting" if lock.started else "pending",
                    wake_at=now,
                )
        elif kind == "cancel":
            reason = data.get("reason")
            if not lock.started or lock.status == "blocked":
                # Nothing can run compensation: the generator never started, or its code no
                # longer matches the log. The run ends here.
                self._finish_direct(
                    conn,
                    lock,
                    [NewEvent(seq, "run_cancelled", {"reason": reason}, now)],
                    status="cancelled",
                    now=now,
                )
            else:
                store.direct_append(
                    conn,
                    lock,
                    [NewEvent(seq, "cancel_requested", {"reason": reason}, now)],
                    status="waiting",
                    wake_at=now,
                )
                store.notify(conn, store.channel, run_id)
        else:  # pragma: no cover - internal misuse
            raise ValueError(f"unknown control {kind!r}")

    def _finish_direct(
        self,
        conn: psycopg.Connection[Any],
        lock: RunLock,
        events: list[NewEvent],
        *,
        status: str,
        now: datetime,
        error: dict[str, Any] | None = None,
    ) -> None:
        """End an unleased run from the client side, with the same side effects as a
        worker's finish (parent told, children cancelled, waiters notified)."""
        watched = self.store.direct_append(
            conn,
            lock,
            events,
            status=status,
            wake_at=None,
            finish=True,
            error=error,
            set_error=error is not None,
        )
        self._after_finish(
            conn,
            lock.run_id,
            lock.parent_run_id,
            lock.parent_pos,
            status,
            events[-1].data,
            watched,
            now,
        )

    def _after_finish(
        self,
        conn: psycopg.Connection[Any],
        run_id: str,
        parent_run_id: str | None,
        parent_pos: int | None,
        status: str,
        end_data: dict[str, Any],
        watched: bool,
        now: datetime,
    ) -> None:
        """Side effects of a run's end, inside the transaction that ends it."""
        store = self.store
        conn.execute(store.q("waiters_clear"), {"run_id": run_id})
        for child in store.active_children(conn, run_id):
            self._apply_control(
                conn,
                child,
                "cancel",
                {"reason": f"parent {run_id} ended {status}"},
                now,
                raise_inactive=False,
            )
        if parent_run_id is not None and parent_pos is not None:
            self._deliver_child_result(
                conn, parent_run_id, parent_pos, run_id, status, end_data, now
            )
        if watched:
            store.notify(conn, store.done_channel, run_id)

    def _deliver_child_result(
        self,
        conn: psycopg.Connection[Any],
        parent_run_id: str,
        pos: int,
        child_run_id: str,
        status: str,
        end_data: dict[str, Any],
        now: datetime,
    ) -> None:
        """Tell the parent how its child ended: queued if a worker holds the parent,
        else appended to the parent's log directly."""
        store = self.store
        if status == "completed":
            etype = "child_completed"
            data: dict[str, Any] = {
                "pos": pos,
                "child_run_id": child_run_id,
                "result": end_data.get("result"),
            }
        else:
            etype = "child_failed"
            error_type = end_data.get("error_type") or {
                "cancelled": "durable.Cancelled",
                "timed_out": "durable.RunTimedOut",
            }.get(status, status)
            message = end_data.get("message") or end_data.get("reason") or f"child {status}"
            data = {
                "pos": pos,
                "child_run_id": child_run_id,
                "status": status,
                "error_type": error_type,
                "message": message,
            }
        lock = store.lock_run(conn, parent_run_id)
        if lock.status in TERMINAL:
            return
        if lock.leased:
            store.post_control(conn, parent_run_id, "child_done", {"type": etype, "data": data})
            store.notify(conn, store.channel, parent_run_id)
            return
        paused = lock.status in ("paused", "blocked")
        store.direct_append(
            conn,
            lock,
            [NewEvent(lock.last_seq + 1, etype, data, now)],
            status=lock.status if paused else "waiting",
            wake_at=None if paused else now,
        )
        if not paused:
            store.notify(conn, store.channel, parent_run_id)

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

    # -- operating -----------------------------------------------------------------

    def retry(self, run_id: str) -> RunHandle:
        """Continue a ``failed`` or ``blocked`` run from where it stopped: the step that
        failed runs again with fresh attempts; completed steps are not re-executed."""
        store = self.store

        def body(conn: psycopg.Connection[Any]) -> None:
            lock = store.lock_run(conn, run_id)
            if lock.status not in ("failed", "blocked"):
                raise RunStateError(
                    f"run {run_id!r} is {lock.status}; only failed or blocked runs can be "
                    "retried (use rerun to start it over)",
                    run_id=run_id,
                    status=lock.status,
                )
            voids: list[int] = []
            if lock.status == "failed":
                last = conn.execute(
                    store.q("copy_events"),
                    {"run_id": run_id, "from_seq": lock.last_seq, "to_seq": lock.last_seq},
                ).fetchone()
                if last is not None and last[1] == "run_failed":
                    voids.append(int(last[0]))
                    cause = (last[2] or {}).get("cause_pos")
                    if cause is not None:
                        failures = [
                            int(r[0])
                            for r in conn.execute(
                                store.q("step_failure_seqs"),
                                {"run_id": run_id, "from_seq": lock.history_start, "pos": cause},
                            )
                        ]
                        if failures and _work_after(conn, store, run_id, max(failures)):
                            raise RunStateError(
                                f"run {run_id!r} handled the failure of its step at position "
                                f"{cause} (it recorded more work, such as compensation, before "
                                "failing); retrying would run that step again after its "
                                "compensation. Use rerun to start it over.",
                                run_id=run_id,
                                status=lock.status,
                            )
                        voids.extend(failures)
            now = utcnow()
            store.direct_append(
                conn,
                lock,
                [NewEvent(lock.last_seq + 1, "run_retried", {"voids": sorted(voids)}, now)],
                status="waiting",
                wake_at=now,
                error=None,
                set_error=True,
                reopen=True,
            )
            store.notify(conn, store.channel, run_id)

        store.run_in_tx(body)
        return RunHandle(self, run_id)

    def rerun(self, run_id: str) -> RunHandle:
        """A new run of the same workflow and arguments; its ``source_run_id`` is this one."""
        row = self.store.get_run(run_id)
        start = row.get("start_data") or {}
        now = utcnow()
        new_id = str(uuid.uuid4())
        event = NewEvent(
            1,
            "run_started",
            {"workflow": row["workflow"], "args": start.get("args", []), "seed": new_seed()},
            now,
        )
        wf = self.workflows.get(row["workflow"])
        deadline = now + timedelta(seconds=wf.timeout) if wf and wf.timeout else None
        self.store.create_run(
            run_id=new_id,
            workflow=row["workflow"],
            events=[event],
            now=now,
            wake_at=now,
            deadline=deadline,
            source_run_id=run_id,
        )
        return RunHandle(self, new_id)

    def fork(self, run_id: str, at_seq: int) -> RunHandle:
        """A new run whose log starts as a copy of this run's log up to ``at_seq``, so the
        steps recorded there are not executed again."""
        store = self.store
        row = store.get_run(run_id)
        if at_seq < row["history_start"] or at_seq > row["last_seq"]:
            raise ValueError(
                f"at_seq must be between {row['history_start']} and {row['last_seq']} "
                f"for run {run_id!r}"
            )
        events = [e for e in store.history(run_id) if e.seq <= at_seq]
        copied = _fork_events(events)
        now = utcnow()
        new_id = str(uuid.uuid4())
        renumbered = [NewEvent(i + 1, e.type, e.data, e.created_at) for i, e in enumerate(copied)]
        wf = self.workflows.get(row["workflow"])
        deadline = now + timedelta(seconds=wf.timeout) if wf and wf.timeout else None
        store.create_run(
            run_id=new_id,
            workflow=row["workflow"],
            events=renumbered,
            now=now,
            wake_at=now,
            deadline=deadline,
            source_run_id=run_id,
        )
        return RunHandle(self, new_id)

    def prune(self, older_than: timedelta | datetime | float, *, batch: int = 500) -> PruneResult:
        """Delete runs that ended before the cutoff (a datetime, or an age as timedelta or
        seconds), with all their log rows, in short batches."""
        if isinstance(older_than, datetime):
            if older_than.utcoffset() is None:
                raise ValueError("a prune cutoff datetime must be aware (with a timezone)")
            cutoff = older_than
        else:
            age = seconds(older_than, "older_than")
            assert age is not None
            cutoff = utcnow() - timedelta(seconds=age)
        result = PruneResult()
        for runs, events, signals in self._prune_batches(cutoff, batch):
            result = PruneResult(
                runs=result.runs + runs,
                events=result.events + events,
                signals=result.signals + signals,
            )
        return result

    def _prune_batches(self, cutoff: datetime, batch: int) -> Iterator[tuple[int, int, int]]:
        while True:
            counts = self.store.prune_batch(cutoff, batch)
            if counts[0] == 0:
                return
            yield counts

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


def _fork_events(events: list[Any]) -> list[Any]:
    """The events a fork copies: voids applied, operational and terminal events dropped,
    children that never reported back forgotten (the fork starts its own)."""
    voided: set[int] = set()
    for e in events:
        if e.type == "run_retried":
            voided.update(int(s) for s in e.data.get("voids", []))
    drop_types = {
        "run_retried",
        "run_blocked",
        "run_completed",
        "run_failed",
        "run_cancelled",
        "run_timed_out",
        "run_paused",
        "run_resumed",
        "cancel_requested",
    }
    kept = [e for e in events if e.seq not in voided and e.type not in drop_types]
    finished_children = {
        e.data.get("pos") for e in kept if e.type in ("child_completed", "child_failed")
    }
    return [
        e
        for e in kept
        if not (e.type == "child_started" and e.data.get("pos") not in finished_children)
    ]


def _generator_return(annotation: Any) -> Any:
    """The result type of a workflow: ``R`` of ``Generator[Y, S, R]``, else as written."""
    origin = typing.get_origin(annotation)
    if origin in (collections.abc.Generator, typing.Generator):
        args = typing.get_args(annotation)
        return args[2] if len(args) == 3 else inspect.Parameter.empty
    if origin in (collections.abc.Iterator, collections.abc.Iterable):
        return inspect.Parameter.empty
    return annotation


def _work_after(conn: psycopg.Connection[Any], store: Store, run_id: str, seq: int) -> bool:
    """Whether the workflow recorded work after ``seq`` (other than its end)."""
    rows = conn.execute(
        store.q("copy_events"), {"run_id": run_id, "from_seq": seq + 1, "to_seq": 2**31 - 1}
    ).fetchall()
    return any(r[1] not in ("run_failed", "status_set", "patch_marker") for r in rows)
