-- Named queries of pgdurable. Each block starts with a line "-- name: <name>".
-- They run with search_path set to the pgdurable schema; parameters are always bound.
-- Event batches travel as one jsonb array: [{"seq", "type", "data", "created_at"}, ...].

-- name: create_run
-- A queue nobody declared gets a row (no limits): the claim finds queues by their rows.
-- The notification names a queued run; an unqueued one says only "new" (NEW_UNQUEUED), and
-- a worker then leaves the queues' claim out (store/_runs.py).
WITH qa AS (
    INSERT INTO queues (name) SELECT %(queue)s::text WHERE %(queue)s::text IS NOT NULL
    ON CONFLICT (name) DO NOTHING
), ins AS (
    INSERT INTO runs (run_id, workflow, status, wake_at, last_seq, idempotency_key, deadline,
                      timeout_seconds, timeout_unknown, parent_run_id, parent_pos,
                      source_run_id, created_at, updated_at, queue, priority,
                      concurrency_key, dedup_key, search_args)
    VALUES (%(run_id)s, %(workflow)s, 'pending', %(wake_at)s, %(last_seq)s, %(idempotency_key)s,
            %(deadline)s, %(timeout_seconds)s, %(timeout_unknown)s, %(parent_run_id)s,
            %(parent_pos)s, %(source_run_id)s, %(now)s, %(now)s, %(queue)s, %(priority)s,
            %(concurrency_key)s, %(dedup_key)s,
            (%(events)s::jsonb -> 0 -> 'data' -> 'args')::text)
    ON CONFLICT DO NOTHING
    RETURNING run_id
), ev AS (
    INSERT INTO events (run_id, seq, type, data, created_at)
    SELECT ins.run_id, (e->>'seq')::int, e->>'type', e->'data', (e->>'created_at')::timestamptz
    FROM ins, jsonb_array_elements(%(events)s::jsonb) AS e
)
SELECT ins.run_id,
       CASE WHEN %(notify)s THEN pg_notify(
           %(channel)s, CASE WHEN %(queue)s::text IS NULL THEN %(new_unqueued)s ELSE ins.run_id END)
       END
FROM ins

-- name: create_runs
-- Many runs in one statement (start_many): the rows, their first events, one
-- notification; runs whose id or keys exist are skipped (found by find_existing_run).
WITH given AS (
    SELECT g.*
    FROM jsonb_to_recordset(%(runs)s::jsonb) AS g(
        i integer, run_id text, workflow text, wake_at timestamptz, last_seq integer,
        idempotency_key text, deadline timestamptz, timeout_seconds double precision,
        timeout_unknown boolean, queue text, priority integer, concurrency_key text,
        dedup_key text, events jsonb, notify boolean)
), qa AS (
    INSERT INTO queues (name)
    SELECT DISTINCT queue FROM given WHERE queue IS NOT NULL
    ON CONFLICT (name) DO NOTHING
), ins AS (
    INSERT INTO runs (run_id, workflow, status, wake_at, last_seq, idempotency_key, deadline,
                      timeout_seconds, timeout_unknown, created_at, updated_at, queue,
                      priority, concurrency_key, dedup_key, search_args)
    SELECT run_id, workflow, 'pending', wake_at, last_seq, idempotency_key, deadline,
           timeout_seconds, timeout_unknown, %(now)s, %(now)s, queue, priority,
           concurrency_key, dedup_key, (events -> 0 -> 'data' -> 'args')::text
    FROM given ORDER BY i
    ON CONFLICT DO NOTHING
    RETURNING run_id
), ev AS (
    INSERT INTO events (run_id, seq, type, data, created_at)
    SELECT g.run_id, (e->>'seq')::int, e->>'type', e->'data', (e->>'created_at')::timestamptz
    FROM given AS g JOIN ins USING (run_id), jsonb_array_elements(g.events) AS e
)
SELECT coalesce(array_agg(ins.run_id), '{}'),
       CASE WHEN bool_or(g.notify) THEN pg_notify(
           %(channel)s, CASE WHEN bool_or(g.queue IS NOT NULL) THEN '' ELSE %(new_unqueued)s END)
       END
FROM ins JOIN given AS g USING (run_id)

-- name: find_existing_run
-- The run that kept create_run from creating one: the same run id, idempotency key (per
-- workflow) or dedup key (per queue, among active runs).
SELECT run_id, workflow FROM runs
WHERE run_id = %(run_id)s
   OR (%(idempotency_key)s::text IS NOT NULL AND workflow = %(workflow)s
       AND idempotency_key = %(idempotency_key)s)
   OR (%(dedup_key)s::text IS NOT NULL AND coalesce(queue, '') = coalesce(%(queue)s, '')
       AND dedup_key = %(dedup_key)s
       AND status IN ('pending', 'running', 'waiting', 'paused', 'blocked'))
ORDER BY (run_id = %(run_id)s) DESC
LIMIT 1

