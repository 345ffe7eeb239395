"""durable.testing.drive: a workflow run with no database at all."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

import durable
from durable import _embedded
from durable.testing import drive

# An App whose database does not exist: drive must never need it.
app = durable.App("postgresql://nobody@127.0.0.1:9/none")


@app.step("reserve", retry=durable.RetryPolicy(max_attempts=3))
def reserve(item: str) -> str:
    raise AssertionError("drive answers steps from results=; it never runs them")


@app.step("charge", retry=durable.RetryPolicy(max_attempts=1))
def charge(amount: int) -> str:
    raise AssertionError("never run")


@app.workflow(name="shipping")
def shipping(ctx: durable.Context, item: str) -> Any:
    yield ctx.sleep(timedelta(days=2))
    return f"shipped {item}"


@app.workflow(name="order")
def order(ctx: durable.Context, item: str, amount: int) -> Any:
    hold = yield reserve(item)
    try:
        receipt = yield charge(amount)
    except durable.StepFailed:
        return "declined"
    approved = yield ctx.wait_signal("approve", timeout=timedelta(days=30))
    if not approved:
        return "rejected"
    yield ctx.sleep(timedelta(days=365))
    paid, shipped = yield ctx.all(ctx.wait_event(f"paid:{item}"), ctx.child("shipping", item))
    return hold, receipt, paid, shipped


@pytest.fixture(autouse=True)
def no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("drive touched the database")

    monkeypatch.setattr(psycopg, "connect", refuse)
    monkeypatch.setattr(psycopg.Connection, "connect", refuse)
    monkeypatch.setattr(_embedded, "embedded_start", refuse)


def test_a_whole_order_runs_with_no_database_and_a_year_passes_at_once() -> None:
    result = drive(
        order,
        "book",
        12,
        results={
            "reserve": [ConnectionError("flaky"), "hold-1"],
            "charge": "r-9",
            "shipping": "ok",
        },
        signals={"approve": [True]},
        events={"paid:book": {"amount": 12}},
    )
    assert result == ("hold-1", "r-9", {"amount": 12}, "ok")


def test_failures_reach_the_workflow_as_in_production() -> None:
    results = {"reserve": "hold", "charge": ValueError("card declined")}
    assert drive(order, "book", 1, results=results) == "declined"
    # a step that fails every attempt: StepFailed out of the workflow, naming the error
    with pytest.raises(durable.StepFailed, match="ConnectionError: down"):
        drive(order, "book", 1, results={"reserve": ConnectionError("down")})


def test_a_wait_times_out_when_no_signal_is_given() -> None:
    results = {"reserve": "hold", "charge": "r"}
    with pytest.raises(durable.WaitTimeout, match="approve"):
        drive(order, "book", 1, results=results)
    assert drive(order, "book", 1, results=results, signals={"approve": [False]}) == "rejected"


def test_what_is_missing_is_named() -> None:
    with pytest.raises(AssertionError, match=r"step 'reserve' .* no answer"):
        drive(order, "book", 1)
    with pytest.raises(AssertionError, match="only 1 answers"):
        drive(order, "book", 1, results={"reserve": [ConnectionError("x")]})
    everything = {"reserve": "h", "charge": "r", "shipping": "ok"}
    with pytest.raises(AssertionError, match="paid:book"):
        drive(order, "book", 1, results=everything, signals={"approve": [True]})
    with pytest.raises(TypeError, match=r"@app\.workflow"):
        drive(lambda ctx: None)


@app.workflow(name="slow", timeout=timedelta(hours=1))
def slow(ctx: durable.Context) -> Any:
    yield ctx.sleep(timedelta(hours=2))
    return "finished"


def test_the_workflow_timeout_applies_as_on_a_worker() -> None:
    with pytest.raises(durable.RunTimedOut):
        drive(slow)


def test_an_error_without_text_is_named_by_its_type() -> None:
    with pytest.raises(durable.StepFailed, match="KeyError: KeyError"):
        drive(order, "book", 1, results={"reserve": KeyError()})
