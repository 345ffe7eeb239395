from __future__ import annotations

import pickle

import pytest

from durable import (
    Cancelled,
    ChildFailed,
    ConfigError,
    ConflictError,
    DatabaseUnavailable,
    DurableError,
    LeaseLost,
    NonDeterminismError,
    RunCancelled,
    RunFailed,
    RunNotActive,
    RunNotFound,
    RunStateError,
    RunTimedOut,
    SerializationError,
    StepFailed,
    StoreError,
    UnyieldedCommandError,
    WaitTimeout,
    WorkflowNotFound,
)

EXAMPLES: list[tuple[BaseException, dict[str, object], str]] = [
    (DurableError("something broke"), {}, "something broke"),
    (ConfigError("set DURABLE_DSN"), {}, "set DURABLE_DSN"),
    (SerializationError("cannot encode set"), {}, "cannot encode set"),
    (WorkflowNotFound(workflow="order"), {"workflow": "order"}, "no workflow named 'order'"),
    (WorkflowNotFound("custom text"), {"workflow": None}, "custom text"),
    (
        StepFailed(step="charge", error_type="ValueError", message="card declined", attempts=5),
        {"step": "charge", "error_type": "ValueError", "message": "card declined", "attempts": 5},
        "step 'charge' failed after 5 attempts: ValueError: card declined",
    ),
    (
        WaitTimeout(kind="signal", name="approve"),
        {"kind": "signal", "name": "approve"},
        "timed out waiting for signal 'approve'",
    ),
    (
        ChildFailed("ship", "r1-3", "failed", "KeyError", "'sku'"),
        {"workflow": "ship", "child_run_id": "r1-3", "status": "failed", "error_type": "KeyError"},
        "child workflow 'ship' (run r1-3) failed: KeyError: 'sku'",
    ),
    (
        ChildFailed(workflow="ship", child_run_id="r1-3", status="timed_out"),
        {"status": "timed_out", "message": None},
        "child workflow 'ship' (run r1-3) timed out",
    ),
    (
        NonDeterminismError("order", 3, "step 'charge'", "sleep(3600s)", "shop.py:14 (order)"),
        {"workflow": "order", "position": 3, "location": "shop.py:14 (order)"},
        "workflow 'order' is not deterministic at position 3: the log recorded step 'charge' "
        "but the code yielded sleep(3600s) at shop.py:14 (order)",
    ),
    (
        UnyieldedCommandError("step 'x'", "file.py:12", "yield x(...)"),
        {"command": "step 'x'", "location": "file.py:12", "hint": "yield x(...)"},
        "step 'x' was called at file.py:12 but never yielded; write `yield x(...)`",
    ),
    (
        RunFailed(run_id="r1", error_type="ValueError", message="bad"),
        {"run_id": "r1", "error_type": "ValueError", "message": "bad"},
        "run r1 failed: ValueError: bad",
    ),
    (
        RunCancelled("r1", "user asked"),
        {"reason": "user asked"},
        "run r1 was cancelled: user asked",
    ),
    (RunTimedOut(run_id="r1"), {"run_id": "r1"}, "run r1 timed out"),
    (
        RunNotActive(run_id="r1", status="completed"),
        {"status": "completed"},
        "run r1 is not active (status completed)",
    ),
    (RunNotFound("r9"), {"run_id": "r9"}, "no run with id 'r9'"),
    (
        RunStateError("cannot retry a running run", run_id="r1", status="running"),
        {"run_id": "r1", "status": "running"},
        "cannot retry a running run",
    ),
    (StoreError("query failed"), {}, "query failed"),
    (DatabaseUnavailable("connection refused"), {}, "connection refused"),
    (ConflictError("row changed"), {}, "row changed"),
    (LeaseLost("lease of r1 expired"), {}, "lease of r1 expired"),
    (Cancelled(reason="user asked"), {"reason": "user asked"}, "cancelled: user asked"),
    (Cancelled(), {"reason": None}, "cancelled"),
]


@pytest.mark.parametrize(("error", "attrs", "text"), EXAMPLES, ids=lambda v: type(v).__name__)
def test_every_error_pickles_with_its_attributes_and_reads_in_one_line(
    error: BaseException, attrs: dict[str, object], text: str
) -> None:
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert text in str(error)
    assert "\n" not in str(error)
    for name, value in attrs.items():
        assert getattr(copy, name) == value


def test_every_error_but_cancelled_is_a_durable_error() -> None:
    for error, _, _ in EXAMPLES:
        assert isinstance(error, DurableError) != isinstance(error, Cancelled)


def test_cancelled_is_not_caught_by_except_exception() -> None:
    caught = None
    try:
        try:
            raise Cancelled("stop")
        except Exception:  # what careless workflow code writes
            caught = "swallowed"
    except Cancelled as exc:
        caught = exc.reason
    assert caught == "stop"


def test_store_errors_form_a_family() -> None:
    assert issubclass(LeaseLost, ConflictError)
    assert issubclass(ConflictError, StoreError)
    assert issubclass(DatabaseUnavailable, StoreError)
    assert issubclass(StoreError, DurableError)


def test_step_failed_says_attempt_in_the_singular_for_one() -> None:
    assert "after 1 attempt:" in str(StepFailed("charge", "ValueError", "no", 1))