-- name: claim
-- Lease runnable runs; for runs never started (status was pending) the same statement
-- returns their log, so a fresh run costs no separate load. One row per (run, event).
WITH c AS (
    UPDATE runs AS r
    SET status = 'running',
        lease_token = gen_random_uuid(),
        lease_owner = %(owner)s,
        lease_expires_at = now() + make_interval(secs => %(lease)s),
        wake_at = now() + make_interval(secs => %(lease)s),
        nudged = false,
        started_at = coalesce(r.started_at, now()),
        updated_at = now()
    FROM (
        SELECT run_id, nudged, status FROM runs
        WHERE status IN ('pending', 'running', 'waiting') AND wake_at IS NOT NULL
          AND queue IS NULL
          AND wake_at <= now() AND workflow = ANY(%(workflows)s::text[])
        ORDER BY wake_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS q
    WHERE r.run_id = q.run_id
    RETURNING r.run_id, r.workflow, r.lease_token, r.last_seq, r.history_start, r.deadline,
              q.nudged, r.parent_run_id, r.parent_pos, q.status = 'pending' AS fresh,
              r.timeout_unknown, r.created_at
)
SELECT c.run_id, c.workflow, c.lease_token, c.last_seq, c.history_start, c.deadline, c.nudged,
       c.parent_run_id, c.parent_pos, c.fresh, c.timeout_unknown, c.created_at,
       e.seq, e.type, e.data, e.created_at
FROM c
LEFT JOIN events AS e ON c.fresh AND e.run_id = c.run_id AND e.seq >= c.history_start
ORDER BY c.run_id, e.seq

-- name: set_timeout
UPDATE runs
SET timeout_seconds = %(timeout)s, deadline = %(deadline)s, timeout_unknown = false
WHERE run_id = %(run_id)s AND lease_token = %(token)s

-- name: load_events
SELECT e.run_id, e.seq, e.type, e.data, e.created_at
FROM unnest(%(run_ids)s::text[], %(after)s::int[]) AS q(run_id, after)
JOIN events AS e ON e.run_id = q.run_id AND e.seq > q.after
ORDER BY e.run_id, e.seq

-- name: append
-- The hot path: fence on (lease_token, last_seq), move the projection, insert the events.
-- mode: 'hold' keeps the lease (and extends it), 'release' gives it up (status waiting,
-- paused or blocked), 'finish' ends the run.
WITH r AS (
    UPDATE runs
    SET last_seq = %(new_seq)s,
        status = %(status)s,
        -- 'hold' leaves the lease columns alone (the heartbeat extends them): wake_at is
        -- indexed, and leaving it unchanged keeps the hot path a HOT update.
        lease_expires_at = CASE WHEN %(mode)s = 'hold' THEN lease_expires_at END,
        lease_token = CASE WHEN %(mode)s = 'hold' THEN lease_token END,
        lease_owner = CASE WHEN %(mode)s = 'hold' THEN lease_owner END,
        wake_at = CASE
            WHEN %(mode)s = 'hold' THEN wake_at
            WHEN %(mode)s = 'finish' OR %(status)s IN ('paused', 'blocked') THEN NULL
            WHEN nudged THEN now()
            ELSE %(wake_at)s::timestamptz END,
        -- only a claim clears the nudge: one that arrived while the lease was held must
        -- reach the next claim, or the messages in the run's inbox are never taken
        nudged = CASE WHEN %(mode)s = 'finish' THEN false ELSE nudged END,
        custom_status = CASE WHEN %(set_custom)s THEN %(custom_status)s::jsonb
                             ELSE custom_status END,
        error = CASE WHEN %(set_error)s THEN %(error)s::jsonb ELSE error END,
        finished_at = CASE WHEN %(mode)s = 'finish' THEN now() ELSE finished_at END,
        updated_at = now()
    WHERE run_id = %(run_id)s AND lease_token = %(token)s AND last_seq = %(expected_seq)s
    RETURNING run_id, nudged, wake_at, EXISTS (SELECT 1 FROM watchers AS w WHERE w.run_id = runs.run_id) AS watched
), ins AS (
    INSERT INTO events (run_id, seq, type, data, created_at)
    SELECT r.run_id, (e->>'seq')::int, e->>'type', e->'data', (e->>'created_at')::timestamptz
    FROM r, jsonb_array_elements(%(events)s::jsonb) AS e
)
SELECT r.nudged, r.wake_at <= now() AS wake_now, r.watched FROM r

-- name: fence_check
SELECT lease_token, last_seq, status FROM runs WHERE run_id = %(run_id)s

-- name: lock_run
-- queued: control messages wait in the run's inbox (posted while a worker held it); what
-- comes next for the run must queue behind them, not jump ahead into the log.
SELECT run_id, workflow, status, lease_token, lease_expires_at > now() AS leased, last_seq,
       history_start, started_at, parent_run_id, parent_pos, deadline,
       EXISTS (SELECT 1 FROM controls AS c WHERE c.run_id = runs.run_id) AS queued
FROM runs WHERE run_id = %(run_id)s
FOR UPDATE

-- name: direct_append
-- A client (or a worker acting for another run) appends while no live lease exists;
-- the caller holds the row lock (lock_run).
WITH r AS (
    UPDATE runs
    SET last_seq = %(new_seq)s,
        status = %(status)s,
        lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL,
        -- a nudged run (something waits in its inbox) that may run is due now
        wake_at = CASE WHEN nudged AND %(status)s IN ('pending', 'running', 'waiting')
                       THEN now() ELSE %(wake_at)s::timestamptz END,
        nudged = CASE WHEN %(finish)s THEN false ELSE nudged END,
        error = CASE WHEN %(set_error)s THEN %(error)s::jsonb ELSE error END,
        finished_at = CASE WHEN %(finish)s THEN now() WHEN %(reopen)s THEN NULL
                           ELSE finished_at END,
        updated_at = now()
    WHERE run_id = %(run_id)s AND last_seq = %(expected_seq)s
    RETURNING run_id, EXISTS (SELECT 1 FROM watchers AS w WHERE w.run_id = runs.run_id) AS watched
), ins AS (
    INSERT INTO events (run_id, seq, type, data, created_at)
    SELECT r.run_id, (e->>'seq')::int, e->>'type', e->'data', (e->>'created_at')::timestamptz
    FROM r, jsonb_array_elements(%(events)s::jsonb) AS e
)
SELECT r.watched FROM r

-- name: post_control
-- A run nobody holds that may run is due now, so a worker takes the message.
WITH ins AS (
    INSERT INTO controls (run_id, kind, data) VALUES (%(run_id)s, %(kind)s, %(data)s::jsonb)
)
UPDATE runs
SET nudged = true,
    wake_at = CASE WHEN (lease_token IS NULL OR lease_expires_at <= now())
                        AND status IN ('pending', 'running', 'waiting')
                   THEN now() ELSE wake_at END,
    updated_at = now()
WHERE run_id = %(run_id)s

-- name: drain_controls
DELETE FROM controls WHERE run_id = %(run_id)s RETURNING id, kind, data, created_at

-- name: pop_signals
DELETE FROM signals
WHERE (run_id, id) IN (
    SELECT run_id, id FROM signals
    WHERE run_id = %(run_id)s AND name = %(name)s
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE
)
RETURNING id, name, payload, created_at

-- name: send_signal
-- With a key, a signal already sent to the run under it stores nothing (stored: false).
WITH k AS (
    INSERT INTO signal_keys (run_id, key)
    SELECT %(run_id)s, %(key)s WHERE %(key)s::text IS NOT NULL
      AND EXISTS (SELECT 1 FROM runs WHERE run_id = %(run_id)s
                  AND status IN ('pending', 'running', 'waiting', 'paused', 'blocked'))
    ON CONFLICT DO NOTHING
    RETURNING key
), r AS (
    UPDATE runs
    SET nudged = true,
        wake_at = CASE WHEN lease_token IS NULL AND status IN ('pending', 'waiting')
                       THEN now() ELSE wake_at END,
        updated_at = now()
    WHERE run_id = %(run_id)s
      AND status IN ('pending', 'running', 'waiting', 'paused', 'blocked')
      AND (%(key)s::text IS NULL OR EXISTS (SELECT 1 FROM k))
    RETURNING run_id, status
), ins AS (
    INSERT INTO signals (run_id, name, payload)
    SELECT r.run_id, %(name)s, %(payload)s::jsonb FROM r
    RETURNING id
)
SELECT r.status, (SELECT id FROM ins), pg_notify(%(channel)s, r.run_id)
FROM r

-- name: notify
SELECT pg_notify(%(channel)s, %(payload)s)

-- name: run_status
SELECT status FROM runs WHERE run_id = %(run_id)s

-- name: latched_get
SELECT key, payload, created_at FROM latched_events WHERE key = ANY(%(keys)s::text[])

-- name: key_lock
SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 7207))

