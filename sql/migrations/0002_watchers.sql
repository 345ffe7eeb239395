-- Clients blocked in RunHandle.result() register here instead of updating the run's row:
-- an UPDATE of runs held the row lock just long enough for a concurrent claim
-- (FOR UPDATE SKIP LOCKED) to skip a freshly started run, which then waited for the next
-- poll. A run's end notifies only if it has watchers.
CREATE TABLE watchers (
    run_id      text        PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE runs DROP COLUMN watched;
