"""The dashboard's ASGI application: pages, the JSON API, live updates, bulk jobs.

Every read and action goes through the App's public client calls (the same as the CLI's);
there is no SQL here. Blocking calls run in Starlette's thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import _errors
from .._app import App
from .._clock import utcnow
from ..replay.errors import DurableError
from ..replay.vocabulary import RunStatus
from ..store import (
    ConflictError,
    DatabaseUnavailable,
    RunNotActive,
    RunNotFound,
    RunStateError,
    ScheduleNotFound,
    StoreError,
)
from ._security import (
    CSRF_FIELD,
    SESSION_COOKIE,
    Guard,
    base_of,
    csrf_token,
    guard_middleware,
    is_api,
    path_of,
)
from ._timeline import timeline

__all__ = ["build"]

PAGE_SIZE = 50
#: how often a live page looks again with no notification (the safety net)
LIVE_POLL = 1.5
STATUSES = [str(s) for s in RunStatus]
ACTIONS = ("pause", "resume", "cancel", "retry", "rerun")
FILTERS = ("workflow", "status", "search")
#: characters of a payload shown on a page (the JSON API has all of it)
PAGE_PAYLOAD = 20_000


def strict_filter(given: Any) -> dict[str, str]:
    """A bulk action's filter from a JSON body: known keys with string values only (a
    typo must not widen the filter to every run)."""
    if not isinstance(given, dict):
        raise ValueError('"filter" must be an object such as {"status": "failed"}')
    unknown = sorted(set(given) - set(FILTERS))
    if unknown:
        raise ValueError(f"unknown filter key(s) {unknown}; use {', '.join(FILTERS)}")
    for key, value in given.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"filter {key!r} must be a non-empty string, not {value!r}")
    if "status" in given and given["status"] not in STATUSES:
        raise ValueError(f"unknown status {given['status']!r}; one of {', '.join(STATUSES)}")
    return {k: v.strip() for k, v in given.items()}


LONG_PAYLOAD = 400  # characters after which a payload is folded


def _here() -> Any:
    return resources.files("durable.dashboard")


def _pretty(value: Any) -> str:
    try:
        text = json.dumps(value, indent=2, sort_keys=True, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > PAGE_PAYLOAD:
        cut = len(text) - PAGE_PAYLOAD
        return f"{text[:PAGE_PAYLOAD]}\n… {cut:,} more characters (the JSON API has all of it)"
    return text


def _ago(when: Any) -> str:
    if not isinstance(when, datetime):
        return ""
    seconds = (utcnow() - when).total_seconds()
    if seconds < 0:
        return "in " + _duration(-seconds)
    return _duration(seconds) + " ago"


def _duration(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _stamp(when: Any) -> str:
    if not isinstance(when, datetime):
        return "-"
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- bulk actions --------------------------------------------------------------------------


@dataclass
class Job:
    """A bulk action running in the background."""

    id: str
    action: str
    total: int = 0
    done: int = 0
    failed: int = 0
    state: str = "collecting"  # collecting -> running -> finished
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "state": self.state,
            "errors": self.errors[:20],
        }


class Jobs:
    def __init__(self, app: App) -> None:
        self._app = app
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def start(self, action: str, run_ids: list[str] | None, filters: dict[str, Any] | None) -> Job:
        job = Job(uuid.uuid4().hex[:12], action)
        with self._lock:
            self._jobs[job.id] = job
        thread = threading.Thread(
            target=self._run, args=(job, run_ids, filters), name=f"durable-bulk-{job.id}"
        )
        thread.daemon = True
        thread.start()
        return job

    def _run(self, job: Job, run_ids: list[str] | None, filters: dict[str, Any] | None) -> None:
        app = self._app
        try:
            if run_ids is None:
                # the matching set first: acting changes membership (a cancelled run is no
                # longer "waiting"), so paging while acting would skip runs
                run_ids = []
                offset = 0
                while True:
                    page = app.list_runs(**(filters or {}), limit=500, offset=offset)
                    run_ids.extend(r.run_id for r in page.runs)
                    job.total = page.total
                    if len(page.runs) < 500:
                        break
                    offset += len(page.runs)
            run_ids = list(dict.fromkeys(run_ids))  # pages can overlap while runs start
            job.total = len(run_ids)
            job.state = "running"
            for run_id in run_ids:
                try:
                    _act(app, job.action, run_id, {})
                    job.done += 1
                except DurableError as exc:
                    job.failed += 1
                    if len(job.errors) < 20:
                        job.errors.append(f"{run_id}: {exc}")
        except Exception as exc:  # the database went away, or the filter was refused
            job.errors.append(f"the job stopped: {_one_line(exc)}")
        finally:
            job.state = "finished"


def _act(app: App, action: str, run_id: str, body: dict[str, Any]) -> Any:
    """One action on one run; returns a new run's id for retry/rerun/fork."""
    if action == "pause":
        app.pause(run_id)
    elif action == "resume":
        app.resume(run_id)
    elif action == "cancel":
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ValueError('"reason" must be a string')
        app.cancel(run_id, reason or "cancelled from the dashboard")
    elif action == "retry":
        return app.retry(run_id).run_id
    elif action == "rerun":
        return app.rerun(run_id).run_id
    elif action == "fork":
        at_seq = body.get("at_seq")
        if isinstance(at_seq, str) and at_seq.isdigit():
            at_seq = int(at_seq)  # from a form
        if isinstance(at_seq, bool) or not isinstance(at_seq, int) or not 1 <= at_seq < 2**31:
            raise ValueError(f'"at_seq" must be an event\'s seq (an integer), not {at_seq!r}')
        return app.fork(run_id, at_seq).run_id
    elif action == "signal":
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError('"name" must be the signal\'s name (a non-empty string)')
        app.signal(run_id, name, body.get("payload"))
    else:
        raise _errors.InvalidArgument(f"unknown action {action!r}")
    return None


