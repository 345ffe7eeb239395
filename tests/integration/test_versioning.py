"""Versioning with ``ctx.patched``: a run started by old code keeps the old path after a
deploy of code with a patch; runs started by the new code take the new path and record a
``patch_marker``; both complete. Each deploy is a fresh App (same workflow ``name=``) and
a fresh worker without a cache, so resuming a run means replaying its log."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import durable

Deploy = Callable[..., durable.App]


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Poll an observable condition with a deadline (never a blind sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout}s: {what}")
        time.sleep(0.02)


def types(app: durable.App, run_id: str) -> list[str]:
    return [e.type for e in app.history(run_id)]


def markers(app: durable.App, run_id: str) -> list[dict[str, Any]]:
    return [e.data for e in app.history(run_id) if e.type == "patch_marker"]


def build(
    dsn: str,
    version: int,
    calls: Counter[str],
    answers: dict[str, list[bool]],
    *,
    timeout: float | None,
    patch_after_wait: bool = False,
) -> durable.App:
    """The ``signup`` workflow: v1 creates an account, waits for a confirmation and sends a
    welcome; v2 adds a bonus step guarded by ``ctx.patched("new-step")``, placed before the
    wait (the point old runs have already passed) or right after it."""
    app = durable.App(dsn)

    @app.step(name="create_account")
    def create_account(user: str) -> str:
        calls["create_account"] += 1
        return f"acct-{user}"

    @app.step(name="grant_bonus")
    def grant_bonus(account: str) -> int:
        calls["grant_bonus"] += 1
        return 100

    @app.step(name="welcome")
    def welcome(account: str, by: str) -> str:
        calls["welcome"] += 1
        return f"welcome {account} ({by})"

    if version == 1:

        @app.workflow(name="signup")
        def signup_v1(ctx: durable.Context, user: str) -> dict[str, Any]:
            account = yield create_account(user)
            confirm = yield ctx.wait_signal("confirm", timeout=timeout)
            text = yield welcome(account, confirm["by"])
            return {"text": text, "bonus": None}

    else:

        def bonus_if_patched(ctx: durable.Context, account: str) -> Any:
            new = ctx.patched("new-step")
            answers.setdefault(ctx.run_id, []).append(new)
            if new:
                return (yield grant_bonus(account))
            return None

        @app.workflow(name="signup")
        def signup_v2(ctx: durable.Context, user: str) -> dict[str, Any]:
            account = yield create_account(user)
            bonus = None
            if not patch_after_wait:
                bonus = yield from bonus_if_patched(ctx, account)
            confirm = yield ctx.wait_signal("confirm", timeout=timeout)
            if patch_after_wait:
                bonus = yield from bonus_if_patched(ctx, account)
            text = yield welcome(account, confirm["by"])
            return {"text": text, "bonus": bonus}

    return app


@pytest.fixture
def deploy(dsn: str) -> Iterator[Deploy]:
    apps: list[durable.App] = []

    def make(version: int, calls: Counter[str], answers: dict[str, list[bool]], **kw: Any) -> Any:
        app = build(dsn, version, calls, answers, **kw)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def _old_and_new_runs(
    deploy: Deploy, worker: Any, timeout: float | None
) -> tuple[durable.App, str, str, Counter[str], dict[str, list[bool]]]:
    """Start a run on v1 and let it reach its wait; deploy v2 and start a run on it; both
    get their confirmation and complete. Returns (v2 app, old run, new run, calls,
    answers of ctx.patched by run)."""
    calls: Counter[str] = Counter()
    answers: dict[str, list[bool]] = {}
    v1 = deploy(1, calls, answers, timeout=timeout)
    old = v1.start("signup", "old").run_id
    with worker(v1):
        wait_for(lambda: v1.get_run(old).status == "waiting", what="old run waiting")
    assert calls == Counter(create_account=1)

    v2 = deploy(2, calls, answers, timeout=timeout)
    with worker(v2, cache_size=0):
        new = v2.start("signup", "new").run_id
        wait_for(lambda: v2.get_run(new).status == "waiting", what="new run waiting")
        v2.signal(old, "confirm", {"by": "ana"})
        v2.signal(new, "confirm", {"by": "bob"})
        assert v2.handle(old).result(timeout=30) == {
            "text": "welcome acct-old (ana)",
            "bonus": None,
        }
        assert v2.handle(new).result(timeout=30) == {
            "text": "welcome acct-new (bob)",
            "bonus": 100,
        }
    return v2, old, new, calls, answers


def test_patched_keeps_old_runs_on_the_old_path_and_new_runs_on_the_new_one(
    deploy: Deploy, worker: Any
) -> None:
    v2, old, new, calls, answers = _old_and_new_runs(deploy, worker, timeout=600.0)

    assert calls == Counter(create_account=2, grant_bonus=1, welcome=2)
    assert set(answers[old]) == {False} and set(answers[new]) == {True}
    assert markers(v2, old) == []
    assert markers(v2, new) == [{"patch_id": "new-step"}]
    assert types(v2, old) == [
        "run_started",
        "step_completed",
        "timer_started",
        "signal_received",
        "step_completed",
        "run_completed",
    ]
    assert types(v2, new) == [
        "run_started",
        "step_completed",
        "patch_marker",
        "step_completed",
        "timer_started",
        "signal_received",
        "step_completed",
        "run_completed",
    ]
    steps = [e.data["name"] for e in v2.history(new) if e.type == "step_completed"]
    assert steps == ["create_account", "grant_bonus", "welcome"]


def test_patched_keeps_an_old_run_waiting_without_a_timeout_on_the_old_path(
    deploy: Deploy, worker: Any
) -> None:
    v2, old, new, calls, answers = _old_and_new_runs(deploy, worker, timeout=None)

    assert set(answers[new]) == {True} and markers(v2, new) == [{"patch_id": "new-step"}]
    assert set(answers[old]) == {False}
    assert markers(v2, old) == []
    assert calls == Counter(create_account=2, grant_bonus=1, welcome=2)


def test_an_old_run_that_reaches_the_patch_after_the_deploy_takes_the_new_path(
    deploy: Deploy, worker: Any
) -> None:
    # The patch sits after the wait: the old run gets there only after the deploy, with
    # the patched code, so it takes the new path like a new run (and records the marker).
    calls: Counter[str] = Counter()
    answers: dict[str, list[bool]] = {}
    v1 = deploy(1, calls, answers, timeout=None)
    old = v1.start("signup", "old").run_id
    with worker(v1):
        wait_for(lambda: v1.get_run(old).status == "waiting", what="old run waiting")
    v2 = deploy(2, calls, answers, timeout=None, patch_after_wait=True)
    with worker(v2, cache_size=0):
        v2.signal(old, "confirm", {"by": "ana"})
        assert v2.handle(old).result(timeout=30) == {
            "text": "welcome acct-old (ana)",
            "bonus": 100,
        }
    assert set(answers[old]) == {True}
    assert markers(v2, old) == [{"patch_id": "new-step"}]
    assert types(v2, old) == [
        "run_started",
        "step_completed",
        "wait_started",
        "signal_received",
        "patch_marker",
        "step_completed",
        "step_completed",
        "run_completed",
    ]


def test_patched_answer_is_stable_when_a_new_run_is_replayed(
    deploy: Deploy, worker: Any, dsn: str
) -> None:
    # A run that took the new path keeps it when another worker replays it from scratch.
    calls: Counter[str] = Counter()
    answers: dict[str, list[bool]] = {}
    v2 = deploy(2, calls, answers, timeout=None)
    with worker(v2, cache_size=0):
        run = v2.start("signup", "u").run_id
        wait_for(lambda: v2.get_run(run).status == "waiting", what="waiting")
    again = deploy(2, calls, answers, timeout=None)
    with worker(again, cache_size=0):
        again.signal(run, "confirm", {"by": "eve"})
        assert again.handle(run).result(timeout=30) == {
            "text": "welcome acct-u (eve)",
            "bonus": 100,
        }
    assert answers[run] == [True, True]  # live the first time, from the marker on replay
    assert calls == Counter(create_account=1, grant_bonus=1, welcome=1)
    assert markers(again, run) == [{"patch_id": "new-step"}]
