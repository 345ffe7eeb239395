"""The execution check the crash tests rely on rejects what it must (no database needed).

``check_executions`` is what turns "no step ran more than once except those in flight when
a worker died" into an assertion; these cases show it fails on a re-executed recorded step
and accepts only re-executions that follow a kill.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from acceptance_helpers import check_executions

T0 = datetime(2030, 1, 1, tzinfo=UTC)
KILLED = {111}
ALIVE = 222
EXPECTED = {"r1": ["a"]}


def _exec(id_: int, pid: int, start: float, end: float | None) -> dict[str, Any]:
    return {
        "id": id_,
        "run_key": "r1",
        "step_key": "a",
        "pid": pid,
        "started_at": T0 + timedelta(seconds=start),
        "finished_at": None if end is None else T0 + timedelta(seconds=end),
    }


def test_a_step_executed_and_recorded_once_passes() -> None:
    report = check_executions([_exec(1, ALIVE, 1, 2)], {("r1", "a"): [1]}, EXPECTED, KILLED)
    assert report.violations == []
    assert report.reexecuted_steps == 0


def test_a_rerun_after_the_worker_was_killed_mid_step_passes() -> None:
    executions = [_exec(1, 111, 9, None), _exec(2, ALIVE, 12, 13)]
    report = check_executions(executions, {("r1", "a"): [2]}, EXPECTED, KILLED)
    assert report.violations == []
    assert (report.reexecuted_steps, report.unfinished_at_kill) == (1, 1)


def test_a_rerun_after_the_worker_died_before_recording_passes() -> None:
    executions = [_exec(1, 111, 8, 9), _exec(2, ALIVE, 12, 13)]
    report = check_executions(executions, {("r1", "a"): [2]}, EXPECTED, KILLED)
    assert report.violations == []
    assert report.finished_not_recorded == 1


def test_a_recorded_step_that_ran_again_fails() -> None:
    executions = [_exec(1, ALIVE, 1, 2), _exec(2, ALIVE, 12, 13)]
    report = check_executions(executions, {("r1", "a"): [1]}, EXPECTED, KILLED)
    assert any("a recorded step ran again" in v for v in report.violations)
    assert any("never killed" in v for v in report.violations)


def test_a_recorded_step_rerun_even_by_a_worker_killed_later_fails() -> None:
    executions = [_exec(1, 111, 1, 2), _exec(2, ALIVE, 12, 13)]
    report = check_executions(executions, {("r1", "a"): [1]}, EXPECTED, KILLED)
    assert any("a recorded step ran again" in v for v in report.violations)


def test_a_step_recorded_twice_or_never_fails() -> None:
    executions = [_exec(1, ALIVE, 1, 2)]
    twice = check_executions(executions, {("r1", "a"): [1, 1]}, EXPECTED, KILLED)
    never = check_executions(executions, {}, EXPECTED, KILLED)
    assert any("recorded 2 times" in v for v in twice.violations)
    assert any("recorded 0 times" in v for v in never.violations)