-- name: waiter_add
INSERT INTO event_waiters (key, run_id) VALUES (%(key)s, %(run_id)s) ON CONFLICT DO NOTHING

-- name: latched_put
INSERT INTO latched_events (key, payload) VALUES (%(key)s, %(payload)s::jsonb)
ON CONFLICT DO NOTHING
RETURNING key

-- name: wake_waiters
WITH w AS (
    DELETE FROM event_waiters WHERE key = %(key)s RETURNING run_id
)
UPDATE runs
SET nudged = true,
    wake_at = CASE WHEN lease_token IS NULL AND status IN ('pending', 'waiting')
                   THEN now() ELSE wake_at END,
    updated_at = now()
FROM w
WHERE runs.run_id = w.run_id
RETURNING runs.run_id, pg_notify(%(channel)s, runs.run_id)

-- name: waiters_clear
DELETE FROM event_waiters WHERE run_id = %(run_id)s

-- name: heartbeat
-- Extend the leases still held, by primary key; returns the tokens still held. A row
-- another transaction has locked (a cancel cascading through a family, a claim) is
-- skipped, not waited for: its lease is extended by the next beat, a third of a lease
-- later, and a heartbeat never waits on, or deadlocks with, a family's row locks.
WITH held AS (
    SELECT h.run_id, h.token
    FROM unnest(%(run_ids)s::text[], %(tokens)s::uuid[]) AS h(run_id, token)
), mine AS (
    SELECT r.run_id FROM runs AS r JOIN held AS h
        ON r.run_id = h.run_id AND r.lease_token = h.token
    FOR UPDATE OF r SKIP LOCKED
), extended AS (
    UPDATE runs
    SET lease_expires_at = now() + make_interval(secs => %(lease)s),
        wake_at = now() + make_interval(secs => %(lease)s)
    FROM mine WHERE runs.run_id = mine.run_id
)
SELECT r.lease_token FROM runs AS r JOIN held AS h
    ON r.run_id = h.run_id AND r.lease_token = h.token

