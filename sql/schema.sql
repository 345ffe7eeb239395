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
    timeout_unknown   boolean     NOT NULL DEFAULT false,
    -- queue: the run's queue (NULL: not limited); admitted_at: when a worker started it
    -- through its queue (from then on it holds a slot until it ends or is blocked; it is
    -- also the start the rate limit counts); dedup_key: unique among the queue's active
    -- runs (0007)
    queue             text,
    priority          integer     NOT NULL DEFAULT 0,
    concurrency_key   text,
    dedup_key         text,
    admitted_at       timestamptz,
    -- the start before a retry readmitted the run: the rate limit's window still counts it
    previous_admitted_at timestamptz,
    -- the text of the current history's arguments, for list_runs(search=...) (0011)
    search_args       text
) WITH (fillfactor = 70);  -- room on each page for HOT updates of the projection

-- The claim query's index: only rows that can be claimed are in it (CLAIMABLE_STATUSES),
-- and only unqueued runs: queued ones are claimed through their queue.
CREATE INDEX runs_claimable ON runs (wake_at)
    WHERE status IN ('pending', 'running', 'waiting') AND wake_at IS NOT NULL
      AND queue IS NULL;
-- queued runs waiting to be admitted, in the order they are (priority, then creation)
CREATE INDEX runs_queue_new ON runs (queue, priority, created_at, run_id)
    WHERE admitted_at IS NULL AND status IN ('pending', 'waiting') AND wake_at IS NOT NULL
      AND queue IS NOT NULL;
-- admitted runs of a queue that are due again (a timer, a signal, an expired lease)
CREATE INDEX runs_queue_due ON runs (queue, wake_at)
    WHERE admitted_at IS NOT NULL AND status IN ('pending', 'running', 'waiting')
      AND wake_at IS NOT NULL;
-- runs that hold a slot of their queue (counted at each admission)
CREATE INDEX runs_queue_slots ON runs (queue, concurrency_key)
    WHERE admitted_at IS NOT NULL AND status IN ('pending', 'running', 'waiting', 'paused');
-- starts per queue, for the rate limit's window
CREATE INDEX runs_queue_starts ON runs (queue, admitted_at) WHERE admitted_at IS NOT NULL;
CREATE INDEX runs_queue_restarts ON runs (queue, previous_admitted_at)
    WHERE previous_admitted_at IS NOT NULL;
-- a dedup key is taken while a run of the queue with it has not ended
CREATE UNIQUE INDEX runs_dedup ON runs (coalesce(queue, ''), dedup_key)
    WHERE dedup_key IS NOT NULL
      AND status IN ('pending', 'running', 'waiting', 'paused', 'blocked');
