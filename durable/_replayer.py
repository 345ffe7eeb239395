"""The replayer: a run's stored log fed to the workflow code of this process.

The worker builds its engines here, and ``durable replay`` / :meth:`durable.App.check_replay`
use it to check stored logs against today's code before a deploy. The engine is pure:
nothing is executed (step calls inside the workflow only become commands that are matched
against the log) and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ._registry import Registry
from .client import Client
from .replay import Blocked, Engine, HistoryEvent, Outcome
from .store import RunNotFound

__all__ = ["Mismatch", "ReplayReport", "Replayer"]


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
    """What a replay check found."""

    checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # unregistered workflow -> runs

    @property
    def skipped_total(self) -> int:
        """Runs not checked because the App does not register their workflow."""
        return sum(self.skipped.values())


class Replayer:
    """Builds engines for the workflows of a registry and replays logs into them."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def engine(self, workflow: str, run_id: str) -> Engine:
        """A fresh engine for a run of a registered ``workflow``."""
        fn = self._registry.workflows[workflow].fn
        return Engine(fn, workflow=workflow, run_id=run_id, decode=self._registry.decode_value)

    def replay(self, workflow: str, run_id: str, events: Iterable[HistoryEvent]) -> Outcome | None:
        """Feed a stored log (as one batch) and return the outcome; the generator is
        closed afterwards. Raises whatever the engine raises on a malformed log."""
        engine = self.engine(workflow, run_id)
        try:
            engine.feed(list(events), replaying=True)
            return engine.outcome
        finally:
            engine.close()

    def check(
        self, run_id: str, workflow: str, status: str, events: Iterable[HistoryEvent]
    ) -> Mismatch | None:
        """None if the code reproduces the log, else what went wrong."""
        try:
            outcome = self.replay(workflow, run_id, events)
        except Exception as exc:
            message = f"replay raised {type(exc).__name__}: {exc}"
            return Mismatch(run_id, workflow, status, message, crashed=True)
        if isinstance(outcome, Blocked):
            return Mismatch(run_id, workflow, status, str(outcome.error))
        return None

    def check_runs(
        self, client: Client, *, workflow: str | None = None, limit: int = 1000
    ) -> ReplayReport:
        """Replay the newest ``limit`` runs (of ``workflow``) read through ``client``.
        Runs of workflows the registry does not know are counted as skipped."""
        report = ReplayReport()
        seen: set[str] = set()
        offset = 0
        while len(seen) < limit:
            page = client.list_runs(workflow, limit=min(100, limit - len(seen)), offset=offset)
            if not page.runs:
                break
            offset += len(page.runs)
            for run in page.runs:
                if run.run_id in seen:
                    continue
                seen.add(run.run_id)
                if run.workflow not in self._registry.workflows:
                    report.skipped[run.workflow] = report.skipped.get(run.workflow, 0) + 1
                    continue
                try:
                    events = client.history(run.run_id)
                except RunNotFound:  # pruned since it was listed
                    continue
                report.checked += 1
                history = [HistoryEvent(e.seq, e.type, e.data, e.created_at) for e in events]
                mismatch = self.check(run.run_id, run.workflow, run.status, history)
                if mismatch is not None:
                    report.mismatches.append(mismatch)
        return report