-- name: release
-- Give a lease back; the run is claimable again after %(delay)s seconds (0: at once).
UPDATE runs
SET lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL,
    wake_at = now() + make_interval(secs => %(delay)s), updated_at = now()
WHERE run_id = %(run_id)s AND lease_token = %(token)s

-- name: watch
WITH w AS (
    INSERT INTO watchers (run_id)
    SELECT run_id FROM runs WHERE run_id = %(run_id)s
    ON CONFLICT DO NOTHING
)
SELECT status FROM runs WHERE run_id = %(run_id)s

-- name: get_run
SELECT r.run_id, r.workflow, r.status, r.custom_status, r.error, r.created_at, r.started_at,
       r.finished_at, r.parent_run_id, r.source_run_id, r.idempotency_key, r.last_seq,
       r.history_start, r.wake_at, r.lease_owner, r.deadline, r.timeout_seconds,
       r.timeout_unknown, s.data AS start_data,
       CASE WHEN r.status IN ('completed', 'failed', 'cancelled', 'timed_out')
            THEN (SELECT data FROM events WHERE run_id = r.run_id AND seq = r.last_seq) END
            AS end_data,
       r.queue, r.priority, r.concurrency_key, r.dedup_key, r.admitted_at
FROM runs AS r
LEFT JOIN events AS s ON s.run_id = r.run_id AND s.seq = r.history_start
WHERE r.run_id = %(run_id)s

-- name: history
SELECT seq, type, data, created_at FROM events
WHERE run_id = %(run_id)s AND seq <= %(upto)s
ORDER BY seq

-- name: active_children
SELECT run_id FROM runs
WHERE parent_run_id = %(run_id)s
  AND status IN ('pending', 'running', 'waiting', 'paused', 'blocked')

-- name: list_runs
SELECT r.run_id, r.workflow, r.status, r.custom_status, r.error, r.created_at, r.started_at,
       r.finished_at, r.parent_run_id, r.source_run_id, r.idempotency_key, r.last_seq,
       r.history_start, r.wake_at, r.lease_owner, r.deadline, r.timeout_seconds,
       r.timeout_unknown,
       (SELECT data FROM events WHERE run_id = r.run_id AND seq = r.history_start) AS start_data,
       CASE WHEN r.status IN ('completed', 'failed', 'cancelled', 'timed_out')
            THEN (SELECT data FROM events WHERE run_id = r.run_id AND seq = r.last_seq) END
            AS end_data,
       r.queue, r.priority, r.concurrency_key, r.dedup_key, r.admitted_at
FROM runs AS r
WHERE (%(workflow)s::text IS NULL OR workflow = %(workflow)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  -- the expressions of the indexes runs_search and runs_search_custom (migration 0011)
  AND (%(search)s::text IS NULL
       OR (r.run_id || chr(31) || r.workflow || chr(31) || coalesce(r.idempotency_key, '')
           || chr(31) || coalesce(r.search_args, '')) ILIKE %(search)s
       OR (r.custom_status IS NOT NULL AND r.custom_status::text ILIKE %(search)s))
ORDER BY created_at DESC, run_id DESC
LIMIT %(limit)s OFFSET %(offset)s

-- name: count_runs
SELECT count(*) FROM runs AS r
WHERE (%(workflow)s::text IS NULL OR workflow = %(workflow)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  -- the expressions of the indexes runs_search and runs_search_custom (migration 0011)
  AND (%(search)s::text IS NULL
       OR (r.run_id || chr(31) || r.workflow || chr(31) || coalesce(r.idempotency_key, '')
           || chr(31) || coalesce(r.search_args, '')) ILIKE %(search)s
       OR (r.custom_status IS NOT NULL AND r.custom_status::text ILIKE %(search)s))

-- name: timeseries
-- Runs started (created), completed and failed per bucket of [since, until), and the
-- duration percentiles of the runs that ended in each; empty buckets included. Both
-- halves read an index range (runs_created, runs_finished), not the whole table.
WITH buckets AS (
    SELECT b AS start
    FROM generate_series(%(since)s::timestamptz,
                         %(until)s::timestamptz - ('1 ' || %(unit)s)::interval,
                         ('1 ' || %(unit)s)::interval) AS b
), started AS (
    SELECT date_trunc(%(unit)s, created_at) AS start, count(*) AS n
    FROM runs
    WHERE created_at >= %(since)s AND created_at < %(until)s
      AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s)
    GROUP BY 1
), ended AS (
    SELECT date_trunc(%(unit)s, finished_at) AS start,
           count(*) FILTER (WHERE status = 'completed') AS completed,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           percentile_cont(0.5) WITHIN GROUP
               (ORDER BY extract(epoch FROM finished_at - created_at)) AS p50,
           percentile_cont(0.95) WITHIN GROUP
               (ORDER BY extract(epoch FROM finished_at - created_at)) AS p95
    FROM runs
    WHERE finished_at >= %(since)s AND finished_at < %(until)s
      AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s)
    GROUP BY 1
)
SELECT b.start, coalesce(s.n, 0), coalesce(e.completed, 0), coalesce(e.failed, 0),
       e.p50, e.p95
