"""Schedule ticks and decisions with an injected clock: time zones, DST transitions,
catch-up and the overlap policies (no database, no waiting)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from durable._schedules import Schedule, decide, run_id_for, tick_text


def _ticks(schedule: Schedule, start: datetime, end: datetime) -> list[str]:
    return [tick_text(t) for t in schedule.ticks_between(start, end)]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_every_falls_on_multiples_since_the_epoch() -> None:
    s = Schedule("s", "wf", every=timedelta(minutes=5))
    assert _ticks(s, utc(2026, 1, 1, 0, 3), utc(2026, 1, 1, 0, 16)) == [
        "2026-01-01T00:05:00Z",
        "2026-01-01T00:10:00Z",
        "2026-01-01T00:15:00Z",
    ]
    assert s.next_after(utc(2026, 1, 1, 0, 5)) == utc(2026, 1, 1, 0, 10)  # strictly after
    assert run_id_for("poll", utc(2026, 12, 2, 2)) == "poll@2026-12-02T02:00:00Z"


def test_berlin_spring_forward_fires_a_missing_time_at_the_end_of_the_gap() -> None:
    # 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 does not exist.
    daily = Schedule("d", "wf", cron="30 2 * * *", timezone="Europe/Berlin")
    assert _ticks(daily, utc(2026, 3, 28), utc(2026, 3, 31)) == [
        "2026-03-28T01:30:00Z",  # 02:30 CET
        "2026-03-29T01:00:00Z",  # the first valid instant after 02:30: 03:00 CEST
        "2026-03-30T00:30:00Z",  # 02:30 CEST
    ]
    half_hourly = Schedule("h", "wf", cron="*/30 * * * *", timezone="Europe/Berlin")
    assert _ticks(half_hourly, utc(2026, 3, 29, 0), utc(2026, 3, 29, 1, 30)) == [
        "2026-03-29T00:00:00Z",  # 01:00 CET
        "2026-03-29T00:30:00Z",  # 01:30 CET
        "2026-03-29T01:00:00Z",  # 02:00 and 02:30 do not exist: once, at 03:00 CEST
        "2026-03-29T01:30:00Z",  # 03:30 CEST
    ]


def test_berlin_fall_back_fires_a_repeated_time_once() -> None:
    # 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:00-02:59 occur twice.
    daily = Schedule("d", "wf", cron="30 2 * * *", timezone="Europe/Berlin")
    assert _ticks(daily, utc(2026, 10, 24), utc(2026, 10, 27)) == [
        "2026-10-24T00:30:00Z",
        "2026-10-25T00:30:00Z",  # the first 02:30 (CEST) only
        "2026-10-26T01:30:00Z",
    ]


def test_new_york_transitions() -> None:
    # 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
    s = Schedule("ny", "wf", cron="15 1,2 * * *", timezone="America/New_York")
    assert _ticks(s, utc(2026, 3, 8, 5), utc(2026, 3, 8, 8)) == [
        "2026-03-08T06:15:00Z",  # 01:15 EST
        "2026-03-08T07:00:00Z",  # 02:15 does not exist: 03:00 EDT
    ]
    assert _ticks(s, utc(2026, 11, 1, 4), utc(2026, 11, 1, 8)) == [
        "2026-11-01T05:15:00Z",  # 01:15 EDT, the first of two
        "2026-11-01T07:15:00Z",  # 02:15 EST
    ]


def test_half_hour_zones() -> None:
    kolkata = Schedule("k", "wf", cron="0 9 * * *", timezone="Asia/Kolkata")  # +05:30
    assert _ticks(kolkata, utc(2026, 6, 1), utc(2026, 6, 2)) == ["2026-06-01T03:30:00Z"]
    # Lord Howe Island moves its clocks by half an hour: 2026-10-04 02:00 -> 02:30.
    howe = Schedule("l", "wf", cron="15 2 * * *", timezone="Australia/Lord_Howe")
    assert _ticks(howe, utc(2026, 10, 2), utc(2026, 10, 5)) == [
        "2026-10-02T15:45:00Z",  # 02:15 +10:30
        "2026-10-03T15:30:00Z",  # 02:15 does not exist: 02:30 +11:00
        "2026-10-04T15:15:00Z",  # 02:15 +11:00
    ]


def test_bad_declarations_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="bad cron expression '61 \\* \\* \\* \\*'"):
        Schedule("x", "wf", cron="61 * * * *")
    with pytest.raises(ValueError, match="cron needs 5 fields"):
        Schedule("x", "wf", cron="* * * *")
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        Schedule("x", "wf", cron="0 * * * *", timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="exactly one of cron= or every="):
        Schedule("x", "wf", cron="0 * * * *", every=60)
    with pytest.raises(ValueError, match="unknown overlap 'queue'"):
        Schedule("x", "wf", every=60, overlap="queue")
    with pytest.raises(ValueError, match="whole number of seconds"):
        Schedule("x", "wf", every=0.5)
    with pytest.raises(ValueError, match="without '@'"):
        Schedule("a@b", "wf", every=60)


EVERY_10 = dict(every=10.0, catchup_window=30.0)


def test_catch_up_starts_only_ticks_inside_the_window() -> None:
    s = Schedule("s", "wf", overlap="allow_all", **EVERY_10)  # type: ignore[arg-type]
    now = utc(2026, 1, 1, 12, 0, 5)
    d = decide(s, now=now, next_fire_at=utc(2026, 1, 1, 11, 58), buffered=[], previous_active=False)
    # down for two minutes: 13 ticks missed, the 3 in the last 30 s start
    assert [tick_text(t) for t in d.starts] == [
        "2026-01-01T11:59:40Z",
        "2026-01-01T11:59:50Z",
        "2026-01-01T12:00:00Z",
    ]
    assert d.skipped == 10
    assert d.next_fire_at == utc(2026, 1, 1, 12, 0, 10) == d.due_at
    on_time = decide(
        s, now=now, next_fire_at=utc(2026, 1, 1, 12), buffered=[], previous_active=False
    )
    assert [tick_text(t) for t in on_time.starts] == ["2026-01-01T12:00:00Z"]


@pytest.mark.parametrize(
    ("policy", "starts", "buffered", "cancel"),
    [
        ("skip", [], 0, False),
        ("allow_all", ["12:00:00", "12:00:10"], 0, False),
        ("buffer_one", [], 1, False),
        ("buffer_all", [], 2, False),
        ("cancel_other", ["12:00:10"], 0, True),
    ],
)
def test_overlap_policies_while_the_previous_run_is_active(
    policy: str, starts: list[str], buffered: int, cancel: bool
) -> None:
    s = Schedule("s", "wf", overlap=policy, **EVERY_10)  # type: ignore[arg-type]
    now = utc(2026, 1, 1, 12, 0, 12)
    d = decide(s, now=now, next_fire_at=utc(2026, 1, 1, 12), buffered=[], previous_active=True)
    assert [t.strftime("%H:%M:%S") for t in d.starts] == starts
    assert len(d.buffered) == buffered
    assert d.cancel_previous is cancel
    if buffered:  # looked at again soon, to start the buffered tick when the run ends
        assert d.due_at == now + timedelta(seconds=1)
        later = decide(
            s,
            now=now + timedelta(seconds=2),
            next_fire_at=d.next_fire_at,
            buffered=d.buffered,
            previous_active=False,
        )
        assert later.starts == [utc(2026, 1, 1, 12, 0, 0)]
        assert len(later.buffered) == buffered - 1


def test_a_zero_catch_up_window_still_fires_a_tick_seen_a_moment_late() -> None:
    s = Schedule("s", "wf", every=10, catchup_window=0)
    late = decide(
        s,
        now=utc(2026, 1, 1, 12, 0, 0) + timedelta(milliseconds=300),
        next_fire_at=utc(2026, 1, 1, 12),
        buffered=[],
        previous_active=False,
    )
    assert late.starts == [utc(2026, 1, 1, 12)]
    after_downtime = decide(
        s, now=utc(2026, 1, 1, 13), next_fire_at=utc(2026, 1, 1, 12), buffered=[],
        previous_active=False,
    )  # fmt: skip
    assert after_downtime.starts == [utc(2026, 1, 1, 13)]  # only the tick of now
    assert after_downtime.skipped == 360


def test_a_long_outage_does_not_list_every_missed_tick() -> None:
    s = Schedule("s", "wf", every=1, catchup_window=60)
    d = decide(
        s, now=utc(2027, 1, 1), next_fire_at=utc(2026, 1, 1), buffered=[],
        previous_active=False,
    )  # fmt: skip
    assert len(d.starts) == 1  # skip: the first of the window's ticks starts
    assert d.skipped == 10_000 + 60  # before the window: counted up to a limit, not listed