def _error_status(exc: BaseException) -> int:
    if isinstance(exc, RunNotFound | ScheduleNotFound):
        return 404
    if isinstance(exc, DatabaseUnavailable):
        return 503
    if isinstance(exc, RunNotActive | RunStateError):
        return 409
    if isinstance(exc, _errors.InvalidArgument | ValueError | KeyError | TypeError):
        return 400
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, StoreError):
        return 503
    if isinstance(exc, DurableError):
        return 409
    return 500


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return text[0] if text else type(exc).__name__


# -- the application -------------------------------------------------------------------------


def build(
    app: App,
    *,
    read_only: bool = False,
    token: str | None = None,
    allowed_hosts: tuple[str, ...] = (),
) -> Starlette:
    """The dashboard of ``app`` as an ASGI application (see :func:`durable.dashboard.asgi`)."""
    guard = Guard(token, read_only, allowed_hosts)
    jobs = Jobs(app)
    templates = Environment(
        loader=FileSystemLoader(str(_here() / "templates")),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    templates.filters.update(pretty=_pretty, ago=_ago, duration=_duration, stamp=_stamp)

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        html = templates.get_template(name).render(
            request=request,
            csrf=csrf_token(request),
            csrf_field=CSRF_FIELD,
            read_only=guard.read_only,
            base=base_of(request),
            path=path_of(request),
            notice=request.query_params.get("notice"),
            failure=request.scope.get("durable_problem") or request.query_params.get("error"),
            long_payload=LONG_PAYLOAD,
            **context,
        )
        return HTMLResponse(html)

    async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(fn, *args, **kwargs)

    def filters_of(source: Any) -> dict[str, Any]:
        out = {}
        for key in FILTERS:
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                out[key] = value.strip()
        return out

    # -- pages ------------------------------------------------------------------------------

    async def overview(request: Request) -> Response:
        stats = await call(app.stats)
        series = await call(app.timeseries)
        blocked = await call(app.list_runs, status="blocked", limit=20)
        peak = max([1, *(b.started for b in series), *(b.completed + b.failed for b in series)])
        return page(
            request,
            "overview.html",
            title="Overview",
            stats=stats,
            statuses=STATUSES,
            series=series,
            peak=peak,
            blocked=blocked.runs,
        )

    async def runs_page(request: Request) -> Response:
        filters = filters_of(request.query_params)
        try:
            offset = min(max(int(request.query_params.get("offset", 0)), 0), 10**9)
        except ValueError:
            offset = 0
        problem = None
        if filters.get("status") not in (None, *STATUSES):
            problem = f"unknown status {filters['status']!r}; choose one of the list"
            filters.pop("status")
        result = await call(app.list_runs, **filters, limit=PAGE_SIZE, offset=offset)
        if problem:
            request.scope.setdefault("durable_problem", problem)
        return page(
            request,
            "runs.html",
            title="Runs",
            runs=result.runs,
            total=result.total,
            offset=offset,
            page_size=PAGE_SIZE,
            filters=filters,
            statuses=STATUSES,
            workflows=sorted(app.workflows),  # suggestions; any name can be typed
            actions=ACTIONS,
        )

    async def run_page(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            if "\x00" in run_id:
                raise RunNotFound(run_id.replace("\x00", "\\0"))
            run = await call(app.get_run, run_id)
        except RunNotFound:
            missing = page(request, "missing.html", title="Not found", what=f"run {run_id}")
            missing.status_code = 404
            return missing
        events = await call(app.history, run_id)
        children = [
            str(e.data["child_run_id"])
            for e in events
            if e.type == "child_started"
            and isinstance(e.data, dict)
            and e.data.get("child_run_id") is not None
        ]
        line = timeline(events, run.finished_at)
        return page(
            request,
            "run.html",
            title=f"Run {run_id[:8]}",
            run=run,
            events=events,
            children=children,
            timeline=line,
            actions=ACTIONS,
        )

    async def workers_page(request: Request) -> Response:
        return page(request, "workers.html", title="Workers", workers=await call(app.workers))

    async def queues_page(request: Request) -> Response:
        return page(request, "queues.html", title="Queues", queues=await call(app.queues))

    async def schedules_page(request: Request) -> Response:
        found = await call(app.list_schedules)
        return page(request, "schedules.html", title="Schedules", schedules=found)

    async def job_page(request: Request) -> Response:
        job = jobs.get(request.path_params["job_id"])
        if job is None:
            gone = page(request, "missing.html", title="Not found", what="such bulk job")
            gone.status_code = 404
            return gone
        return page(request, "job.html", title=f"Bulk {job.action}", job=job)

    async def login_page(request: Request) -> Response:
        if request.method == "POST":
            form = await request.form()
            given = form.get("token")
            session = guard.login(given if isinstance(given, str) else "")
            target = str(form.get("next") or "/")
            if not target.startswith("/") or target.startswith(("//", "/\\")):
                target = "/"
            if session is None:
                response = page(request, "login.html", title="Log in", wrong=True, next=target)
                response.status_code = 401
                return response
            redirect = RedirectResponse(base_of(request) + target, status_code=303)
            redirect.set_cookie(
                SESSION_COOKIE,
                session,
                httponly=True,
                samesite="strict",
                path=base_of(request) or "/",
                secure=request.url.scheme == "https",
            )
            return redirect
        return page(
            request,
            "login.html",
            title="Log in",
            wrong=False,
            next=request.query_params.get("next", "/"),
        )

    # -- actions from pages (forms) ---------------------------------------------------------

    def back(request: Request, target: str, **message: str) -> Response:
        """Back to a page of the dashboard (``target`` below its mount point)."""
        query = "&".join(f"{k}={_quote(v)}" for k, v in message.items())
        sep = "&" if "?" in target else "?"
        target = base_of(request) + target
        return RedirectResponse(f"{target}{sep}{query}" if query else target, status_code=303)

    async def run_action_form(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        action = request.path_params["action"]
        form = await request.form()
        body: dict[str, Any] = dict(request.query_params)  # fork's at_seq comes in the URL
        body.update({k: v for k, v in form.items() if k != CSRF_FIELD})
        target = f"/runs/{_quote(run_id)}"
        try:
            if action == "signal":
                raw = str(body.get("payload") or "").strip()
                try:
                    body["payload"] = json.loads(raw) if raw else None
                except json.JSONDecodeError as exc:
                    return back(request, target, error=f"the payload is not JSON: {exc.msg}")
                if not str(body.get("name") or "").strip():
                    return back(request, target, error="give the signal a name")
            new = await call(_act, app, action, run_id, body)
        except Exception as exc:
            return back(request, target, error=_one_line(exc))
        if new is not None and new != run_id:
            return back(request, f"/runs/{_quote(new)}", notice=f"{action}: new run {new}")
        return back(request, target, notice=f"{action}: done")

    async def bulk_form(request: Request) -> Response:
        form = await request.form()
        action = str(form.get("action") or "")
        if action not in ACTIONS:
            return back(request, "/runs", error=f"choose an action ({', '.join(ACTIONS)})")
        if form.get("scope") == "filter":
            chosen = filters_of(form)
            try:
                await call(app.list_runs, **chosen, limit=1)
            except Exception as exc:
                return back(request, "/runs", error=_one_line(exc))
            job = jobs.start(action, None, chosen)
        else:
            ids = [str(v) for v in form.getlist("run_id")]
            if not ids:
                return back(request, "/runs", error="select runs first")
            job = jobs.start(action, ids, None)
        return RedirectResponse(f"{base_of(request)}/jobs/{job.id}", status_code=303)

    async def schedule_form(request: Request) -> Response:
        name = request.path_params["name"]
        action = request.path_params["action"]
        try:
            if action == "pause":
                await call(app.pause_schedule, name)
            elif action == "resume":
                await call(app.resume_schedule, name)
            elif action == "trigger":
                handle = await call(app.trigger_schedule, name)
                return back(request, "/schedules", notice=f"started run {handle.run_id}")
            else:
                return back(request, "/schedules", error=f"unknown action {action!r}")
        except Exception as exc:
            return back(request, "/schedules", error=_one_line(exc))
        return back(request, "/schedules", notice=f"{name}: {action}d")

    # -- JSON --------------------------------------------------------------------------------

    def as_json(value: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(_jsonable(value), status_code=status)

    def api_error(exc: BaseException) -> JSONResponse:
        return JSONResponse({"error": _one_line(exc)}, status_code=_error_status(exc))

    async def api_runs(request: Request) -> Response:
        q = request.query_params
        try:
            limit = int(q.get("limit", PAGE_SIZE))
            offset = int(q.get("offset", 0))
            if not 0 <= limit <= 1000:
                raise ValueError("limit must be between 0 and 1000")
            result = await call(app.list_runs, **filters_of(q), limit=limit, offset=offset)
        except Exception as exc:
            return api_error(exc)
        return as_json({"runs": result.runs, "total": result.total})

    async def api_run(request: Request) -> Response:
        try:
            run_id = request.path_params["run_id"]
            if "\x00" in run_id:
                raise RunNotFound(run_id.replace("\x00", "\\0"))
            return as_json(await call(app.get_run, run_id))
        except Exception as exc:
            return api_error(exc)

    async def api_events(request: Request) -> Response:
        try:
            return as_json(await call(app.history, request.path_params["run_id"]))
        except Exception as exc:
            return api_error(exc)

    def api_list(fn: Callable[[], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                return as_json(await call(fn))
            except Exception as exc:
                return api_error(exc)

        return endpoint

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"the body is not JSON: {exc.msg}") from None
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    async def api_action(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        action = request.path_params["action"]
        if action not in (*ACTIONS, "signal", "fork"):
            return JSONResponse({"error": f"unknown action {action!r}"}, status_code=404)
        try:
            body = await body_of(request)
            new = await call(_act, app, action, run_id, body)
        except Exception as exc:
            return api_error(exc)
        return as_json({"ok": True, "run_id": new or run_id})

    async def api_bulk(request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ACTIONS:
            return JSONResponse({"error": f"unknown bulk action {action!r}"}, status_code=404)
        try:
            body = await body_of(request)
            if "run_ids" in body:
                ids = body["run_ids"]
                if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                    raise ValueError("run_ids must be a list of run ids")
                job = jobs.start(action, ids, None)
            elif "filter" in body:
                chosen = strict_filter(body["filter"])
                await call(app.list_runs, **chosen, limit=1)  # a bad filter: 400 now
                job = jobs.start(action, None, chosen)
            else:
                raise ValueError('give {"run_ids": [...]} or {"filter": {...}}')
        except Exception as exc:
            return api_error(exc)
        return JSONResponse({"job": job.as_json()}, status_code=202)

    async def api_job(request: Request) -> Response:
        job = jobs.get(request.path_params["job_id"])
        if job is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        return JSONResponse({"job": job.as_json()})

    # -- live updates --------------------------------------------------------------------------

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            async with contextlib.AsyncExitStack() as stack:
                listener = None
                with contextlib.suppress(Exception):
                    listener = await stack.enter_async_context(app.aio.notifications())
                while not await request.is_disconnected():
                    if listener is not None:
                        try:
                            await listener.wait(LIVE_POLL)
                        except DurableError:
                            listener = None
                    else:
                        await asyncio.sleep(LIVE_POLL)
                    yield f"event: refresh\ndata: {utcnow().isoformat()}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    routes = [
        Route("/", overview),
        Route("/runs", runs_page),
        Route("/runs/bulk", bulk_form, methods=["POST"]),
        Route("/runs/{run_id:path}/do/{action}", run_action_form, methods=["POST"]),
        Route("/runs/{run_id:path}", run_page),
        Route("/workers", workers_page),
        Route("/queues", queues_page),
        Route("/schedules", schedules_page),
        Route("/schedules/{name:path}/do/{action}", schedule_form, methods=["POST"]),
        Route("/jobs/{job_id}", job_page),
        Route("/login", login_page, methods=["GET", "POST"]),
        Route("/events", events),
        Route("/api/runs", api_runs),
        Route("/api/runs/bulk/{action}", api_bulk, methods=["POST"]),
        Route("/api/runs/{run_id:path}/events", api_events),
        Route("/api/runs/{run_id:path}/{action}", api_action, methods=["POST"]),
        Route("/api/runs/{run_id:path}", api_run),
        Route("/api/stats", api_list(app.stats)),
        Route("/api/workers", api_list(app.workers)),
        Route("/api/queues", api_list(app.queues)),
        Route("/api/schedules", api_list(app.list_schedules)),
        Route("/api/jobs/{job_id}", api_job),
        Mount("/static", StaticFiles(directory=str(_here() / "static")), name="static"),
    ]

    async def failed(request: Request, exc: Exception) -> Response:
        """An error no route expected (the database away, most often): one line."""
        status = _error_status(exc)
        message = _one_line(exc)
        if is_api(request):
            return JSONResponse({"error": message}, status_code=status)
        return Response(f"{message}\n", status_code=status, media_type="text/plain")

    async def not_found(request: Request, exc: Exception) -> Response:
        if is_api(request):
            return JSONResponse({"error": f"no such endpoint {path_of(request)}"}, 404)
        return Response("not found\n", status_code=404, media_type="text/plain")

    return Starlette(
        routes=routes,
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard_middleware(guard))],
        exception_handlers={DurableError: failed, Exception: failed, 404: not_found},
    )


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _jsonable(value: Any) -> Any:
    """Models (pydantic) as their JSON, recursively; datetimes as ISO strings."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", fallback=repr)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value
