-- list_runs(search=...) from indexes instead of a read of every run. What a search matches
-- (run id, workflow, idempotency key, the arguments' text, the custom status) is in the
-- runs row: search_args holds the text of the current history's arguments, written with
-- the row (and again at continue-as-new), so the index's expression never changes for an
-- update of the projection (those stay HOT); the custom status has its own partial index.
-- Both are trigram GIN indexes (pg_trgm), which serve ILIKE '%...%'. pg_trgm is created in
-- a schema of its own (pgdurable_trgm; dropping a pgdurable schema never takes it along) or
-- used where it is already installed; where it cannot be had, the indexes are left out
-- with a notice and a search reads every run, with the same results. Every update of a
-- run's row that is not HOT (a claim, an end) adds its trigrams to the index again: a
-- pending list of 128 kB (not 4 MB) keeps those entries merged, five times smaller, and
-- the merge a statement does when the list is full short.
ALTER TABLE runs ADD COLUMN search_args text;

UPDATE runs SET search_args = (
    SELECT (e.data -> 'args')::text FROM events AS e
    WHERE e.run_id = runs.run_id AND e.seq = runs.history_start);

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

-- start_run writes search_args with the row (the rest as in 0008).
CREATE OR REPLACE FUNCTION start_run(workflow text, args jsonb DEFAULT '[]', run_id text DEFAULT NULL,
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
