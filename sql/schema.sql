-- pgdurable schema: what an empty schema looks like after every migration in
-- sql/migrations/, written out as one file.
-- Applied with search_path set to the target schema: names are unqualified.
--
-- This file is documentation and a reference, not the way to install pgdurable: the
-- migration runner (store/_migrate.py) builds the schema and keeps its own
-- schema_migrations table, which is left out here. tests/integration/test_schema_file.py
-- checks that this file and the migrations build the same schema; a new migration must
-- be reflected here (column order included: a column added by a migration goes last).
--
-- Every table is keyed by run_id first (except latched_events and event_waiters, keyed by
-- event key), so every per-run statement is routable by run_id.

-- The projection of each run's log: one row per run, updated on every append.
-- The status values are RunStatus (replay/vocabulary.py); tests/unit/test_vocabulary_sql.py
-- checks that this list names exactly those values.
CREATE TABLE runs (
    run_id            text        PRIMARY KEY,
    workflow          text        NOT NULL,
    status            text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'waiting', 'paused', 'completed',
                          'failed', 'cancelled', 'timed_out', 'blocked')),
    -- claimable when status is pending/running/waiting and wake_at <= now()
    wake_at           timestamptz,
    lease_token       uuid,
    lease_owner       text,
    lease_expires_at  timestamptz,
    last_seq          integer     NOT NULL DEFAULT 0,
    history_start     integer     NOT NULL DEFAULT 1,
    -- something waits in the run's inbox (signal, control message, latched event)
    nudged            boolean     NOT NULL DEFAULT false,
    -- (0001 had a column "watched" here; 0002 dropped it for the watchers table)
    deadline          timestamptz,
    idempotency_key   text,
    parent_run_id     text,
    parent_pos        integer,
    source_run_id     text,
    custom_status     jsonb,
    error             jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- the workflow timeout, stored with the run so rerun, fork and children keep it;
    -- timeout_unknown: the creator did not register the workflow, and the first worker
    -- that claims the run records the timeout and the deadline (0003)
    timeout_seconds   double precision,
    timeout_unknown   boolean     NOT NULL DEFAULT false
) WITH (fillfactor = 70);  -- room on each page for HOT updates of the projection

-- The claim query's index: only rows that can be claimed are in it (CLAIMABLE_STATUSES).
CREATE INDEX runs_claimable ON runs (wake_at)
    WHERE status IN ('pending', 'running', 'waiting') AND wake_at IS NOT NULL;
CREATE UNIQUE INDEX runs_idempotency ON runs (workflow, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_created ON runs (created_at DESC, run_id DESC);
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX runs_status ON runs (status, workflow);

-- The log: each run's events, numbered from 1 by seq. The type values are EventType
-- (replay/vocabulary.py); the column has no CHECK.
CREATE TABLE events (
    run_id      text        NOT NULL,
    seq         integer     NOT NULL,
    type        text        NOT NULL,
    data        jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- Signals wait here until the run's owner moves them into the log (FIFO per name by id).
CREATE TABLE signals (
    run_id      text        NOT NULL,
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    name        text        NOT NULL,
    payload     jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, id)
);
CREATE INDEX signals_by_name ON signals (run_id, name, id);

-- Control messages for a run whose lease a worker holds: pause, resume, cancel, child_done.
CREATE TABLE controls (
    run_id      text        NOT NULL,
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    kind        text        NOT NULL,
    data        jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, id)
);

-- Latched external events: the first emission of a key wins and is kept.
CREATE TABLE latched_events (
    key         text        PRIMARY KEY,
    payload     jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Runs to nudge when a key is emitted.
CREATE TABLE event_waiters (
    key         text        NOT NULL,
    run_id      text        NOT NULL,
    PRIMARY KEY (key, run_id)
);
CREATE INDEX event_waiters_run ON event_waiters (run_id);

-- Clients blocked in RunHandle.result() register here instead of updating the run's row:
-- an UPDATE of runs held the row lock just long enough for a concurrent claim
-- (FOR UPDATE SKIP LOCKED) to skip a freshly started run, which then waited for the next
-- poll. A run's end notifies only if it has watchers.
CREATE TABLE watchers (
    run_id      text        PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Idempotency keys of signals: a signal sent again to the same run with the same key
-- stores nothing new, also after the first one was consumed (0004). Deleted by prune.
CREATE TABLE signal_keys (
    run_id      text        NOT NULL,
    key         text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, key)
);

-- The live worker registry: every worker heartbeats its row; one that stops heartbeating
-- for longer than its lease is no longer listed, and its row is removed later (0005).
CREATE TABLE workers (
    worker_id      text             PRIMARY KEY,
    host           text             NOT NULL,
    pid            integer          NOT NULL,
    started_at     timestamptz      NOT NULL DEFAULT now(),
    last_seen      timestamptz      NOT NULL DEFAULT now(),
    lease_seconds  double precision NOT NULL,
    concurrency    integer          NOT NULL,
    workflows      text[]           NOT NULL DEFAULT '{}',
    queues         text[]           NOT NULL DEFAULT '{}',
    runs_held      integer          NOT NULL DEFAULT 0
);

-- The identity of this pgdurable installation (one row per schema and database): a
-- connection a caller passes as conn= must show the same id, so a run is never created
-- in another database than the App's by mistake.
CREATE TABLE instance (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now(),
    singleton   boolean     NOT NULL DEFAULT true UNIQUE CHECK (singleton)
);
INSERT INTO instance DEFAULT VALUES;
