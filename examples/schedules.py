"""Schedules: a report every few seconds (here: every 2 s, to see it in a demo), a nightly
job in Berlin time, a backfill of last week, and ctx.scheduled_at.

Run it with ``python examples/schedules.py``. A worker writes the declarations to the
database when it starts and fires each tick exactly once, however many workers run.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import durable

app = durable.App()


@app.step()
def summarize(day: str) -> str:
    return f"summary of {day}"


@app.workflow()
def report(ctx: durable.Context, kind: str) -> str:
    tick = ctx.scheduled_at  # the tick this run is for (None when started by hand)
    day = tick.date().isoformat() if tick else "today"
    return (yield summarize(f"{kind} {day}"))


app.schedule("often", report, every=timedelta(seconds=2), args=("often",))
app.schedule("nightly", report, cron="0 3 * * *", timezone="Europe/Berlin", args=("nightly",))


def main() -> None:
    for info in app.list_schedules():
        app.delete_schedule(info.name)  # start the demo afresh
    with app.worker(concurrency=4):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            runs = [
                r for r in app.list_runs(workflow="report").runs if r.run_id.startswith("often@")
            ]
            if len([r for r in runs if r.status == "completed"]) >= 2:
                break
            time.sleep(0.2)
        week = datetime(2026, 11, 23, tzinfo=UTC)
        filled = app.backfill_schedule("nightly", week, week + timedelta(days=7))
        again = app.backfill_schedule("nightly", week, week + timedelta(days=7))
        results = [h.result(timeout=30) for h in filled]
    print(f"'often' ran at least twice: {len(runs) >= 2}; each run's id is its tick")
    print(f"backfill of a week: {len(filled)} runs, a second backfill: {len(again)}")
    print(f"first backfilled run: {filled[0].run_id} -> {results[0]}")
    nightly = next(s for s in app.list_schedules() if s.name == "nightly")
    hours = sorted({t.astimezone(UTC).hour for t in nightly.next_fire_times})
    print(f"nightly fires at 03:00 Berlin, {' or '.join(f'{h:02d}' for h in hours)}:00 UTC")
    app.close()


if __name__ == "__main__":
    main()
