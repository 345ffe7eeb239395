"""The store under concurrency, against ``durable.store.Store`` directly on real PostgreSQL:
append fencing, lease takeover, heartbeats and release, non-overlapping claims, group
commit, idempotent run creation and the latched-event / waiter race."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

import durable
from durable.store import Claim, InboxWait, NewEvent, NewRun, Store

WF = "wf"


# -- helpers -----------------------------------------------------------------------------


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll an observable condition with a deadline (never a blind sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout}s: {what}")
        time.sleep(0.01)


def now() -> datetime:
    return datetime.now(UTC)


def started(run_id: str) -> list[NewEvent]:
    return [NewEvent(1, "run_started", {"workflow": WF, "args": [run_id], "seed": 7}, now())]


def make_run(store: Store, run_id: str | None = None, workflow: str = WF) -> str:
    rid = run_id or f"run-{uuid.uuid4().hex[:12]}"
    made = store.db.perform(
        store.runs.create_run(
            NewRun(run_id=rid, workflow=workflow, events=started(rid), now=now(), wake_at=now())
        )
    )
    assert made.created and made.run_id == rid
    return rid


def make_runs(dsn: str, n: int, workflow: str = WF) -> list[str]:
    """``n`` runnable runs with their run_started event, inserted in one statement."""
    ids = [f"{workflow}-{i:04d}-{uuid.uuid4().hex[:6]}" for i in range(n)]
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("SET search_path = durable")
        conn.execute(
            "INSERT INTO runs (run_id, workflow, status, wake_at, last_seq) "
            "SELECT id, %s, 'pending', now(), 1 FROM unnest(%s::text[]) AS id",
            (workflow, ids),
        )
        conn.execute(
            "INSERT INTO events (run_id, seq, type, data, created_at) "
            "SELECT id, 1, 'run_started', jsonb_build_object('workflow', %s::text, "
            "'args', '[]'::jsonb, 'seed', 1), now() FROM unnest(%s::text[]) AS id",
            (workflow, ids),
        )
    return ids


def claim_one(store: Store, run_id: str, owner: str, lease: float = 60.0) -> Claim:
    claims = store.leases.claim(owner, 10, lease, [WF])
    assert [c.run_id for c in claims] == [run_id], claims
    return claims[0]


def row(dsn: str, run_id: str) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(
            "SELECT status, last_seq, lease_token, lease_owner, nudged, wake_at, "
            "lease_expires_at, lease_expires_at < now() AS expired, wake_at <= now() AS due "
            "FROM durable.runs WHERE run_id = %s",
            (run_id,),
        )
        values = cur.fetchone()
        assert values is not None, f"no run {run_id}"
        names = [d.name for d in cur.description or ()]
    return dict(zip(names, values, strict=True))


def log(store: Store, run_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    return [(e.seq, e.type, e.data) for e in store.db.perform(store.runs.history(run_id))]


def assert_contiguous(dsn: str, store: Store, run_id: str) -> list[tuple[int, str, Any]]:
    events = log(store, run_id)
    seqs = [e[0] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), f"{run_id}: seqs {seqs}"
    assert row(dsn, run_id)["last_seq"] == len(seqs)
    return events


def step_events(first_seq: int, count: int, writer: str) -> list[NewEvent]:
    at = now()
    return [
        NewEvent(
            first_seq + i,
            "step_completed",
            {"pos": first_seq + i, "name": "s", "attempt": 1, "result": writer},
            at,
        )
        for i in range(count)
    ]


def append_hold(
    store: Store, run_id: str, token: uuid.UUID, expected: int, events: list[NewEvent]
) -> None:
    store.leases.append(
        run_id=run_id,
        token=token,
        expected_seq=expected,
        events=events,
        mode="hold",
        status="running",
        lease_seconds=60.0,
    )


@pytest.fixture
def store(dsn: str) -> Iterator[Store]:
    s = Store(dsn).open()
    yield s
    s.close()


@pytest.fixture
def stores(dsn: str) -> Iterator[Callable[..., Store]]:
    """A factory of extra stores (own pools, own connections), all closed afterwards."""
    opened: list[Store] = []

    def make(**options: Any) -> Store:
        s = Store(dsn, **options).open()
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


# -- append fencing ----------------------------------------------------------------------


def test_two_writers_at_the_same_seq_exactly_one_wins(
    dsn: str, store: Store, stores: Callable[..., Store]
) -> None:
    run_id = make_run(store)
    claim = claim_one(store, run_id, "w")
    writers = [stores(max_size=2), stores(max_size=2)]
    # warm both pools so each writer has its own open connection from the start
    for s in writers:
        s.db.perform(s.runs.status(run_id))
    barrier = threading.Barrier(2)
    seq = claim.last_seq
    wins = {0: 0, 1: 0}

    def write(i: int, expected: int, count: int) -> BaseException | None:
        events = step_events(expected + 1, count, f"writer-{i}")
        barrier.wait(timeout=10)
        try:
            append_hold(writers[i], run_id, claim.token, expected, events)
        except durable.DurableError as exc:
            return exc
        return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        for iteration in range(200):
            count = 1 + iteration % 3  # 1 event: the append_one path; 2-3: the general one
            futures = [pool.submit(write, i, seq, count) for i in (0, 1)]
            outcomes = [f.result(timeout=30) for f in futures]
            winners = [i for i, o in enumerate(outcomes) if o is None]
            assert len(winners) == 1, f"iteration {iteration}: outcomes {outcomes}"
            loser = outcomes[1 - winners[0]]
            assert isinstance(loser, durable.ConflictError), repr(loser)
            assert not isinstance(loser, durable.LeaseLost), repr(loser)
            assert run_id in str(loser) and f"expected last seq {seq}" in str(loser)
            wins[winners[0]] += 1
            new = [e for e in log(store, run_id) if e[0] > seq]
            assert [e[0] for e in new] == list(range(seq + 1, seq + count + 1))
            assert {e[2]["result"] for e in new} == {f"writer-{winners[0]}"}
            seq += count
            assert row(dsn, run_id)["last_seq"] == seq

    events = assert_contiguous(dsn, store, run_id)
    assert len(events) == seq == 1 + sum(1 + i % 3 for i in range(200))
    assert wins[0] + wins[1] == 200


def test_append_with_a_wrong_seq_or_unknown_run_writes_nothing(store: Store, dsn: str) -> None:
    run_id = make_run(store)
    claim = claim_one(store, run_id, "w")
    for expected in (0, 2, 5):
        with pytest.raises(durable.ConflictError, match="expected last seq"):
            append_hold(store, run_id, claim.token, expected, step_events(expected + 1, 2, "x"))
    with pytest.raises(durable.RunNotFound):
        append_hold(store, "no-such-run", claim.token, 1, step_events(2, 1, "x"))
    assert log(store, run_id) == [(1, "run_started", started(run_id)[0].data)]
    assert row(dsn, run_id)["last_seq"] == 1


# -- leases ------------------------------------------------------------------------------


def test_a_writer_whose_lease_was_taken_over_cannot_append(
    dsn: str, store: Store, stores: Callable[..., Store]
) -> None:
    run_id = make_run(store)
    old = claim_one(store, run_id, "old-owner", lease=0.2)
    append_hold(store, run_id, old.token, 1, step_events(2, 1, "old"))
    wait_for(lambda: bool(row(dsn, run_id)["expired"]), what="lease expiry")

    other = stores()
    new_claims = other.leases.claim("new-owner", 10, 60.0, [WF])
    assert [c.run_id for c in new_claims] == [run_id]
    new = new_claims[0]
    assert new.token != old.token and new.last_seq == 2
    assert row(dsn, run_id)["lease_owner"] == "new-owner"

    for count in (1, 3):  # both append statements
        with pytest.raises(durable.LeaseLost, match="another worker owns it"):
            append_hold(store, run_id, old.token, 2, step_events(3, count, "old"))
    assert [e[0] for e in log(store, run_id)] == [1, 2]
    assert row(dsn, run_id)["last_seq"] == 2
    # the old owner's heartbeat and release do not touch the new lease
    assert store.leases.heartbeat([(run_id, old.token)], 60.0) == set()
    store.leases.release(run_id, old.token)
    assert row(dsn, run_id)["lease_token"] == new.token

    append_hold(other, run_id, new.token, 2, step_events(3, 2, "new"))
    events = assert_contiguous(dsn, store, run_id)
    assert [e[2].get("result") for e in events[1:]] == ["old", "new", "new"]


def test_heartbeats_keep_a_lease_and_an_expired_lease_is_claimable(
    dsn: str, store: Store, stores: Callable[..., Store]
) -> None:
    run_id = make_run(store)
    held = claim_one(store, run_id, "holder", lease=1.0)
    thief = stores()
    # Heartbeat for more than two lease lengths; nobody else can claim meanwhile.
    until = time.monotonic() + 2.2
    while time.monotonic() < until:
        assert store.leases.heartbeat([(run_id, held.token)], 1.0) == {held.token}
        assert thief.leases.claim("thief", 10, 60.0, [WF]) == []
        state = row(dsn, run_id)
        assert not state["expired"] and not state["due"]
        time.sleep(0.1)
    # Stop heartbeating: the lease lapses and the run becomes claimable by itself.
    got: list[Claim] = []

    def claimed() -> bool:
        got.extend(thief.leases.claim("thief", 10, 60.0, [WF]))
        return bool(got)

    wait_for(claimed, timeout=10, what="claim after expiry")
    assert got[0].run_id == run_id and got[0].token != held.token
    assert store.leases.heartbeat([(run_id, held.token)], 1.0) == set()
    both = [(run_id, held.token), (run_id, got[0].token)]
    assert store.leases.heartbeat(both, 60.0) == {got[0].token}


def test_a_heartbeat_skips_a_row_another_transaction_locked_and_never_waits(
    dsn: str, store: Store
) -> None:
    """A cancel cascading through a family holds row locks; a heartbeat that waited on
    them could deadlock (it locks many rows in one statement) and lose its leases."""
    locked = make_run(store)
    held = [claim_one(store, locked, "holder")]
    free = make_run(store)
    held.append(claim_one(store, free, "holder"))
    before = {rid: row(dsn, rid)["lease_expires_at"] for rid in (locked, free)}
    pairs = [(c.run_id, c.token) for c in held]
    with psycopg.connect(dsn) as other:
        other.execute("SELECT 1 FROM durable.runs WHERE run_id = %s FOR UPDATE", (locked,))
        kept: list[set[uuid.UUID]] = []
        beat = threading.Thread(target=lambda: kept.append(store.leases.heartbeat(pairs, 120.0)))
        beat.start()
        beat.join(30)
        still_waiting = beat.is_alive()
        other.rollback()  # let a blocked heartbeat go before failing
        beat.join(30)
    assert not still_waiting, "the heartbeat waited on a locked row"
    # both leases are still held; only the unlocked one was extended
    assert kept == [{c.token for c in held}]
    assert row(dsn, locked)["lease_expires_at"] == before[locked]
    assert row(dsn, free)["lease_expires_at"] > before[free]


def test_release_makes_a_run_claimable_at_once(
    dsn: str, store: Store, stores: Callable[..., Store]
) -> None:
    run_id = make_run(store)
    held = claim_one(store, run_id, "holder", lease=300.0)
    other = stores()
    assert other.leases.claim("other", 10, 60.0, [WF]) == []
    store.leases.release(run_id, uuid.uuid4())  # a token that is not the lease: nothing happens
    assert other.leases.claim("other", 10, 60.0, [WF]) == []
    assert row(dsn, run_id)["lease_token"] == held.token

    store.leases.release(run_id, held.token)
    state = row(dsn, run_id)
    assert state["lease_token"] is None and state["due"]
    again = other.leases.claim("other", 10, 60.0, [WF])
    assert [c.run_id for c in again] == [run_id]
    with pytest.raises(durable.LeaseLost):
        append_hold(store, run_id, held.token, 1, step_events(2, 1, "x"))
    append_hold(other, run_id, again[0].token, 1, step_events(2, 1, "y"))
    assert_contiguous(dsn, store, run_id)


# -- claims ------------------------------------------------------------------------------


def test_concurrent_claims_never_overlap(dsn: str, stores: Callable[..., Store]) -> None:
    threads = 8
    workers = [stores(max_size=2) for _ in range(threads)]
    for round_no in range(3):
        workflow = f"claims-{round_no}"
        ids = set(make_runs(dsn, 500, workflow))
        barrier = threading.Barrier(threads)

        def claim_all(i: int, workflow: str, barrier: threading.Barrier) -> list[Claim]:
            rng = random.Random(f"{workflow}-{i}")
            mine: list[Claim] = []
            barrier.wait(timeout=10)
            while True:
                got = workers[i].leases.claim(f"owner-{i}", rng.randint(1, 5), 60.0, [workflow])
                if not got:
                    return mine
                mine.extend(got)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [pool.submit(claim_all, i, workflow, barrier) for i in range(threads)]
            per_thread = [f.result(timeout=60) for f in futures]

        all_claims = [c for mine in per_thread for c in mine]
        claimed_ids = [c.run_id for c in all_claims]
        assert len(claimed_ids) == len(set(claimed_ids)), "a run was claimed twice"
        assert set(claimed_ids) == ids, f"unclaimed: {sorted(ids - set(claimed_ids))[:5]}"
        assert sum(1 for mine in per_thread if mine) >= 2, "claims were not concurrent"
        # Every claim is the lease in the database, and fresh claims carry their log.
        with psycopg.connect(dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT run_id, lease_token, lease_owner, status FROM durable.runs "
                "WHERE workflow = %s",
                (workflow,),
            ).fetchall()
        leases = {r[0]: (r[1], r[2], r[3]) for r in rows}
        for i, mine in enumerate(per_thread):
            for c in mine:
                assert leases[c.run_id] == (c.token, f"owner-{i}", "running")
                assert c.events is not None and [e.seq for e in c.events] == [1]


def test_claim_takes_only_due_runs_of_known_workflows_in_claimable_states(
    dsn: str, store: Store
) -> None:
    ids = make_runs(dsn, 9)
    other = make_runs(dsn, 1, workflow="other")[0]
    setups = {
        ids[0]: "status = 'pending'",
        ids[1]: "status = 'waiting'",
        ids[2]: "status = 'running'",  # an expired lease
        ids[3]: "status = 'waiting', wake_at = now() + interval '1 hour'",
        ids[4]: "status = 'waiting', wake_at = NULL",
        ids[5]: "status = 'paused', wake_at = now()",
        ids[6]: "status = 'blocked', wake_at = now()",
        ids[7]: "status = 'completed', wake_at = now()",
        ids[8]: "status = 'failed', wake_at = now()",
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        for run_id, assignment in setups.items():
            conn.execute(f"UPDATE durable.runs SET {assignment} WHERE run_id = %s", (run_id,))
    claimed = store.leases.claim("w", 100, 60.0, [WF, "unknown"])
    assert sorted(c.run_id for c in claimed) == sorted(ids[:3])
    fresh = {c.run_id: c.events is not None for c in claimed}
    assert fresh == {ids[0]: True, ids[1]: False, ids[2]: False}  # only never-started runs
    assert store.leases.claim("w", 100, 60.0, [WF]) == []
    assert [c.run_id for c in store.leases.claim("w", 100, 60.0, ["other"])] == [other]


# -- group commit ------------------------------------------------------------------------


def test_group_commit_of_many_threads_keeps_every_log_contiguous(
    dsn: str, store: Store, stores: Callable[..., Store]
) -> None:
    threads, runs_per_thread, appends = 12, 3, 15
    ids = make_runs(dsn, threads * runs_per_thread)
    claims = {c.run_id: c for c in store.leases.claim("w", len(ids), 60.0, [WF])}
    assert set(claims) == set(ids)
    group = stores(max_size=4).group_appender()
    barrier = threading.Barrier(threads)

    def drive(i: int) -> int:
        mine = ids[i * runs_per_thread : (i + 1) * runs_per_thread]
        seqs = dict.fromkeys(mine, 1)
        barrier.wait(timeout=10)
        done = 0
        for n in range(appends):
            for run_id in mine:
                count = 1 + (n + i) % 3
                events = step_events(seqs[run_id] + 1, count, f"{run_id}:{n}")
                nudged = group.append(
                    run_id, claims[run_id].token, seqs[run_id], events, None, False
                )
                assert nudged is False
                seqs[run_id] += count
                done += 1
        return done

    with ThreadPoolExecutor(max_workers=threads) as pool:
        assert sum(pool.map(drive, range(threads))) == len(ids) * appends
    assert group.appends == len(ids) * appends
    for run_id in ids:
        events = assert_contiguous(dsn, store, run_id)
        results = [e[2]["result"] for e in events[1:]]
        # each append's events are together and in the order they were sent
        assert [r.rsplit(":", 1)[1] for r in results] == sorted(
            (r.rsplit(":", 1)[1] for r in results), key=int
        )


def _lock_waiters(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row_ = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchone()
    assert row_ is not None
    return int(row_[0])


def test_group_commit_batch_with_a_stale_run_fails_only_that_run(
    dsn: str, store: Store, stores: Callable[..., Store]
) -> None:
    ids = make_runs(dsn, 8)
    blocker, stale, moved, *good = ids
    claims = {c.run_id: c for c in store.leases.claim("w", len(ids), 60.0, [WF])}
    group = stores(max_size=4).group_appender()
    results: dict[str, BaseException | None] = {}

    def send(run_id: str, token: uuid.UUID, expected: int) -> None:
        try:
            group.append(run_id, token, expected, step_events(expected + 1, 2, run_id), None, False)
        except BaseException as exc:  # the outcome is what we check
            results[run_id] = exc
        else:
            results[run_id] = None

    # Hold the blocker's row so the first (leader) append waits in the database while
    # the others queue up behind it: they must then go out together as one batch.
    with psycopg.connect(dsn) as locker:
        locker.execute("SELECT 1 FROM durable.runs WHERE run_id = %s FOR UPDATE", (blocker,))
        lead = threading.Thread(target=send, args=(blocker, claims[blocker].token, 1))
        lead.start()
        wait_for(lambda: _lock_waiters(dsn) > 0, what="leader blocked on the row lock")
        followers = [
            threading.Thread(target=send, args=(rid, claims[rid].token, 1)) for rid in good
        ]
        followers.append(threading.Thread(target=send, args=(stale, uuid.uuid4(), 1)))
        followers.append(threading.Thread(target=send, args=(moved, claims[moved].token, 4)))
        for t in followers:
            t.start()
        wait_for(lambda: len(group._queue) == len(followers), what="followers queued")
        locker.commit()
    for t in [lead, *followers]:
        t.join(timeout=20)
        assert not t.is_alive()

    assert group.batches == 2 and group.appends == len(ids)  # the followers: one batch
    assert results[blocker] is None
    for rid in good:
        assert results[rid] is None, results[rid]
        assert [e[0] for e in assert_contiguous(dsn, store, rid)] == [1, 2, 3]
    assert isinstance(results[stale], durable.LeaseLost), repr(results[stale])
    assert isinstance(results[moved], durable.ConflictError), repr(results[moved])
    assert not isinstance(results[moved], durable.LeaseLost)
    assert "expected last seq 4, found 1" in str(results[moved])
    for rid in (stale, moved):
        assert [e[0] for e in log(store, rid)] == [1]
        assert row(dsn, rid)["last_seq"] == 1


# -- creating runs -----------------------------------------------------------------------


def test_concurrent_create_run_with_the_same_id_or_key_makes_one_run(
    dsn: str, stores: Callable[..., Store]
) -> None:
    threads = 8
    creators = [stores(max_size=1) for _ in range(threads)]
    barrier = threading.Barrier(threads)

    def create(i: int, run_id: str, key: str | None) -> tuple[str, bool]:
        barrier.wait(timeout=10)
        made = creators[i].db.perform(
            creators[i].runs.create_run(
                NewRun(
                    run_id=run_id,
                    workflow=WF,
                    events=started(run_id),
                    now=now(),
                    wake_at=now(),
                    idempotency_key=key,
                )
            )
        )
        return made.run_id, made.created

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for iteration in range(25):
            same_id = f"same-{iteration}"
            futures = [pool.submit(create, i, same_id, None) for i in range(threads)]
            outcomes = [f.result(timeout=30) for f in futures]
            assert {o[0] for o in outcomes} == {same_id}
            assert sum(o[1] for o in outcomes) == 1, outcomes

            key = f"key-{iteration}"
            futures = [pool.submit(create, i, f"k{iteration}-{i}", key) for i in range(threads)]
            outcomes = [f.result(timeout=30) for f in futures]
            winners = [o for o in outcomes if o[1]]
            assert len(winners) == 1, outcomes
            assert {o[0] for o in outcomes} == {winners[0][0]}

    with psycopg.connect(dsn, autocommit=True) as conn:
        per_run = conn.execute(
            "SELECT r.run_id, r.idempotency_key, count(e.seq), "
            "count(*) FILTER (WHERE e.type = 'run_started') "
            "FROM durable.runs r LEFT JOIN durable.events e USING (run_id) GROUP BY 1, 2"
        ).fetchall()
    assert len(per_run) == 50
    assert all(r[2] == 1 and r[3] == 1 for r in per_run), per_run
    assert sorted(r[1] for r in per_run if r[1] is not None) == sorted(
        f"key-{i}" for i in range(25)
    )


# -- latched events ----------------------------------------------------------------------


def test_emit_event_racing_a_waiter_never_loses_the_wake_up(
    dsn: str, store: Store, stores: Callable[..., Store]
) -> None:
    iterations = 120
    ids = make_runs(dsn, iterations)
    claims = {c.run_id: c for c in store.leases.claim("w", iterations, 60.0, [WF])}
    assert len(claims) == iterations
    waiter, emitter = stores(max_size=1), stores(max_size=1)
    seen = {"payload": 0, "nudged": 0}
    barrier = threading.Barrier(2)

    def wait(run_id: str, key: str) -> dict[str, Any]:
        barrier.wait(timeout=10)
        synced = waiter.leases.sync_inbox(
            run_id,
            claims[run_id].token,
            1,
            waits=[InboxWait(2, "event", key)],
            due=[],
            paused=False,
            now=now(),
        )
        return {e.data["key"]: e.data["payload"] for e in synced.events}

    def emit(key: str, i: int) -> bool:
        barrier.wait(timeout=10)
        return emitter.db.perform(emitter.runs.emit_event(key, {"i": i}))

    with ThreadPoolExecutor(max_workers=2) as pool:
        for i, run_id in enumerate(ids):
            key = f"key-{i}"
            found_f = pool.submit(wait, run_id, key)
            emitted_f = pool.submit(emit, key, i)
            found, emitted = found_f.result(timeout=20), emitted_f.result(timeout=20)
            assert emitted is True
            state = row(dsn, run_id)
            if key in found:
                assert found[key] == {"i": i}
                seen["payload"] += 1
            else:
                assert state["nudged"], f"iteration {i}: neither the payload nor a nudge"
                seen["nudged"] += 1
            # either way no waiter row is left behind for an emitted key
            with psycopg.connect(dsn, autocommit=True) as conn:
                left = conn.execute(
                    "SELECT count(*) FROM durable.event_waiters WHERE key = %s", (key,)
                ).fetchone()
            assert left is not None and (left[0] == 0 or key in found)
    assert seen["payload"] + seen["nudged"] == iterations


def test_emit_to_an_unleased_waiting_run_sets_wake_at(dsn: str, store: Store) -> None:
    run_id = make_run(store)
    claim = claim_one(store, run_id, "w")
    synced = store.leases.sync_inbox(
        run_id, claim.token, 1, waits=[InboxWait(2, "event", "k")], due=[], paused=False, now=now()
    )
    assert synced.events == []
    store.leases.append(
        run_id=run_id,
        token=claim.token,
        expected_seq=1,
        events=[],
        mode="release",
        status="waiting",
        lease_seconds=60.0,
        wake_at=None,
    )
    state = row(dsn, run_id)
    assert state["status"] == "waiting" and state["wake_at"] is None and not state["nudged"]
    assert store.db.perform(store.runs.emit_event("k", {"v": 1})) is True
    assert store.db.perform(store.runs.emit_event("k", {"v": 2})) is False
    state = row(dsn, run_id)
    assert state["nudged"] and state["due"]
    assert [c.run_id for c in store.leases.claim("w2", 10, 60.0, [WF])] == [run_id]


def test_group_commit_leader_never_reports_an_unsent_append(
    dsn: str, store: Store, stores: Callable[..., Store]
) -> None:
    from durable.store._group import MAX_BATCH, _Request

    ids = make_runs(dsn, MAX_BATCH + 2)
    claims = {c.run_id: c for c in store.leases.claim("w", len(ids), 60.0, [WF])}
    *others, mine = ids
    group = stores(max_size=4).group_appender()
    # The state the appender is in when MAX_BATCH + 1 other threads queued their appends
    # while a statement was in flight, and that statement has just finished: this thread
    # arrives (or is the first waiter to wake) and becomes the leader.
    group._queue.extend(
        _Request(rid, claims[rid].token, 1, step_events(2, 1, rid), None, False) for rid in others
    )
    group.append(mine, claims[mine].token, 1, step_events(2, 1, mine), None, False)
    # append returned normally, so its events must be in the log now
    assert [e[0] for e in log(store, mine)] == [1, 2]