FROM buckets AS b
LEFT JOIN started AS s ON s.start = b.start
LEFT JOIN ended AS e ON e.start = b.start
ORDER BY b.start

-- name: stats
SELECT workflow, status, count(*) FROM runs GROUP BY workflow, status ORDER BY workflow, status

-- name: prune_batch
WITH doomed AS (
    SELECT run_id FROM runs
    WHERE finished_at < %(cutoff)s
      AND status IN ('completed', 'failed', 'cancelled', 'timed_out')
    ORDER BY finished_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), e AS (
    DELETE FROM events USING doomed WHERE events.run_id = doomed.run_id RETURNING 1
), s AS (
    DELETE FROM signals USING doomed WHERE signals.run_id = doomed.run_id RETURNING 1
), c AS (
    DELETE FROM controls USING doomed WHERE controls.run_id = doomed.run_id RETURNING 1
), w AS (
    DELETE FROM event_waiters USING doomed WHERE event_waiters.run_id = doomed.run_id
), x AS (
    DELETE FROM watchers USING doomed WHERE watchers.run_id = doomed.run_id
), k AS (
    DELETE FROM signal_keys USING doomed WHERE signal_keys.run_id = doomed.run_id
), r AS (
    DELETE FROM runs USING doomed WHERE runs.run_id = doomed.run_id RETURNING 1
)
SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM e), (SELECT count(*) FROM s)

-- name: step_failure_seqs
SELECT seq FROM events
WHERE run_id = %(run_id)s AND seq >= %(from_seq)s
  AND type IN ('step_attempt_failed', 'step_failed')
  AND (data->>'pos')::int = %(pos)s

-- name: delete_history
DELETE FROM events WHERE run_id = %(run_id)s AND seq < %(before)s

-- name: restart_history
-- (the new history's first event is in the log: its arguments are what a search matches)
UPDATE runs SET history_start = %(history_start)s,
                search_args = (SELECT (data -> 'args')::text FROM events
                               WHERE run_id = %(run_id)s AND seq = %(history_start)s)
WHERE run_id = %(run_id)s AND lease_token = %(token)s

-- name: copy_events
SELECT seq, type, data, created_at FROM events
WHERE run_id = %(run_id)s AND seq >= %(from_seq)s AND seq <= %(to_seq)s
ORDER BY seq

-- name: append_one
-- The serial hot path: one event, lease kept, projection untouched but for last_seq.
-- Positional parameters (seq, run_id, token, expected_seq, seq, type, data, created_at):
-- on this path psycopg's named-parameter mapping cost about 0.03 ms a statement.
WITH r AS (
    UPDATE runs SET last_seq = %s, updated_at = now()
    WHERE run_id = %s AND lease_token = %s AND last_seq = %s
    RETURNING run_id, nudged
)
INSERT INTO events (run_id, seq, type, data, created_at)
SELECT r.run_id, %s, %s, %s, %s FROM r
RETURNING (SELECT nudged FROM r)

-- name: finish_simple
-- The end of a run with no parent and no unfinished children, in one statement: the
-- projection, the final events, the event waiters and the notification to result()
-- waiters. Returns no row if the fence fails or the run has a parent or live children
-- (the caller then takes the full transactional path).
WITH r AS (
    UPDATE runs
    SET last_seq = %(new_seq)s,
        status = %(status)s,
        lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL, wake_at = NULL,
        nudged = false,
        custom_status = CASE WHEN %(set_custom)s THEN %(custom_status)s::jsonb
                             ELSE custom_status END,
        error = %(error)s::jsonb,
        finished_at = now(),
        updated_at = now()
    WHERE run_id = %(run_id)s AND lease_token = %(token)s AND last_seq = %(expected_seq)s
      AND parent_run_id IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM runs AS c
          WHERE c.parent_run_id = %(run_id)s
            AND c.status IN ('pending', 'running', 'waiting', 'paused', 'blocked'))
    RETURNING run_id, EXISTS (SELECT 1 FROM watchers AS w WHERE w.run_id = runs.run_id) AS watched
), ins AS (
    INSERT INTO events (run_id, seq, type, data, created_at)
    SELECT r.run_id, (e->>'seq')::int, e->>'type', e->'data', (e->>'created_at')::timestamptz
    FROM r, jsonb_array_elements(%(events)s::jsonb) AS e
), w AS (
    DELETE FROM event_waiters USING r WHERE event_waiters.run_id = r.run_id
), n AS (
    SELECT pg_notify(%(done_channel)s, r.run_id) FROM r WHERE r.watched
)
SELECT r.watched, (SELECT count(*) FROM n) FROM r

