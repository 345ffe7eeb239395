"""``durable replay``: check stored logs against the workflow code as it is now.

Each run's log is fed to the replay engine with the workflow function the App registers
today. The engine is pure: nothing is executed (step calls inside the workflow only become
commands that are matched against the log) and nothing is written. A run whose log no
longer matches the code ends the replay ``Blocked``; that is what a worker would do to it
after a deploy, so this is the check to run before deploying.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._app import App
from .._models import RunInfo
from ..replay.errors import RunNotFound

__all__ = ["Mismatch", "ReplayReport", "check_runs"]

_PAGE = 100


@dataclass(frozen=True)
class Mismatch:
    """A run whose log the current code does not reproduce (or could not replay)."""

    run_id: str
    workflow: str
    status: str
    message: str
    crashed: bool = False  # True: replaying raised instead of producing an outcome


@dataclass
class ReplayReport:
    """What ``durable replay`` found."""

    checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # unregistered workflow -> runs

    @property
    def skipped_total(self) -> int:
        """Runs not checked because the App does not register their workflow."""
        return sum(self.skipped.values())


def _runs(app: App, workflow: str | None, limit: int) -> list[RunInfo]:
    """Up to ``limit`` runs, newest first, each once."""
    seen: set[str] = set()
    out: list[RunInfo] = []
    offset = 0
    while len(out) < limit:
        page = app.list_runs(workflow=workflow, limit=min(_PAGE, limit - len(out)), offset=offset)
        if not page.runs:
            break
        offset += len(page.runs)
        for run in page.runs:
            if run.run_id not in seen:
                seen.add(run.run_id)
                out.append(run)
    return out


def check_runs(app: App, *, workflow: str | None = None, limit: int = 1000) -> ReplayReport:
    """Replay the newest ``limit`` runs (of ``workflow``, if given) against ``app``'s code."""
    from ..replay import Blocked, Engine, HistoryEvent

    report = ReplayReport()
    for run in _runs(app, workflow, limit):
        definition = app.workflows.get(run.workflow)
        if definition is None:
            report.skipped[run.workflow] = report.skipped.get(run.workflow, 0) + 1
            continue
        try:
            events = app.history(run.run_id)
        except RunNotFound:  # pruned since it was listed
            continue
        report.checked += 1
        try:
            engine = Engine(
                definition.fn, workflow=run.workflow, run_id=run.run_id, decode=app._decode_value
            )
            engine.feed(
                [HistoryEvent(e.seq, e.type, e.data, e.created_at) for e in events],
                replaying=True,
            )
            outcome = engine.outcome
        except Exception as exc:
            report.mismatches.append(
                Mismatch(
                    run.run_id,
                    run.workflow,
                    run.status,
                    f"replay raised {type(exc).__name__}: {exc}",
                    crashed=True,
                )
            )
            continue
        if isinstance(outcome, Blocked):
            report.mismatches.append(
                Mismatch(run.run_id, run.workflow, run.status, str(outcome.error))
            )
    return report
