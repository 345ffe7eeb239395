"""Every program in examples/ runs as a newcomer would run it, and says what it should.

Each example runs as its own process (``python examples/NAME.py``) against the test's own
database through ``DURABLE_DSN``, must exit 0 within a minute, and must print the key
lines listed in ``EXPECTED``. A new example without an entry there fails the test, so
nothing in examples/ goes unchecked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))

# Lines each example must print (each one whole, anywhere in its output).
EXPECTED: dict[str, list[str]] = {
    "quickstart.py": [
        "result: {'note': 'emailed confirmation of receipt-order-1001-4999', "
        "'order': 'order-1001', 'receipt': 'receipt-order-1001-4999', "
        "'reserved': {'book': 1, 'lamp': 1}}",
        "charge_card failed 2 time(s) before it succeeded; status: completed",
    ],
    "approval.py": [
        "order A-100: approved: shipped A-100 (approved by ana) [status completed]",
        "order A-200: cancelled (customer changed their mind); steps run: charge, refund "
        "[status cancelled]",
        "order A-300: expired: refunded receipt-A-300 [status completed]",
    ],
    "fastapi_orders.py": [
        "POST /orders A-1: 201",
        "POST /orders A-1 again: 409 order A-1 exists already",
        "order A-1: shipped (run completed): WH-1-A-1",
        "order A-2: rejected (run completed): not enough lamp for order A-2",
        "orders with a run: 2; lamps left: 1",
    ],
    "queues.py": [
        "second digest start created a run: False (same run: True)",
        "before any worker: no live worker registers workflow 'report'",
        "started first: acme-monthly and initech-audit",
        "most at once: 2 (queue concurrency 2)",
        "two reports of one customer at once: 0 times",
        "queue reports now: 0 running, 0 pending",
    ],
    "schedules.py": [
        "'often' ran at least twice: True; each run's id is its tick",
        "backfill of a week: 7 runs, a second backfill: 0",
        "first backfilled run: nightly@2026-11-23T02:00:00Z -> summary of nightly 2026-11-23",
    ],
    "saga.py": [
        "order S-1: completed, tracking track-S-1, charge-hold-S-1",
        "  shipping child run: completed",
        "  compensations: none",
        "order S-2: failed: step 'capture_payment' failed after 1 attempt: "
        "__main__.CardDeclined: card 'declined-card' was declined",
        "  compensations: cancel_shipment, release_payment, release_stock",
    ],
}

TIMEOUT = 60


def test_examples_exist() -> None:
    assert EXAMPLES, f"no examples found in {EXAMPLES_DIR}"
    missing = sorted(set(EXPECTED) - {p.name for p in EXAMPLES})
    assert not missing, f"EXPECTED lists examples that do not exist: {missing}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_and_prints_its_key_lines(path: Path, dsn: str, tmp_path: Path) -> None:
    expected = EXPECTED.get(path.name)
    if expected is None:
        pytest.fail(
            f"examples/{path.name} has no expected output: add its key lines to EXPECTED "
            f"in {Path(__file__).name}",
            pytrace=False,
        )
    env = {**os.environ, "DURABLE_DSN": dsn, "DURABLE_HOME": str(tmp_path / "home")}
    env.pop("PYTHONPATH", None)  # the example must work with the installed package alone
    try:
        proc = subprocess.run(
            [sys.executable, str(path)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"examples/{path.name} did not finish within {TIMEOUT}s; output so far:\n"
            f"{exc.stdout or ''}{exc.stderr or ''}",
            pytrace=False,
        )
    report = f"exit status {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, report
    lines = proc.stdout.splitlines()
    for line in expected:
        assert line in lines, f"missing line {line!r}\n{report}"