-- name: lock_leased_run
-- The first statement of an inbox sync: lock the run's row (so signals and control
-- messages that arrive meanwhile wait, and nudge again after we commit) and check the lease.
SELECT 1 FROM runs WHERE run_id = %(run_id)s AND lease_token = %(token)s FOR UPDATE

-- name: clear_nudge
UPDATE runs SET nudged = false WHERE run_id = %(run_id)s

-- name: inbox_has_more
-- Inside an inbox sync: is anything left that the run could take now?
SELECT EXISTS (SELECT 1 FROM controls WHERE run_id = %(run_id)s)
    OR EXISTS (SELECT 1 FROM signals WHERE run_id = %(run_id)s AND name = ANY(%(names)s::text[]))

-- name: group_commit
-- Group commit of several runs in one statement: held-lease appends (status NULL) and
-- ends of runs without parent or live children (status set; the caller sends only runs
-- without a parent). Each run is fenced on its
-- own (lease_token, last_seq); events are inserted only for the runs that matched. An end
-- that does not match is retried by the caller on the full transactional path.
WITH u AS (
    SELECT * FROM unnest(%(run_ids)s::text[], %(tokens)s::uuid[], %(expected)s::int[],
                         %(new_seqs)s::int[], %(set_custom)s::bool[], %(customs)s::jsonb[],
                         %(statuses)s::text[], %(errors)s::jsonb[])
        AS u(run_id, token, expected, new_seq, set_custom, custom, status, error)
), h AS (
    UPDATE runs
    SET last_seq = u.new_seq,
        custom_status = CASE WHEN u.set_custom THEN u.custom ELSE runs.custom_status END,
        updated_at = now()
    FROM u
    WHERE u.status IS NULL
      AND runs.run_id = u.run_id AND runs.lease_token = u.token AND runs.last_seq = u.expected
    RETURNING runs.run_id, runs.nudged, false AS watched
), f AS (
    UPDATE runs
    SET last_seq = u.new_seq,
        status = u.status,
        lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL, wake_at = NULL,
        nudged = false,
        custom_status = CASE WHEN u.set_custom THEN u.custom ELSE runs.custom_status END,
        error = u.error,
        finished_at = now(),
        updated_at = now()
    FROM u
    WHERE u.status IS NOT NULL
      AND runs.run_id = u.run_id AND runs.lease_token = u.token AND runs.last_seq = u.expected
      -- (only runs without a parent are sent here, and a run's parent never changes: no
      -- "parent_run_id IS NULL" test, which on a young table never analyzed made the
      -- planner expect one row and read the whole table for every batch)
      AND NOT EXISTS (
          SELECT 1 FROM runs AS c
          WHERE c.parent_run_id = u.run_id
            AND c.status IN ('pending', 'running', 'waiting', 'paused', 'blocked'))
    RETURNING runs.run_id, false AS nudged,
              EXISTS (SELECT 1 FROM watchers AS w WHERE w.run_id = runs.run_id) AS watched
), r AS (
    SELECT * FROM h UNION ALL SELECT * FROM f
), ins AS (
    INSERT INTO events (run_id, seq, type, data, created_at)
    SELECT e.run_id, e.seq, e.type, e.data, e.created_at
    FROM unnest(%(ev_run)s::text[], %(ev_seq)s::int[], %(ev_type)s::text[],
                %(ev_data)s::jsonb[], %(ev_at)s::timestamptz[])
        AS e(run_id, seq, type, data, created_at)
    JOIN r ON r.run_id = e.run_id
), w AS (
    DELETE FROM event_waiters USING f WHERE event_waiters.run_id = f.run_id
), n AS (
    SELECT pg_notify(%(done_channel)s, f.run_id) FROM f WHERE f.watched
)
SELECT r.run_id, r.nudged, (SELECT count(*) FROM n) FROM r

-- name: find_run_ids
-- Run ids that start with a prefix: pattern is the prefix, LIKE-escaped, and a wildcard.
-- A left-anchored LIKE is served by the primary key's btree when the column's collation
-- is C (as in the embedded server): the planner turns it into a range on run_id. Under
-- another collation it is a scan of runs; an index on (run_id text_pattern_ops) serves
-- it there. A range on run_id is not used instead: outside C it can miss matches.
SELECT run_id FROM runs
WHERE run_id LIKE %(pattern)s
ORDER BY run_id
LIMIT %(limit)s

-- name: worker_beat
-- A worker's heartbeat in the registry (inserted by its first beat); rows of workers gone
-- for over an hour are removed on the way.
WITH gone AS (
    DELETE FROM workers WHERE last_seen < now() - interval '1 hour'
)
INSERT INTO workers (worker_id, host, pid, lease_seconds, concurrency, workflows, queues,
                     runs_held)
