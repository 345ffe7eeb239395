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
                      timeout_unknown, created_at, updated_at, queue)
    VALUES (new_id, start_run.workflow, 'pending', now(), 1, start_run.idempotency_key,
            true, now(), now(), start_run.queue)
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
