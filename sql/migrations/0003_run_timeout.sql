-- The workflow timeout is stored with the run, so rerun, fork and children keep it
-- whichever process creates them. timeout_unknown: the creator did not register the
-- workflow (a child of a workflow its parent's worker does not know); the first worker that
-- claims the run, which registers it, records the timeout and the deadline.
ALTER TABLE runs
    ADD COLUMN timeout_seconds double precision,
    ADD COLUMN timeout_unknown boolean NOT NULL DEFAULT false;
