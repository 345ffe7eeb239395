"""Stored logs (tests/fixtures/logs/*.json) replayed against today's workflow code."""

from __future__ import annotations

import importlib.util
import inspect
import json
from datetime import datetime
from pathlib import Path
from types import ModuleType

from sim import decode

from durable.replay import (
    Blocked,
    Completed,
    Engine,
    Failed,
    HistoryEvent,
    WaitTimeout,
)

LOGS = Path(__file__).resolve().parent.parent / "fixtures" / "logs"


def _load_shop() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shop", LOGS / "shop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shop = _load_shop()


def replay(name: str) -> Engine:
    doc = json.loads((LOGS / name).read_text())
    events = [
        HistoryEvent(e["seq"], e["type"], e["data"], datetime.fromisoformat(e["created_at"]))
        for e in doc["events"]
    ]
    workflow = doc["workflow"]
    engine = Engine(getattr(shop, workflow), workflow=workflow, run_id=doc["run_id"], decode=decode)
    engine.feed(events, replaying=True)
    return engine


def test_every_stored_log_has_a_test() -> None:
    stored = {path.name for path in LOGS.glob("*.json")}
    tested = {
        "order_completed.json",
        "order_timed_out_refunded.json",
        "order_before_fraud_check.json",
        "order_step_removed.json",
        "fan_out.json",
    }
    assert stored == tested


def test_completed_order_replays_to_its_result() -> None:
    engine = replay("order_completed.json")

    assert engine.outcome == Completed(
        {"hold": "hold-o-42", "receipt": "receipt-o-42-1999", "approved_by": "ana"}
    )
    assert engine.take_markers() == []


def test_timed_out_order_replays_through_its_compensation_to_the_same_failure() -> None:
    engine = replay("order_timed_out_refunded.json")

    outcome = engine.outcome
    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, WaitTimeout)
    assert outcome.cause_pos is None


def test_a_run_recorded_before_a_patch_takes_the_old_path() -> None:
    engine = replay("order_before_fraud_check.json")

    assert engine.outcome == Completed(
        {"hold": "hold-o-7", "receipt": "receipt-o-7-250", "approved_by": "ana"}
    )
    assert engine.take_markers() == []


def test_fan_out_replays_all_any_child_retries_and_status() -> None:
    engine = replay("fan_out.json")

    outcome = engine.outcome
    assert isinstance(outcome, Completed)
    assert outcome.result["packed"][-1] == "skipped fragile: no bubble wrap left"
    assert outcome.result["winner"] == [2, "courier took 2 items"]


def test_a_step_removed_without_a_patch_blocks_with_a_readable_message() -> None:
    engine = replay("order_step_removed.json")

    outcome = engine.outcome
    assert isinstance(outcome, Blocked)
    error = outcome.error
    lines, start = inspect.getsourcelines(shop.order)
    line = start + next(i for i, text in enumerate(lines) if "wait_signal(" in text)
    assert str(error) == (
        "workflow 'order' is not deterministic at position 3: the log recorded step "
        "'send_receipt' but the code yielded wait_signal('approve', timeout=172800s) "
        f"at shop.py:{line} (order)"
    )
    assert error.position == 3
    assert engine.pending() == []
