-- pgdurable schema, version 1. Applied with search_path set to the target schema.
-- Every table is keyed by run_id first (except latched_events, keyed by event key), so
-- every per-run statement is routable by run_id.

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
    -- a client blocks in result(): notify on the end of this run
    watched           boolean     NOT NULL DEFAULT false,
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
    updated_at        timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 70);

-- The claim query's index: only rows that can be claimed are in it.
CREATE INDEX runs_claimable ON runs (wake_at)
    WHERE status IN ('pending', 'running', 'waiting') AND wake_at IS NOT NULL;
CREATE UNIQUE INDEX runs_idempotency ON runs (workflow, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_created ON runs (created_at DESC, run_id DESC);
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX runs_status ON runs (status, workflow);

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