VALUES (%(worker_id)s, %(host)s, %(pid)s, %(lease)s, %(concurrency)s, %(workflows)s::text[],
        %(queues)s::text[], %(runs_held)s)
ON CONFLICT (worker_id) DO UPDATE
SET last_seen = now(), runs_held = EXCLUDED.runs_held, workflows = EXCLUDED.workflows,
    queues = EXCLUDED.queues

-- name: worker_gone
DELETE FROM workers WHERE worker_id = %(worker_id)s

-- name: live_workers
-- Workers whose last heartbeat is younger than their lease.
SELECT worker_id, host, pid, started_at, last_seen, lease_seconds, concurrency, workflows,
       queues, runs_held
FROM workers
WHERE last_seen > now() - make_interval(secs => lease_seconds)
ORDER BY started_at, worker_id

-- name: queue_put
-- A declaration of a queue: the latest wins.
INSERT INTO queues (name, concurrency, worker_concurrency, key_concurrency, rate_limit,
                    rate_per, updated_at)
VALUES (%(name)s, %(concurrency)s, %(worker_concurrency)s, %(key_concurrency)s,
        %(rate_limit)s, %(rate_per)s, now())
ON CONFLICT (name) DO UPDATE
SET concurrency = EXCLUDED.concurrency,
    worker_concurrency = EXCLUDED.worker_concurrency,
    key_concurrency = EXCLUDED.key_concurrency,
    rate_limit = EXCLUDED.rate_limit,
    rate_per = EXCLUDED.rate_per,
    updated_at = now()

-- name: queue_get
SELECT name, concurrency, worker_concurrency, key_concurrency, rate_limit, rate_per,
       updated_at
FROM queues WHERE name = %(name)s

-- name: claim_queued
SELECT * FROM claim_queued(%(owner)s, %(limit)s, %(lease)s, %(workflows)s::text[],
                           %(held_queues)s::text[], %(held_counts)s::int[])

-- name: queues_info
-- Every queue with its limits, runs waiting for a slot and runs holding one.
SELECT q.name, q.concurrency, q.worker_concurrency, q.key_concurrency, q.rate_limit,
       q.rate_per,
       (SELECT count(*) FROM runs r WHERE r.queue = q.name AND r.admitted_at IS NULL
          AND r.status IN ('pending', 'waiting', 'paused')) AS pending,
       (SELECT count(*) FROM runs r WHERE r.queue = q.name AND r.admitted_at IS NOT NULL
          AND r.status IN ('pending', 'running', 'waiting', 'paused')) AS running
FROM queues q
ORDER BY q.name

-- name: queue_busiest_keys
-- The keys of a queue with the most runs holding a slot, and how many wait.
SELECT concurrency_key,
       count(*) FILTER (WHERE admitted_at IS NOT NULL
                          AND status IN ('pending', 'running', 'waiting', 'paused')) AS running,
       count(*) FILTER (WHERE admitted_at IS NULL
                          AND status IN ('pending', 'waiting', 'paused')) AS pending
FROM runs
WHERE queue = %(queue)s AND concurrency_key IS NOT NULL
  AND status IN ('pending', 'running', 'waiting', 'paused')
GROUP BY concurrency_key
ORDER BY running DESC, pending DESC, concurrency_key
LIMIT %(limit)s

-- name: pending_facts
-- What a pending run's pending_reason is made of.
SELECT r.wake_at, r.wake_at > now() AS deferred,
       EXISTS (SELECT 1 FROM workers w
               WHERE w.last_seen > now() - make_interval(secs => w.lease_seconds)
                 AND r.workflow = ANY(w.workflows)) AS served,
       q.concurrency, q.key_concurrency, q.rate_limit, q.rate_per,
       (SELECT count(*) FROM runs h WHERE h.queue = r.queue AND h.admitted_at IS NOT NULL
          AND h.status IN ('pending', 'running', 'waiting', 'paused')) AS held,
       (SELECT count(*) FROM runs h WHERE h.queue = r.queue
          AND h.concurrency_key = r.concurrency_key AND h.admitted_at IS NOT NULL
          AND h.status IN ('pending', 'running', 'waiting', 'paused')) AS key_held,
       (SELECT count(*) FROM runs h WHERE h.queue = r.queue
          AND h.admitted_at > clock_timestamp() - make_interval(secs => q.rate_per))
       + (SELECT count(*) FROM runs h WHERE h.queue = r.queue
          AND h.previous_admitted_at > clock_timestamp() - make_interval(secs => q.rate_per))
          AS recent,
       (SELECT min(h.admitted_at) + make_interval(secs => q.rate_per) - clock_timestamp()
          FROM (SELECT admitted_at FROM runs h2 WHERE h2.queue = r.queue
                  AND h2.admitted_at > clock_timestamp() - make_interval(secs => q.rate_per)
                ORDER BY admitted_at DESC LIMIT q.rate_limit) h) AS next_start_in,
       (SELECT count(*) FROM runs a WHERE a.queue = r.queue AND a.admitted_at IS NULL
          AND a.status IN ('pending', 'waiting') AND a.wake_at <= now()
          AND (a.priority, a.created_at, a.run_id) < (r.priority, r.created_at, r.run_id))
          AS ahead
