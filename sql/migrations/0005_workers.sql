-- The live worker registry: every worker heartbeats its row; one that stops heartbeating
-- for longer than its lease is no longer listed (and its row is removed later).
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