CREATE UNIQUE INDEX runs_idempotency ON runs (workflow, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_created ON runs (created_at DESC, run_id DESC);
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX runs_status ON runs (status, workflow);
-- list_runs(search=...): trigram GIN indexes (pg_trgm) on what a search matches, when
-- pg_trgm can be had: found where it is installed, else created in a schema of its own
-- (pgdurable_trgm); without it the indexes are left out (0011)
DO $$
DECLARE
    trgm text;
BEGIN
    SELECT n.nspname INTO trgm
    FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
    IF trgm IS NULL THEN
        BEGIN
            CREATE SCHEMA IF NOT EXISTS pgdurable_trgm;
            CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA pgdurable_trgm;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'pgdurable: no pg_trgm (%); list_runs(search=...) reads every run',
                SQLERRM;
        END;
        -- found also when another schema's migration created it meanwhile
        SELECT n.nspname INTO trgm
        FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
        WHERE e.extname = 'pg_trgm';
    END IF;
    IF trgm IS NOT NULL THEN
        EXECUTE format(
            'CREATE INDEX runs_search ON runs USING gin ('
            '(run_id || chr(31) || workflow || chr(31) || coalesce(idempotency_key, '''')'
            ' || chr(31) || coalesce(search_args, '''')) %I.gin_trgm_ops)'
            ' WITH (gin_pending_list_limit = 128)', trgm);
        EXECUTE format(
            'CREATE INDEX runs_search_custom ON runs USING gin ('
            '(custom_status::text) %I.gin_trgm_ops) WITH (gin_pending_list_limit = 128)'
            ' WHERE custom_status IS NOT NULL', trgm);
    END IF;
END
$$;

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

-- SQL functions to start and talk to runs from triggers, psql and other languages, with
-- the JSON codec's semantics and the Python client's one-line messages. Each runs in the
-- caller's transaction: what it writes exists if and only if the caller commits, and the
-- workers are woken at that commit. The functions find pgdurable's tables through the
-- search_path they were created with (SET search_path FROM CURRENT), so they work
-- whatever the caller's search_path is.

CREATE FUNCTION start_run(workflow text, args jsonb DEFAULT '[]', run_id text DEFAULT NULL,
                          idempotency_key text DEFAULT NULL, queue text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    new_id   text := coalesce(start_run.run_id, gen_random_uuid()::text);
    found_id text;
    found_wf text;
    seed     bigint := ('x' || substr(md5(gen_random_uuid()::text), 1, 16))::bit(64)::bigint
                       & 9223372036854775807;
BEGIN
    IF start_run.workflow IS NULL OR start_run.workflow = '' THEN
        RAISE EXCEPTION 'start_run needs the name of a workflow'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF start_run.args IS NULL OR jsonb_typeof(start_run.args) <> 'array' THEN
        RAISE EXCEPTION 'args must be a JSON array of the workflow''s positional arguments, '
                        'such as ''["o-42", 1999]''::jsonb (got %)', coalesce(start_run.args::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF start_run.queue = '' THEN
        RAISE EXCEPTION 'queue must be a queue''s name or NULL, not an empty string'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF start_run.queue IS NOT NULL THEN  -- the claim finds queues by their rows
        INSERT INTO queues (name) VALUES (start_run.queue) ON CONFLICT (name) DO NOTHING;
    END IF;
    INSERT INTO runs (run_id, workflow, status, wake_at, last_seq, idempotency_key,
                      timeout_unknown, created_at, updated_at, queue, search_args)
    VALUES (new_id, start_run.workflow, 'pending', now(), 1, start_run.idempotency_key,
            true, now(), now(), start_run.queue, start_run.args::text)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        INSERT INTO events (run_id, seq, type, data, created_at)
        VALUES (new_id, 1, 'run_started',
                jsonb_build_object('workflow', start_run.workflow, 'args', start_run.args,
                                   'seed', seed),
                now());
        PERFORM pg_notify(current_schema() || '.work', new_id);
        RETURN new_id;
    END IF;
    SELECT r.run_id, r.workflow INTO found_id, found_wf FROM runs r
    WHERE r.run_id = new_id
       OR (start_run.idempotency_key IS NOT NULL AND r.workflow = start_run.workflow
           AND r.idempotency_key = start_run.idempotency_key)
    ORDER BY (r.run_id = new_id) DESC
    LIMIT 1;
    IF found_id IS NULL THEN
        RAISE EXCEPTION 'run % could not be created; try again', quote_literal(new_id)
            USING ERRCODE = 'serialization_failure';
    END IF;
    IF found_id = new_id AND found_wf <> start_run.workflow THEN
        RAISE EXCEPTION 'run % exists and is a run of workflow %, not %; choose another run_id',
            quote_literal(found_id), quote_literal(found_wf), quote_literal(start_run.workflow)
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN found_id;
END
$$;

CREATE FUNCTION send_signal(run_id text, name text, payload jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    current text;
BEGIN
    IF send_signal.name IS NULL OR send_signal.name = '' THEN
        RAISE EXCEPTION 'send_signal needs the name of the signal'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE runs r
    SET nudged = true,
        wake_at = CASE WHEN r.lease_token IS NULL AND r.status IN ('pending', 'waiting')
                       THEN now() ELSE r.wake_at END,
        updated_at = now()
    WHERE r.run_id = send_signal.run_id
      AND r.status IN ('pending', 'running', 'waiting', 'paused', 'blocked');
    IF NOT FOUND THEN
        SELECT r.status INTO current FROM runs r WHERE r.run_id = send_signal.run_id;
        IF current IS NULL THEN
            RAISE EXCEPTION 'no run with id %', quote_literal(send_signal.run_id)
                USING ERRCODE = 'no_data_found';
        END IF;
        RAISE EXCEPTION 'run % is not active (status %)', send_signal.run_id, current
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    INSERT INTO signals (run_id, name, payload)
    VALUES (send_signal.run_id, send_signal.name, send_signal.payload);
    PERFORM pg_notify(current_schema() || '.work', send_signal.run_id);
END
$$;

CREATE FUNCTION emit_event(key text, payload jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    woken text;
BEGIN
    IF emit_event.key IS NULL THEN
        RAISE EXCEPTION 'emit_event needs a key' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(emit_event.key, 7207));
    INSERT INTO latched_events (key, payload)
    VALUES (emit_event.key, emit_event.payload)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    FOR woken IN
        WITH w AS (
            DELETE FROM event_waiters ew WHERE ew.key = emit_event.key RETURNING ew.run_id
        )
        UPDATE runs r
        SET nudged = true,
            wake_at = CASE WHEN r.lease_token IS NULL AND r.status IN ('pending', 'waiting')
                           THEN now() ELSE r.wake_at END,
            updated_at = now()
        FROM w
        WHERE r.run_id = w.run_id
        RETURNING r.run_id
    LOOP
        PERFORM pg_notify(current_schema() || '.work', woken);
    END LOOP;
    RETURN true;
END
$$;

-- Flow control: one row per queue with its limits (NULL: no limit). Declarations write
-- it (latest wins); the claim of a queue's runs locks it, which serialises admissions per
-- queue (0007).
CREATE TABLE queues (
    name                text             PRIMARY KEY,
    concurrency         integer          CHECK (concurrency > 0),
    worker_concurrency  integer          CHECK (worker_concurrency > 0),
    key_concurrency     integer          CHECK (key_concurrency > 0),
    rate_limit          integer          CHECK (rate_limit > 0),
    rate_per            double precision CHECK (rate_per > 0),
    updated_at          timestamptz      NOT NULL DEFAULT now(),
    CHECK ((rate_limit IS NULL) = (rate_per IS NULL))
);

-- The claim of queued runs: one call (one statement, so the claim loop pays one round trip)
-- that locks the row of every queue with runs of these workflows to start or resume (those
-- another claim holds are skipped: it is admitting them), then, queue by queue from a
-- random one, leases within
-- the queue's limits. Each claim below is a statement of its own inside this VOLATILE
-- function, so under READ COMMITTED it takes a fresh snapshot after the locks: it counts
-- every admission committed before, and its own commit with the call. held_queues and
-- held_counts: the runs of each queue the calling worker holds (worker_concurrency).
-- docs/internals.md, "Queues", explains the design.
CREATE FUNCTION claim_queued(p_owner text, p_limit integer, p_lease double precision,
                             p_workflows text[], held_queues text[], held_counts integer[])
RETURNS TABLE (c_run_id text, c_workflow text, c_lease_token uuid, c_last_seq integer,
               c_history_start integer, c_deadline timestamptz, c_nudged boolean,
               c_parent_run_id text, c_parent_pos integer, c_fresh boolean,
               c_timeout_unknown boolean, c_created_at timestamptz, c_seq integer,
               c_type text, c_data jsonb, c_event_created_at timestamptz, c_queue text)
LANGUAGE plpgsql
SET search_path FROM CURRENT
-- a generic plan per session, not one per call (0010)
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    queues_due text[];
    n integer;
    start integer;
    i integer;
    p_queue text;
    p_held integer;
    last_run text;
    rec record;
BEGIN
    SELECT coalesce(array_agg(name ORDER BY name), '{}') INTO queues_due FROM (
        -- scalar subqueries with LIMIT 1: each stops at the queue's first due run
        SELECT qq.name FROM queues qq
        WHERE coalesce((SELECT true FROM runs r
                        WHERE r.queue = qq.name AND r.admitted_at IS NULL
                          AND r.status IN ('pending', 'waiting') AND r.wake_at IS NOT NULL
                          AND r.wake_at <= now() AND r.workflow = ANY(p_workflows)
                        LIMIT 1), false)
           OR coalesce((SELECT true FROM runs r
                        WHERE r.queue = qq.name AND r.admitted_at IS NOT NULL
                          AND r.status IN ('pending', 'running', 'waiting')
                          AND r.wake_at IS NOT NULL AND r.wake_at <= now()
                          AND r.workflow = ANY(p_workflows)
                        LIMIT 1), false)
        ORDER BY qq.name
        -- a queue another claim is admitting right now is left to it this time
        FOR UPDATE SKIP LOCKED
    ) AS locked;
    n := cardinality(queues_due);
    IF n = 0 THEN
        RETURN;
    END IF;
    start := floor(random() * n)::integer;
    FOR i IN 0 .. n - 1 LOOP
        EXIT WHEN p_limit <= 0;
        p_queue := queues_due[1 + (start + i) % n];
        p_held := coalesce(held_counts[array_position(held_queues, p_queue)], 0);
        last_run := NULL;
        FOR rec IN
        WITH q AS (
            SELECT concurrency, key_concurrency, rate_limit, rate_per,
                   least(coalesce(worker_concurrency - p_held, p_limit), p_limit) AS worker_room
            FROM queues
            WHERE name = p_queue
        ),
        holding AS (
            SELECT concurrency_key FROM runs
            WHERE queue = p_queue AND admitted_at IS NOT NULL
              AND status IN ('pending', 'running', 'waiting', 'paused')
        ),
        room AS (
            -- each count only for a limit that is set (CASE evaluates it lazily)
            SELECT least(
                CASE WHEN (SELECT concurrency FROM q) IS NULL THEN p_limit
                     ELSE (SELECT concurrency FROM q) - (SELECT count(*) FROM holding) END,
                CASE WHEN (SELECT rate_limit FROM q) IS NULL THEN p_limit
                     ELSE (SELECT rate_limit FROM q) - (
                         SELECT count(*) FROM runs
                         WHERE queue = p_queue
                           AND admitted_at > clock_timestamp()
                                             - make_interval(secs => (SELECT rate_per FROM q)))
                       - (
                         SELECT count(*) FROM runs
                         WHERE queue = p_queue
                           AND previous_admitted_at > clock_timestamp()
                                             - make_interval(secs => (SELECT rate_per FROM q)))
                END
            ) AS fresh
        ),
        again AS (
            SELECT run_id, status, nudged, priority, created_at FROM runs
            WHERE queue = p_queue AND admitted_at IS NOT NULL
              AND status IN ('pending', 'running', 'waiting') AND wake_at IS NOT NULL
              AND wake_at <= now() AND workflow = ANY(p_workflows)
            ORDER BY wake_at
            LIMIT greatest((SELECT worker_room FROM q), 0)
        ),
        keys AS (
            SELECT DISTINCT concurrency_key AS key FROM runs
            WHERE queue = p_queue AND admitted_at IS NULL AND (SELECT key_concurrency FROM q) IS NOT NULL
              AND concurrency_key IS NOT NULL
              AND status IN ('pending', 'waiting') AND wake_at IS NOT NULL AND wake_at <= now()
              AND workflow = ANY(p_workflows)
        ),
        candidates AS (
            SELECT c.run_id, c.status, c.nudged, c.priority, c.created_at FROM keys k
            CROSS JOIN LATERAL (
                SELECT run_id, status, nudged, priority, created_at FROM runs
                WHERE queue = p_queue AND concurrency_key = k.key AND admitted_at IS NULL
                  AND status IN ('pending', 'waiting') AND wake_at IS NOT NULL AND wake_at <= now()
                  AND workflow = ANY(p_workflows)
                ORDER BY priority, created_at, run_id
                LIMIT greatest((SELECT key_concurrency FROM q)
                               - (SELECT count(*) FROM holding h WHERE h.concurrency_key = k.key), 0)
            ) AS c
            UNION ALL
            (SELECT run_id, status, nudged, priority, created_at FROM runs
             WHERE queue = p_queue AND admitted_at IS NULL
               AND (concurrency_key IS NULL OR (SELECT key_concurrency FROM q) IS NULL)
               AND status IN ('pending', 'waiting') AND wake_at IS NOT NULL AND wake_at <= now()
               AND workflow = ANY(p_workflows)
             ORDER BY priority, created_at, run_id
             LIMIT p_limit)
        ),
        fresh AS (
            SELECT run_id, status, nudged FROM candidates
            ORDER BY priority, created_at, run_id
            LIMIT greatest(least((SELECT fresh FROM room),
                                 (SELECT worker_room FROM q) - (SELECT count(*) FROM again)), 0)
        ),
        chosen AS (
            SELECT run_id, status, nudged FROM again UNION ALL SELECT run_id, status, nudged FROM fresh
        ),
        c AS (
            UPDATE runs AS r
            SET status = 'running',
                lease_token = gen_random_uuid(),
                lease_owner = p_owner,
                lease_expires_at = now() + make_interval(secs => p_lease),
                wake_at = now() + make_interval(secs => p_lease),
                nudged = false,
                admitted_at = coalesce(r.admitted_at, clock_timestamp()),
                started_at = coalesce(r.started_at, clock_timestamp()),
                updated_at = now()
            FROM chosen
            WHERE r.run_id = chosen.run_id
              AND r.status IN ('pending', 'running', 'waiting') AND r.wake_at <= now()
            RETURNING r.run_id, r.workflow, r.lease_token, r.last_seq, r.history_start, r.deadline,
                      chosen.nudged, r.parent_run_id, r.parent_pos, chosen.status = 'pending' AS fresh,
                      r.timeout_unknown, r.created_at, r.queue
        )
        SELECT c.run_id, c.workflow, c.lease_token, c.last_seq, c.history_start, c.deadline, c.nudged,
               c.parent_run_id, c.parent_pos, c.fresh, c.timeout_unknown, c.created_at,
               e.seq, e.type, e.data, e.created_at AS event_created_at, c.queue
        FROM c
        LEFT JOIN events AS e ON c.fresh AND e.run_id = c.run_id AND e.seq >= c.history_start
        ORDER BY c.run_id, e.seq
        LOOP
            IF last_run IS DISTINCT FROM rec.run_id THEN
                p_limit := p_limit - 1;
                last_run := rec.run_id;
            END IF;
            c_run_id := rec.run_id;
            c_workflow := rec.workflow;
            c_lease_token := rec.lease_token;
            c_last_seq := rec.last_seq;
            c_history_start := rec.history_start;
            c_deadline := rec.deadline;
            c_nudged := rec.nudged;
            c_parent_run_id := rec.parent_run_id;
            c_parent_pos := rec.parent_pos;
            c_fresh := rec.fresh;
            c_timeout_unknown := rec.timeout_unknown;
            c_created_at := rec.created_at;
            c_seq := rec.seq;
            c_type := rec.type;
            c_data := rec.data;
            c_event_created_at := rec.event_created_at;
            c_queue := rec.queue;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$$;

-- Schedules: one row per declared schedule. Workers find the due ones by due_at (the next
-- tick, or sooner while ticks are buffered behind a run that has not ended), fire them and
-- move next_fire_at in one transaction; each tick's run id (name@tick) makes it once.
CREATE TABLE schedules (
    name             text             PRIMARY KEY,
    workflow         text             NOT NULL,
    cron             text,
    every_seconds    double precision CHECK (every_seconds >= 1),
    timezone         text             NOT NULL DEFAULT 'UTC',
    args             jsonb            NOT NULL DEFAULT '[]',
    overlap          text             NOT NULL DEFAULT 'skip'
        CHECK (overlap IN ('skip', 'buffer_one', 'buffer_all', 'cancel_other', 'allow_all')),
    catchup_seconds  double precision NOT NULL DEFAULT 60 CHECK (catchup_seconds >= 0),
    queue            text,
    paused           boolean          NOT NULL DEFAULT false,
    next_fire_at     timestamptz      NOT NULL,
    due_at           timestamptz      NOT NULL,
    buffered         timestamptz[]    NOT NULL DEFAULT '{}',
    last_run_id      text,
    last_fired_at    timestamptz,
    updated_at       timestamptz      NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (every_seconds IS NULL))
);
CREATE INDEX schedules_due ON schedules (due_at) WHERE NOT paused;