FROM runs r
LEFT JOIN queues q ON q.name = r.queue
WHERE r.run_id = %(run_id)s

-- name: readmit
-- A retried run of a queue takes a slot again through admission.
UPDATE runs SET previous_admitted_at = admitted_at, admitted_at = NULL
WHERE run_id = %(run_id)s AND queue IS NOT NULL AND admitted_at IS NOT NULL

-- name: db_now
SELECT now()

-- name: schedule_put
-- A declaration (the latest wins). A schedule whose timing did not change keeps its next
-- tick and buffered ticks (a worker's restart neither skips nor repeats one); a paused one
-- stays paused.
INSERT INTO schedules AS s (name, workflow, cron, every_seconds, timezone, args, overlap,
                            catchup_seconds, queue, next_fire_at, due_at)
VALUES (%(name)s, %(workflow)s, %(cron)s, %(every)s, %(timezone)s, %(args)s::jsonb,
        %(overlap)s, %(catchup)s, %(queue)s, %(next_fire_at)s, %(next_fire_at)s)
ON CONFLICT (name) DO UPDATE
SET workflow = EXCLUDED.workflow,
    args = EXCLUDED.args,
    overlap = EXCLUDED.overlap,
    catchup_seconds = EXCLUDED.catchup_seconds,
    queue = EXCLUDED.queue,
    cron = EXCLUDED.cron,
    every_seconds = EXCLUDED.every_seconds,
    timezone = EXCLUDED.timezone,
    next_fire_at = CASE WHEN (s.cron, s.every_seconds, s.timezone)
                             IS NOT DISTINCT FROM (EXCLUDED.cron, EXCLUDED.every_seconds,
                                                   EXCLUDED.timezone)
                        THEN s.next_fire_at ELSE EXCLUDED.next_fire_at END,
    due_at = CASE WHEN (s.cron, s.every_seconds, s.timezone)
                       IS NOT DISTINCT FROM (EXCLUDED.cron, EXCLUDED.every_seconds,
                                             EXCLUDED.timezone)
                  THEN s.due_at ELSE EXCLUDED.due_at END,
    buffered = CASE WHEN (s.cron, s.every_seconds, s.timezone)
                         IS NOT DISTINCT FROM (EXCLUDED.cron, EXCLUDED.every_seconds,
                                               EXCLUDED.timezone)
                    THEN s.buffered ELSE '{}' END,
    updated_at = now()

-- name: schedules_due
-- The schedules to fire now; a schedule another worker is firing is skipped.
SELECT name, workflow, cron, every_seconds, timezone, args, overlap, catchup_seconds, queue,
       paused, next_fire_at, due_at, buffered, last_run_id, last_fired_at
FROM schedules
WHERE due_at <= now() AND NOT paused
ORDER BY due_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: schedule_get
SELECT name, workflow, cron, every_seconds, timezone, args, overlap, catchup_seconds, queue,
       paused, next_fire_at, due_at, buffered, last_run_id, last_fired_at
FROM schedules WHERE name = %(name)s

-- name: schedule_lock
SELECT name, workflow, cron, every_seconds, timezone, args, overlap, catchup_seconds, queue,
       paused, next_fire_at, due_at, buffered, last_run_id, last_fired_at
FROM schedules WHERE name = %(name)s FOR UPDATE

-- name: schedules_list
SELECT name, workflow, cron, every_seconds, timezone, args, overlap, catchup_seconds, queue,
       paused, next_fire_at, due_at, buffered, last_run_id, last_fired_at
FROM schedules ORDER BY name

-- name: schedule_fired
UPDATE schedules
SET next_fire_at = %(next_fire_at)s, due_at = %(due_at)s, buffered = %(buffered)s,
    last_run_id = coalesce(%(last_run_id)s, last_run_id),
    last_fired_at = CASE WHEN %(last_run_id)s::text IS NULL THEN last_fired_at
                         ELSE now() END,
    updated_at = now()
WHERE name = %(name)s

-- name: schedule_defer
-- A schedule this worker cannot compute (its time zone or cron expression): a minute later.
UPDATE schedules SET due_at = now() + interval '1 minute' WHERE name = %(name)s

-- name: schedule_paused
UPDATE schedules SET paused = %(paused)s, next_fire_at = %(next_fire_at)s,
       due_at = %(next_fire_at)s, updated_at = now()
WHERE name = %(name)s
RETURNING name

-- name: schedule_delete
DELETE FROM schedules WHERE name = %(name)s RETURNING name

-- name: schedule_next_due
-- Seconds until the earliest due schedule (NULL: none), by the database's clock.
SELECT extract(epoch FROM min(due_at) - now()) FROM schedules WHERE NOT paused
