from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from durable.replay import (
    All,
    AnyOf,
    ChildCall,
    ContinueAsNew,
    Sleep,
    StepCall,
    WaitEvent,
    WaitSignal,
)


def test_step_call_equality_and_repr_ignore_options() -> None:
    a = StepCall("charge", (1,), {"x": 2}, options=object())
    b = StepCall("charge", (1,), {"x": 2}, options=object())

    assert a == b
    assert "options" not in repr(a)


def test_commands_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Sleep(seconds=1).seconds = 2  # type: ignore[misc]


def test_sleep_needs_exactly_one_of_seconds_and_until() -> None:
    with pytest.raises(ValueError):
        Sleep()
    with pytest.raises(ValueError):
        Sleep(seconds=1, until=datetime(2024, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("command", "text"),
    [
        (StepCall("charge"), "step 'charge'"),
        (Sleep(seconds=3600), "sleep(3600s)"),
        (Sleep(seconds=0.25), "sleep(0.25s)"),
        (Sleep(until=datetime(2024, 5, 1, tzinfo=UTC)), "sleep_until(2024-05-01T00:00:00+00:00)"),
        (WaitSignal("approve"), "wait_signal('approve')"),
        (WaitSignal("approve", 60.0), "wait_signal('approve', timeout=60s)"),
        (WaitEvent("paid"), "wait_event('paid')"),
        (ChildCall("ship", (1,)), "child('ship')"),
        (All((StepCall("a"), Sleep(seconds=1))), "all(step 'a', sleep(1s))"),
        (AnyOf((WaitSignal("x"), All(()))), "any(wait_signal('x'), all())"),
        (ContinueAsNew((1,)), "continue_as_new(...)"),
    ],
)
def test_describe_names_the_command(command: object, text: str) -> None:
    assert command.describe() == text  # type: ignore[attr-defined]
