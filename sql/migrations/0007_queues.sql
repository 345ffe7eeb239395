-- Flow control: queues with concurrency, per-worker and per-key limits, a sliding-window
-- rate limit, priorities and dedup keys. docs/internals.md ("Queues") explains admission.

-- One row per queue: its limits (NULL: no limit). Declarations write it (latest wins);
-- the claim of a queue's runs locks it, which serialises admissions per queue.
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

-- queue: the run's queue (NULL: not limited); admitted_at: when a worker started it
-- through its queue (from then on it holds a slot until it ends or is blocked; it is
-- also the start the rate limit counts); dedup_key: unique among the queue's active runs.
ALTER TABLE runs
    ADD COLUMN queue            text,
    ADD COLUMN priority         integer NOT NULL DEFAULT 0,
    ADD COLUMN concurrency_key  text,
    ADD COLUMN dedup_key        text,
    ADD COLUMN admitted_at      timestamptz,
    -- the start before a retry readmitted the run: the rate limit's window still counts it
    ADD COLUMN previous_admitted_at timestamptz;

-- The claim of unqueued runs no longer sees queued ones; they have indexes of their own.
DROP INDEX runs_claimable;
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
