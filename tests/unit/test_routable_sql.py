"""Every per-run statement of sql/queries.sql filters by run_id (docs/scaling.md).

A statement that touches a table of per-run rows (the runs, their logs, inboxes and
watchers) must name the run(s) it is about, so that with the tables distributed by
``run_id`` (Citus) or split into cells it goes to one shard. The few that are across
runs by design (claims, listings, counts, maintenance) are listed here with the reason;
a new statement is one or the other, never by accident. (``claim_queued`` calls the
schema's function of that name: admission through a queue counts the queue's runs
across shards, like ``claim``.)
"""

from __future__ import annotations

import re

import pytest

from durable.store._sql import load_queries

#: tables whose rows belong to one run (distributed by run_id)
PER_RUN_TABLES = {
    "runs",
    "events",
    "signals",
    "signal_keys",
    "controls",
    "watchers",
    "event_waiters",
}

#: statements across runs by design, and why (each a fan-out to every shard, off the
#: per-step path, or bounded)
ACROSS_RUNS = {
    "claim": "a worker's claim scans the claimable runs of every shard (bounded by LIMIT)",
    "list_runs": "the run listing (dashboard, CLI): a fan-out, newest first, bounded",
    "count_runs": "the listing's total",
    "stats": "counts by workflow and status",
    "timeseries": "the dashboard's hourly counts",
    "create_runs": "start_many: one INSERT of many runs, each row placed by its own run_id",
    "find_run_ids": "resolving a run id prefix typed by a person",
    "prune_batch": "retention: ended runs before a cutoff, in batches",
    "queues_info": "the queue listing's pending and running counts",
    "queue_busiest_keys": "the queue listing's busiest keys",
    "pending_facts": "why a queued run waits: its queue's slots across runs",
}

_TABLE = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+([a-z_]+)", re.IGNORECASE)
_BY_RUN = re.compile(
    r"\brun_id\s*(?:=|IN\b|=\s*ANY)|%\(run_ids?\)s|%\(child_run_id\)s", re.IGNORECASE
)


def _code(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))


def _per_run(sql: str) -> bool:
    return bool({t.lower() for t in _TABLE.findall(_code(sql))} & PER_RUN_TABLES)


QUERIES = load_queries()


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_every_per_run_statement_filters_by_run_id(name: str) -> None:
    sql = QUERIES[name]
    if name in ACROSS_RUNS or not _per_run(sql):
        return
    assert _BY_RUN.search(_code(sql)), (
        f"query {name!r} touches per-run tables but names no run_id: filter by run_id (so "
        "it stays routable to one shard) or add it to ACROSS_RUNS with the reason"
    )


def test_the_list_of_statements_across_runs_is_current() -> None:
    assert set(ACROSS_RUNS) <= set(QUERIES), set(ACROSS_RUNS) - set(QUERIES)
    # and every one of them really is across runs (else it belongs to the rule)
    for name in ACROSS_RUNS:
        assert _per_run(QUERIES[name]), name


def test_the_rule_catches_a_statement_that_names_no_run() -> None:
    bad = "UPDATE runs SET nudged = true WHERE workflow = %(workflow)s"
    assert _per_run(bad) and not _BY_RUN.search(bad)
